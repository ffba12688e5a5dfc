"""PointPillars (Lang et al., CVPR 2019) over n_f stacked frames, and the box-flow network.

Both networks read the same pillar tensors of n_f frames (geometry/pillars.py), all in the
current frame's vehicle coordinates, frame 0 = current, frame k = k steps earlier:

  'pillars'        [B, n_f, P, N, 9] float32 point features,
  'point_mask'     [B, n_f, P, N] float32,
  'pillar_indices' [B, n_f, P, 2] int32 (row, col) BEV cell,
  'pillar_mask'    [B, n_f, P] float32.

Pillar feature net (Sec. 2.1): a shared linear layer + BatchNorm + ReLU per point and a max over
the pillar's points give C features per pillar; pillars are scattered back to a BEV canvas per
frame and the n_f canvases are concatenated along channels (early fusion of the frames).
Backbone (Sec. 2.2): blocks of 3x3 convs (BatchNorm, ReLU) at strides (1, 2, 2) -- the Waymo
variant's strides, so a 468-cell grid divides evenly and the output stays at the input
resolution -- each upsampled by a transposed conv back to stride 1 and concatenated.
Detection head: a 1x1 conv giving, for each cell, n_f frames x n_a anchors x (class logit, 7
residuals). Box-flow head: a 1x1 conv giving (flow_x, flow_y, flow_theta) per cell to each of
the n_f - 1 earlier frames.
"""

from typing import Dict, Sequence

import tensorflow as tf
import tf_keras as keras

from taskology_tf.geometry import pillars as pillars_lib

# Prior probability of the class logit's bias (RetinaNet / PointPillars initialisation).
_PRIOR_PROBABILITY = 0.01


class PillarFeatureNet(keras.layers.Layer):
  """Per-point linear + BN + ReLU, masked max over the points of each pillar.

  Args:
    channels: C, features per pillar.
  """

  def __init__(self, channels: int, **kwargs):
    super().__init__(**kwargs)
    self.channels = channels
    self.dense = keras.layers.Dense(channels, use_bias=False)
    self.norm = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.99)

  def call(self, pillars, point_mask, training=None):
    """pillars [B, F, P, N, 9], point_mask [B, F, P, N] -> [B, F, P, C]."""
    x = tf.nn.relu(self.norm(self.dense(pillars), training=training))
    # Padding points must not win the max: ReLU outputs are >= 0, so zeroing them suffices.
    x = x * point_mask[..., tf.newaxis]
    return tf.reduce_max(x, axis=-2)

  def get_config(self):
    return {**super().get_config(), 'channels': self.channels}


class PillarScatter(keras.layers.Layer):
  """Scatters pillar features to per-frame BEV canvases, concatenated along channels.

  Args:
    rows: grid cells along x.
    cols: grid cells along y.
  """

  def __init__(self, rows: int, cols: int, **kwargs):
    super().__init__(**kwargs)
    self.rows, self.cols = rows, cols

  def call(self, features, pillar_indices, pillar_mask):
    """features [B, F, P, C], indices [B, F, P, 2], mask [B, F, P] -> [B, rows, cols, F * C]."""
    shape = tf.shape(features)
    b, f = shape[0], shape[1]
    c = features.shape[-1]
    nf = features.shape[1]
    features = features * pillar_mask[..., tf.newaxis]
    batch_idx = tf.broadcast_to(tf.range(b)[:, None, None], tf.shape(pillar_mask))
    frame_idx = tf.broadcast_to(tf.range(f)[None, :, None], tf.shape(pillar_mask))
    idx = tf.stack(
        [batch_idx, pillar_indices[..., 0], pillar_indices[..., 1], frame_idx], -1
    )  # [B, F, P, 4]
    # Unused slots point at (0, 0) with zero features: scatter_nd sums, so they add nothing.
    canvas = tf.scatter_nd(idx, features, tf.stack([b, self.rows, self.cols, f, c]))
    return tf.reshape(canvas, [-1, self.rows, self.cols, nf * c])

  def get_config(self):
    return {**super().get_config(), 'rows': self.rows, 'cols': self.cols}


def _conv_bn(x, filters, stride, name):
  x = keras.layers.Conv2D(filters, 3, stride, padding='same', use_bias=False, name=name)(x)
  x = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=name + '_bn')(x)
  return keras.layers.ReLU(name=name + '_relu')(x)


def backbone(
    x: tf.Tensor,
    block_filters: Sequence[int],
    block_layers: Sequence[int],
    block_strides: Sequence[int],
    upsample_filters: Sequence[int],
) -> tf.Tensor:
  """PointPillars' 2D backbone: strided blocks, each upsampled to stride 1, concatenated."""
  if not len(block_filters) == len(block_layers) == len(block_strides) == len(upsample_filters):
    raise ValueError(
        'pointpillars backbone: block_filters, block_layers, block_strides and upsample_filters '
        f'need one entry per block, got {block_filters}, {block_layers}, {block_strides}, '
        f'{upsample_filters}'
    )
  outputs, total_stride = [], 1
  for i, (filters, layers, stride, up) in enumerate(
      zip(block_filters, block_layers, block_strides, upsample_filters)
  ):
    x = _conv_bn(x, filters, stride, f'block{i}_conv0')
    for j in range(1, layers):
      x = _conv_bn(x, filters, 1, f'block{i}_conv{j}')
    total_stride *= stride
    y = keras.layers.Conv2DTranspose(up, total_stride, total_stride, use_bias=False, name=f'up{i}')(
        x
    )
    y = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=f'up{i}_bn')(y)
    outputs.append(keras.layers.ReLU(name=f'up{i}_relu')(y))
  return keras.layers.Concatenate(name='backbone_concat')(outputs)


def pillar_inputs(grid: pillars_lib.PillarGrid, num_frames: int) -> Dict[str, tf.Tensor]:
  """Keras inputs of the pillar tensors (see the module docstring)."""
  p, n = grid.max_pillars, grid.max_points
  return {
      'pillars': keras.Input([num_frames, p, n, pillars_lib.NUM_POINT_FEATURES], name='pillars'),
      'point_mask': keras.Input([num_frames, p, n], name='point_mask'),
      'pillar_indices': keras.Input([num_frames, p, 2], dtype=tf.int32, name='pillar_indices'),
      'pillar_mask': keras.Input([num_frames, p], name='pillar_mask'),
  }


def _bev_features(
    inputs, grid, pillar_channels, block_filters, block_layers, block_strides, upsample_filters
):
  feats = PillarFeatureNet(pillar_channels, name='pillar_feature_net')(
      inputs['pillars'], inputs['point_mask']
  )
  canvas = PillarScatter(grid.rows, grid.cols, name='scatter')(
      feats, inputs['pillar_indices'], inputs['pillar_mask']
  )
  return backbone(canvas, block_filters, block_layers, block_strides, upsample_filters)


def build_detector(
    grid: pillars_lib.PillarGrid,
    num_frames: int = 3,
    num_anchors: int = 2,
    pillar_channels: int = 64,
    block_filters: Sequence[int] = (64, 128, 256),
    block_layers: Sequence[int] = (4, 6, 6),
    block_strides: Sequence[int] = (1, 2, 2),
    upsample_filters: Sequence[int] = (128, 128, 128),
    direction_bins: int = 0,
) -> keras.Model:
  """The PointPillars detector.

  Returns:
    A Keras model from the pillar inputs to
    'logits' [B, rows, cols, n_f, n_a] float32 and
    'residuals' [B, rows, cols, n_f, n_a, 7] float32 (dx, dy, dz, dl, dw, dh, dtheta), encoded
    against the anchors as geometry/box_coder.py defines; with `direction_bins` > 0 also
    'direction' [B, rows, cols, n_f, n_a, direction_bins] float32 logits (PointPillars' heading
    direction classifier, a 1x1 conv like the other heads).
  """
  inputs = pillar_inputs(grid, num_frames)
  x = _bev_features(
      inputs, grid, pillar_channels, block_filters, block_layers, block_strides, upsample_filters
  )
  prior = -tf.math.log((1 - _PRIOR_PROBABILITY) / _PRIOR_PROBABILITY).numpy()
  logits = keras.layers.Conv2D(
      num_frames * num_anchors,
      1,
      bias_initializer=keras.initializers.Constant(prior),
      name='class_head',
  )(x)
  residuals = keras.layers.Conv2D(
      num_frames * num_anchors * 7,
      1,
      kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
      name='box_head',
  )(x)
  logits = keras.layers.Reshape([grid.rows, grid.cols, num_frames, num_anchors], name='logits')(
      logits
  )
  residuals = keras.layers.Reshape(
      [grid.rows, grid.cols, num_frames, num_anchors, 7], name='residuals'
  )(residuals)
  outputs = {'logits': logits, 'residuals': residuals}
  if direction_bins:
    direction = keras.layers.Conv2D(
        num_frames * num_anchors * direction_bins, 1, name='direction_head'
    )(x)
    outputs['direction'] = keras.layers.Reshape(
        [grid.rows, grid.cols, num_frames, num_anchors, direction_bins], name='direction'
    )(direction)
  return keras.Model(inputs, outputs, name='pointpillars')


def build_box_flow(
    grid: pillars_lib.PillarGrid,
    num_frames: int = 3,
    pillar_channels: int = 64,
    block_filters: Sequence[int] = (64, 128, 256),
    block_layers: Sequence[int] = (4, 6, 6),
    block_strides: Sequence[int] = (1, 2, 2),
    upsample_filters: Sequence[int] = (128, 128, 128),
) -> keras.Model:
  """The box-flow network: the detector's backbone with a flow head.

  Returns:
    A Keras model from the pillar inputs to 'flow' [B, rows, cols, n_f - 1, 3] float32:
    (flow_x, flow_y) metres and flow_theta radians, in the current frame's vehicle coordinates,
    from a box centred in the cell at frame 0 to the same object at frame k (k = 1..n_f-1).
  """
  if num_frames < 2:
    raise ValueError(f'build_box_flow: num_frames must be >= 2, got {num_frames}')
  inputs = pillar_inputs(grid, num_frames)
  x = _bev_features(
      inputs, grid, pillar_channels, block_filters, block_layers, block_strides, upsample_filters
  )
  flow = keras.layers.Conv2D(
      (num_frames - 1) * 3,
      1,
      kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
      name='flow_head',
  )(x)
  flow = keras.layers.Reshape([grid.rows, grid.cols, num_frames - 1, 3], name='flow')(flow)
  return keras.Model(inputs, {'flow': flow}, name='box_flow')
