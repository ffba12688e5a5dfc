"""A compact U-Net for dense per-pixel prediction (depth, normals, segmentation).

The depth and normals networks of the paper's Table 3 experiment are U-Nets; this one is sized by
`base_filters` and `levels` so the same code serves laptop-scale synthetic runs and full-scale runs.
"""

from typing import Optional

import tf_keras as keras


def _conv_block(x, filters: int, name: str):
  """Two 3x3 conv + ReLU; the basic unit of each U-Net level."""
  for i in range(2):
    x = keras.layers.Conv2D(filters, 3, padding='same', use_bias=False, name=f'{name}_conv{i}')(x)
    # GroupNorm, not BatchNorm: no batch statistics, so training and inference agree, a stale
    # peer served from a snapshot computes exactly what the live model would, and mediator
    # batches from another domain cannot adapt normalisation statistics behind the
    # consistency loss's back (which would confound the Table 3 comparison).
    x = keras.layers.GroupNormalization(groups=min(8, filters // 2), name=f'{name}_gn{i}')(x)
    x = keras.layers.ReLU(name=f'{name}_relu{i}')(x)
  return x


def build_unet(
    height: Optional[int],
    width: Optional[int],
    in_channels: int,
    out_channels: int,
    base_filters: int = 16,
    levels: int = 4,
    name: str = 'unet',
) -> keras.Model:
  """Builds a U-Net that maps [B, H, W, in_channels] to [B, H, W, out_channels] raw features.

  The output is linear (no activation): each task applies its own head (softplus for depth,
  normalisation for normals, nothing for logits), so the network stays task-agnostic.

  Args:
    height: input height in pixels (None for any); must be divisible by 2**(levels-1) at run time.
    width: input width in pixels (None for any); same divisibility.
    in_channels: channels of the input tensor (3 for an RGB image in [0, 1]).
    out_channels: channels of the raw output.
    base_filters: filters at the finest level; doubled at each coarser level.
    levels: number of resolution levels (levels - 1 poolings).
    name: Keras model name.

  Returns:
    A tf_keras functional Model.
  """
  if levels < 1:
    raise ValueError(f'build_unet: levels must be >= 1, got {levels}')
  factor = 2 ** (levels - 1)
  for dim_name, dim in (('height', height), ('width', width)):
    if dim is not None and dim % factor:
      raise ValueError(
          f'build_unet({name}): {dim_name}={dim} is not divisible by 2**(levels-1)={factor}; '
          'resize the input or lower `levels`.'
      )
  inputs = keras.Input(shape=(height, width, in_channels), name='image')
  x = inputs
  skips = []
  for level in range(levels):
    x = _conv_block(x, base_filters * 2**level, name=f'{name}_down{level}')
    if level < levels - 1:
      skips.append(x)
      x = keras.layers.MaxPool2D(2, name=f'{name}_pool{level}')(x)
  for level in reversed(range(levels - 1)):
    x = keras.layers.UpSampling2D(2, interpolation='bilinear', name=f'{name}_up{level}')(x)
    x = keras.layers.Concatenate(name=f'{name}_skip{level}')([x, skips[level]])
    x = _conv_block(x, base_filters * 2**level, name=f'{name}_dec{level}')
  outputs = keras.layers.Conv2D(out_channels, 3, padding='same', name=f'{name}_head')(x)
  return keras.Model(inputs, outputs, name=name)
