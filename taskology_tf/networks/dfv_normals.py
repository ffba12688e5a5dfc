"""A surface-normals network of equal standing to the DfVitW depth network.

Taskology's Table 3 trains depth and normals networks of the same kind. This is the depth
network of networks/dfv_depth.py (ResNet-18 encoder with randomized layer normalization, U-Net
decoder with reflect padding, decoder L2 weight decay, ImageNet-normalised input), built by the
same `build_resnet18_unet`, with the depth head (3x3 conv to 1 channel, softplus) replaced by a
3x3 conv to 3 channels, linear, whose output is normalised to unit length with
`geometry.normals.safe_normalize`.

The head's bias starts at (0, 0, -1), so an untrained network predicts normals facing the
camera (-z, the convention of geometry/normals.py: n . ray < 0), as NormalsTask's U-Net does
with a constant shift; here the shift is the head's (learnable) bias.

Parameters: identical to the depth network but for the head, 3x3 x C1 x 3 + 3 instead of
3x3 x C1 x 1 + 1 (C1 = 16 decoder filters at full width): 290 more (tests/networks).
"""

import tensorflow as tf
import tf_keras as keras

from taskology_tf.geometry import normals as normals_lib
from taskology_tf.networks import dfv_depth

# Facing the camera: the untrained network's answer (see the module docstring).
INITIAL_NORMAL = (0.0, 0.0, -1.0)


def build_dfv_normals_net(
    height: int,
    width: int,
    weight_reg: float = 0.01,
    reflect_padding: bool = True,
    noise_max_stddev: float = 0.5,
    noise_rampup_steps: int = 10000,
    filters_scale: float = 1.0,
    decoder_leaky_slope: float = 0.0,
    name: str = 'dfv_normals',
) -> keras.Model:
  """Builds the ResNet-18 U-Net normals network.

  Args:
    height, width: input size in pixels (static; at least 1).
    weight_reg, reflect_padding, noise_max_stddev, noise_rampup_steps, filters_scale,
    decoder_leaky_slope: as
      `dfv_depth.build_dfv_depth_net` (the same defaults: decoder L2 1e-2, reflect padding,
      noise 0.5 ramped over 10000 steps, published widths).
    name: Keras model name.

  Returns:
    A tf_keras Model: `image` float32 [B, H, W, 3] RGB in [0, 1] -> normals float32
    [B, H, W, 3], unit vectors in the camera frame (x right, y down, z forward), with the
    `noise_step` / `noise_step_reference` attributes of the depth network. An ImageNet
    ResNet-18 checkpoint loads with `dfv_depth.load_imagenet_encoder` (same encoder names).
  """
  return dfv_depth.build_resnet18_unet(
      height,
      width,
      head_channels=3,
      head_activation=None,
      head_name='normals1',
      head_bias_initializer=keras.initializers.Constant(INITIAL_NORMAL),
      output_fn=normals_lib.safe_normalize,
      weight_reg=weight_reg,
      reflect_padding=reflect_padding,
      noise_max_stddev=noise_max_stddev,
      noise_rampup_steps=noise_rampup_steps,
      filters_scale=filters_scale,
      decoder_leaky_slope=decoder_leaky_slope,
      name=name,
      where='build_dfv_normals_net',
  )


def flip_mean_normals(net_fn, image: tf.Tensor) -> tf.Tensor:
  """Test-time flip for normals: normalize(n(I) + M(n(flip(I)))), M mirroring x.

  A horizontally mirrored image has mirrored normals: the column order reverses and the x
  component changes sign (y, z unchanged). The mirrored pass, mapped back, is averaged with the
  direct one and renormalised (normals have no analogue of depth's per-pixel minimum).

  Args:
    net_fn: callable, float32 [B, H, W, 3] -> unit normals [B, H, W, 3].
    image: [B, H, W, 3] float32 RGB in [0, 1].

  Returns:
    [B, H, W, 3] float32 unit normals.
  """
  direct = net_fn(image)
  mirrored = tf.reverse(net_fn(tf.reverse(image, axis=[2])), axis=[2])
  mirrored = mirrored * tf.constant([-1.0, 1.0, 1.0])
  return normals_lib.safe_normalize(direct + mirrored)
