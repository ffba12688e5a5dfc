"""NAS-FPN semantic segmenter (Ghiasi et al., CVPR 2019) from tf-models-official.

Model Garden's pieces, unchanged: `backbones.ResNet` -> `decoders.NASFPN` (the published
block specs, which build levels 3 to 7) -> `heads.SegmentationHead` at `head_level`, joined
by `segmentation_model.SegmentationModel`. Around them, the input handling Model Garden's
segmentation task does in its data pipeline and loss:

- the image (float32 [0, 1]) is normalised with ImageNet's mean and standard deviation
  (`preprocess_ops.MEAN_NORM`, `STDDEV_NORM`);
- it is zero-padded at the bottom and right to a multiple of 2**max_level (NAS-FPN resamples
  every level to every other by factors of 2, so each level's size must halve exactly; e.g.
  128x416 -> 128x512, 64x96 -> 128x128);
- the head's logits (1 / 2**head_level of the padded size) are resized bilinearly to the padded
  size (what `SegmentationLoss(use_groundtruth_dimension=True)` does) and cropped back to the
  input's H x W, so the network's output is per-pixel logits at input resolution.

One change inside the decoder, to its gradient only: the cell's 'attention' combine
(feat0 + feat1 * sigmoid(global max of feat0)) takes the max as the value at the arg-max
(`_GlobalAttention`) instead of `tf.reduce_max`. The forward pass is the same number; TF's
reduce_max gradient, dy * (x == max) / count(x == max), needs the max to equal an element of x
bit for bit, and XLA may compute x with other rounding in the fusion that evaluates the
comparison than in the one that reduced it (seen on CPU with `--xla_backend_optimization_level=0`,
tests/conftest.py's flag): no element matches, 0 / 0, and the compiled step's gradients turn NaN
(the tiny Table 1 E at step 2; WORKSPACE.md). The arg-max gather routes dy to one maximal element
with no division; among tied maxima (common: nearest-upsampled maps) it picks the first, where
TF splits dy evenly, and the gradient summed over the tied copies is the same.

The full-scale configuration is ResNet-50, levels 3 to 7, 256 filters, 5 repeats, head at
level 3 with 2 convolutions of 256 filters (Model Garden's SegmentationHead defaults).
"""

from typing import Optional, Sequence, Tuple

from official.vision.modeling import segmentation_model
from official.vision.modeling.backbones import resnet
from official.vision.modeling.decoders import nasfpn
from official.vision.modeling.heads import segmentation_heads
from official.vision.ops import preprocess_ops
import tensorflow as tf
import tf_keras as keras


def padded_size(height: int, width: int, max_level: int) -> Tuple[int, int]:
  """(H, W) rounded up to multiples of 2**max_level."""
  stride = 2**max_level
  return -(-height // stride) * stride, -(-width // stride) * stride


class _NormalizeAndPad(keras.layers.Layer):
  """float [B, H, W, 3] in [0, 1] -> ImageNet-normalised, zero-padded to [B, Hp, Wp, 3]."""

  def __init__(self, padded: Tuple[int, int], **kwargs):
    super().__init__(**kwargs)
    self.padded = tuple(padded)

  def call(self, image):
    mean = tf.constant(preprocess_ops.MEAN_NORM, image.dtype)
    std = tf.constant(preprocess_ops.STDDEV_NORM, image.dtype)
    x = (image - mean) / std
    h, w = image.shape[1], image.shape[2]
    return tf.pad(x, [[0, 0], [0, self.padded[0] - h], [0, self.padded[1] - w], [0, 0]])

  def get_config(self):
    return {**super().get_config(), 'padded': self.padded}


class _ResizeAndCrop(keras.layers.Layer):
  """Head logits [B, h, w, C] -> bilinear to the padded size -> crop to [B, H, W, C]."""

  def __init__(self, padded: Tuple[int, int], size: Tuple[int, int], **kwargs):
    super().__init__(**kwargs)
    self.padded = tuple(padded)
    self.size = tuple(size)

  def call(self, logits):
    logits = tf.image.resize(logits, self.padded, method=tf.image.ResizeMethod.BILINEAR)
    return logits[:, : self.size[0], : self.size[1], :]

  def get_config(self):
    return {**super().get_config(), 'padded': self.padded, 'size': self.size}


class _GlobalAttention(keras.layers.Layer):
  """NAS-FPN's attention combine with an XLA-safe global max (see the module docstring).

  Inputs: feat0, feat1 [B, H, W, C] float (same level and width). Output:
  feat0 + feat1 * sigmoid(max over H, W of feat0), [B, H, W, C], as Model Garden's
  `NASFPN._global_attention` computes it.
  """

  def call(self, inputs):
    feat0, feat1 = inputs
    _, h, w, c = feat0.shape
    flat = tf.reshape(feat0, [-1, h * w, c])
    # The first maximal position per (example, channel); its value is the max. The one-hot sum
    # reads it exactly (x * 1 plus zeros) and its gradient is the one-hot: no 0 / 0.
    index = tf.stop_gradient(tf.argmax(flat, axis=1, output_type=tf.int32))  # [B, C]
    pick = tf.one_hot(index, h * w, axis=1, dtype=flat.dtype)  # [B, H * W, C]
    peak = tf.reduce_sum(flat * pick, axis=1)[:, None, None, :]  # [B, 1, 1, C]
    return feat0 + feat1 * tf.math.sigmoid(peak)


class _NASFPN(nasfpn.NASFPN):
  """Model Garden's NAS-FPN decoder with `_GlobalAttention` as its attention combine."""

  def _global_attention(self, feat0, feat1):
    return _GlobalAttention()([feat0, feat1])


def build_nasfpn_segmenter(
    height: int,
    width: int,
    num_classes: int,
    backbone_depth: int = 50,
    backbone_width_multiplier: float = 1.0,
    min_level: int = 3,
    max_level: int = 7,
    num_filters: int = 256,
    num_repeats: int = 5,
    head_level: int = 3,
    head_num_convs: int = 2,
    head_num_filters: int = 256,
    block_specs: Optional[Sequence[Tuple]] = None,
    name: str = 'nasfpn_segmenter',
) -> keras.Model:
  """ResNet + NAS-FPN + segmentation head; float [B, H, W, 3] in [0, 1] -> logits [B, H, W, C].

  Args:
    height, width: input size in pixels (padded internally to multiples of 2**max_level).
    num_classes: classes of the logits.
    backbone_depth: ResNet depth (a key of Model Garden's `resnet.RESNET_SPECS`: 10, 18, 26,
      34, 50, 101, ...); 50 at full scale.
    backbone_width_multiplier: ResNet `depth_multiplier` (scales every layer's channels; < 1
      for a small backbone at synthetic scale).
    min_level, max_level: NAS-FPN levels (3 and 7 at full scale; the built-in block specs
      build levels 3..7, so other ranges need their own `block_specs`).
    num_filters: NAS-FPN filters (256).
    num_repeats: NAS-FPN cells stacked (5).
    head_level: decoder level the head reads (3: 1/8 resolution).
    head_num_convs, head_num_filters: the head's 3x3 convolutions before the classifier.
    block_specs: NAS-FPN cell as (level, combine_fn, (input_offset0, input_offset1),
      is_output) tuples; None: the published NAS-FPN cell (`nasfpn.NASFPN_BLOCK_SPECS`).
    name: model name.

  Raises:
    ValueError: a level range or depth the pieces cannot build (names the argument).
  """
  if backbone_depth not in resnet.RESNET_SPECS:
    raise ValueError(
        f'backbone_depth={backbone_depth}: not a Model Garden ResNet '
        f'(one of {sorted(resnet.RESNET_SPECS)})'
    )
  if not 2 <= min_level <= head_level <= max_level:
    raise ValueError(
        f'need 2 <= min_level <= head_level <= max_level, got min_level={min_level}, '
        f'head_level={head_level}, max_level={max_level}'
    )
  specs = block_specs if block_specs is not None else nasfpn.NASFPN_BLOCK_SPECS
  spec_levels = {int(s[0]) for s in specs}
  if not set(range(min_level, max_level + 1)) <= spec_levels or max(spec_levels) > max_level:
    raise ValueError(
        f'NAS-FPN block specs build levels {sorted(spec_levels)}, which must cover '
        f'min_level..max_level = {min_level}..{max_level} exactly (the published specs need '
        'levels 3..7; give block_specs for another range)'
    )
  padded = padded_size(height, width, max_level)
  backbone = resnet.ResNet(
      model_id=backbone_depth,
      input_specs=keras.layers.InputSpec(shape=[None, padded[0], padded[1], 3]),
      depth_multiplier=backbone_width_multiplier,
  )
  decoder = _NASFPN(
      input_specs=backbone.output_specs,
      min_level=min_level,
      max_level=max_level,
      block_specs=nasfpn.build_block_specs(list(specs)),
      num_filters=num_filters,
      num_repeats=num_repeats,
  )
  head = segmentation_heads.SegmentationHead(
      num_classes=num_classes,
      level=head_level,
      num_convs=head_num_convs,
      num_filters=head_num_filters,
  )
  segmenter = segmentation_model.SegmentationModel(backbone, decoder, head)
  image = keras.Input([height, width, 3], name='image')
  x = _NormalizeAndPad(padded, name='normalize_and_pad')(image)
  logits = segmenter(x)['logits']
  logits = _ResizeAndCrop(padded, (height, width), name='resize_and_crop')(logits)
  return keras.Model(image, logits, name=name)
