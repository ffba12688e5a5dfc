"""The depth network of Depth from Videos in the Wild (Gordon et al., ICCV 2019).

A ResNet-18 encoder (filters 64, 64, 128, 256, 512; conv1 7x7/2 + 3x3/2 max pool, then two
residual blocks per stage) normalised by randomized layer normalization, and a U-Net decoder
(3x3/2 transposed convolutions with ReLU, skip concatenation, reflect padding, 3x3 VALID
convolutions; filters 256, 128, 64, 32, 16) ending in a softplus depth map at full resolution
(the reference's depth_prediction_net.depth_prediction_resnet18unet). Input images are
normalised with the ImageNet mean and stddev inside the network, as the reference's reader does
for the depth input.

`build_resnet18_unet` is that network with the head as a parameter; the normals network of
the indoor experiments (networks/dfv_normals.py) is the same U-Net with a 3-channel head.

Two generalisations, both the identity at the published 128x416 (and any size divisible by 32):
- Sizes not divisible by 32: a transposed convolution doubles its input, which can be one pixel
  larger than the encoder's skip (the encoder rounds up); its output is cropped to the skip.
- Feature maps only one pixel tall or wide (tiny smoke-test images) cannot be reflect-padded;
  they are padded symmetrically (edge replication) in that dimension instead.

Variable names: every encoder layer is named after the reference's TF1 scope with '/' written
'__' (e.g. 'conv2_1__conv_1' for 'conv2_1/conv_1'), so `load_imagenet_encoder` can read a
checkpoint in the reference's naming ('conv2_1/conv_1/kernel', 'conv2_1/bn_1/gamma', ...).
"""

import math
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
import tf_keras as keras

from taskology_tf.networks.randomized_layer_norm import RandomizedLayerNormalization
from taskology_tf.networks.randomized_layer_norm import StepReference

ENCODER_FILTERS = (64, 64, 128, 256, 512)
DECODER_FILTERS = (16, 32, 64, 128, 256)


def scaled_filters(filters, scale: float, where: str):
  """`filters` times `scale`, rounded, at least 1 each (scale 1.0: the published widths)."""
  if not scale > 0:
    raise ValueError(f'{where}: filters_scale must be > 0, got {scale}')
  return tuple(max(1, int(round(f * scale))) for f in filters)


# ImageNet statistics of RGB in [0, 1] (the reference reader's IMAGENET_MEAN / IMAGENET_SD).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STDDEV = (0.229, 0.224, 0.225)
# Layers whose names start with this separator-encoded reference scope belong to the encoder.
_SCOPE_SEPARATOR = '__'


def _ref_name(layer_name: str) -> str:
  return layer_name.replace(_SCOPE_SEPARATOR, '/')


def _encoder_conv(filters: int, kernel: int, stride: int, name: str) -> keras.layers.Conv2D:
  # s_conv of the reference: no bias, SAME padding, N(0, sqrt(2 / (k * k * out))) init.
  return keras.layers.Conv2D(
      filters,
      kernel,
      strides=stride,
      padding='same',
      use_bias=False,
      kernel_initializer=keras.initializers.VarianceScaling(
          2.0, mode='fan_out', distribution='untruncated_normal'
      ),
      name=name,
  )


def _residual_block(x, filters: int, stride: int, scope: str, step: StepReference):
  """s_residual_block(_first): conv-norm-relu-conv-norm + shortcut, relu."""
  in_channels = x.shape[-1]
  if in_channels == filters:
    shortcut = x
    if stride != 1:
      shortcut = keras.layers.MaxPool2D(stride, stride, padding='valid', name=f'{scope}__pool')(x)
  else:
    shortcut = _encoder_conv(filters, 1, stride, f'{scope}__shortcut')(x)
  y = _encoder_conv(filters, 3, stride, f'{scope}__conv_1')(x)
  y = RandomizedLayerNormalization(step, name=f'{scope}__bn_1')(y)
  y = keras.layers.ReLU(name=f'{scope}__relu_1')(y)
  y = _encoder_conv(filters, 3, 1, f'{scope}__conv_2')(y)
  y = RandomizedLayerNormalization(step, name=f'{scope}__bn_2')(y)
  y = keras.layers.Add(name=f'{scope}__merge')([y, shortcut])
  return keras.layers.ReLU(name=f'{scope}__relu_2')(y)


def _pad_modes(tensor, reflect: bool) -> Tuple[str, str]:
  """Per-dimension pad mode: REFLECT needs at least 2 pixels; 1-pixel maps pad symmetrically."""
  if not reflect:
    return 'CONSTANT', 'CONSTANT'
  h, w = tensor.shape[1], tensor.shape[2]
  return ('REFLECT' if h is None or h > 1 else 'SYMMETRIC'), (
      'REFLECT' if w is None or w > 1 else 'SYMMETRIC'
  )


def _pad1(x, reflect: bool, name: str):
  """Pads H and W by one pixel on each side (reflect padding of the reference decoder)."""
  mode_h, mode_w = _pad_modes(x, reflect)

  def pad(t):
    t = tf.pad(t, [[0, 0], [1, 1], [0, 0], [0, 0]], mode=mode_h)
    return tf.pad(t, [[0, 0], [0, 0], [1, 1], [0, 0]], mode=mode_w)

  return keras.layers.Lambda(pad, name=name)(x)


def _crop_to(x, height: int, width: int, name: str):
  """Crops a [B, h, w, C] map with h >= height, w >= width to its top-left height x width."""
  dh = x.shape[1] - height
  dw = x.shape[2] - width
  if dh == 0 and dw == 0:
    return x
  return keras.layers.Cropping2D(((0, dh), (0, dw)), name=name)(x)


def build_resnet18_unet(
    height: int,
    width: int,
    head_channels: int,
    head_activation,
    head_name: str,
    head_bias_initializer='zeros',
    output_fn=None,
    weight_reg: float = 0.01,
    reflect_padding: bool = True,
    noise_max_stddev: float = 0.5,
    noise_rampup_steps: int = 10000,
    filters_scale: float = 1.0,
    decoder_leaky_slope: float = 0.0,
    name: str = 'dfv_depth',
    where: str = 'build_resnet18_unet',
) -> keras.Model:
  """The DfVitW ResNet-18 U-Net with a configurable head (shared by the depth and normals nets).

  Everything up to the last 3x3 convolution is the reference's depth_prediction_resnet18unet;
  the head is a 3x3 VALID convolution (after reflect padding) to `head_channels` with
  `head_activation`, named `head_name`, optionally followed by `output_fn` (a Lambda).

  Args:
    height, width: input size in pixels (static; at least 1).
    head_channels: channels of the output convolution (1 for depth, 3 for normals).
    head_activation: its Keras activation ('softplus' for depth, None for normals).
    head_name: its layer name ('disp1' for depth, as the reference).
    head_bias_initializer: its bias initialiser (zeros for depth, as the reference).
    output_fn: optional tensor -> tensor applied after the head (e.g. unit normalisation).
    weight_reg, reflect_padding, noise_max_stddev, noise_rampup_steps, filters_scale,
      decoder_leaky_slope, name: see `build_dfv_depth_net`.
    where: the public builder's name, for error messages.

  Returns:
    A tf_keras Model `image` float32 [B, H, W, 3] RGB in [0, 1] -> [B, H, W, head_channels],
    with `noise_step` and `noise_step_reference` attributes (see `build_dfv_depth_net`).
  """
  if not (height and width) or height < 1 or width < 1:
    raise ValueError(f'{where}: height and width must be >= 1, got {height}x{width}')
  if not 0.0 <= decoder_leaky_slope < 1.0:
    raise ValueError(f'{where}: decoder_leaky_slope must be in [0, 1), got {decoder_leaky_slope}')
  encoder_filters = scaled_filters(ENCODER_FILTERS, filters_scale, where)
  decoder_filters = scaled_filters(DECODER_FILTERS, filters_scale, where)
  noise_step = tf.Variable(
      0,
      dtype=tf.int64,
      trainable=False,
      name='noise_step',
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
  )
  step = StepReference(noise_step)

  def norm(x, scope):
    return RandomizedLayerNormalization(
        step, noise_max_stddev, noise_rampup_steps, name=f'{scope}__bn'
    )(x)

  image = keras.Input(shape=(height, width, 3), name='image')
  mean = tf.constant(IMAGENET_MEAN, tf.float32)
  stddev = tf.constant(IMAGENET_STDDEV, tf.float32)
  x = keras.layers.Lambda(lambda t: (t - mean) / stddev, name='imagenet_normalize')(image)

  # Encoder (encoder_resnet of the reference).
  x = _encoder_conv(encoder_filters[0], 7, 2, 'conv1__conv')(x)
  x = norm(x, 'conv1')
  econv1 = keras.layers.ReLU(name='conv1__relu')(x)
  x = keras.layers.MaxPool2D(3, 2, padding='same', name='conv1__pool')(econv1)
  x = _residual_block(x, encoder_filters[1], 1, 'conv2_1', step)
  econv2 = _residual_block(x, encoder_filters[1], 1, 'conv2_2', step)
  x = _residual_block(econv2, encoder_filters[2], 2, 'conv3_1', step)
  econv3 = _residual_block(x, encoder_filters[2], 1, 'conv3_2', step)
  x = _residual_block(econv3, encoder_filters[3], 2, 'conv4_1', step)
  econv4 = _residual_block(x, encoder_filters[3], 1, 'conv4_2', step)
  x = _residual_block(econv4, encoder_filters[4], 2, 'conv5_1', step)
  bottleneck = _residual_block(x, encoder_filters[4], 1, 'conv5_2', step)

  # Decoder: contrib conv2d(_transpose) defaults: Glorot-uniform kernels, zero biases, ReLU.
  regularizer = keras.regularizers.L2(weight_reg / 2.0) if weight_reg else None

  def activation(t, layer_name):
    # ReLU as published (fused into the convolution); with a slope, a LeakyReLU layer after a
    # linear convolution (same variables), so a unit driven negative still gets a gradient.
    if not decoder_leaky_slope:
      return t
    return keras.layers.LeakyReLU(decoder_leaky_slope, name=f'{layer_name}__leaky')(t)

  fused = None if decoder_leaky_slope else 'relu'

  def upconv(t, filters, level):
    out = keras.layers.Conv2DTranspose(
        filters,
        3,
        strides=2,
        padding='same',
        activation=fused,
        kernel_regularizer=regularizer,
        name=f'upconv{level}',
    )(t)
    return activation(out, f'upconv{level}')

  def iconv(t, filters, level):
    out = keras.layers.Conv2D(
        filters,
        3,
        padding='valid',
        activation=fused,
        kernel_regularizer=regularizer,
        name=f'iconv{level}',
    )(t)
    return activation(out, f'iconv{level}')

  x = bottleneck
  for level, skip in ((5, econv4), (4, econv3), (3, econv2), (2, econv1)):
    up = upconv(x, decoder_filters[level - 1], level)
    up = _crop_to(up, skip.shape[1], skip.shape[2], f'upconv{level}_crop')
    x = keras.layers.Concatenate(name=f'skip{level}')([up, skip])
    x = iconv(_pad1(x, reflect_padding, f'pad{level}'), decoder_filters[level - 1], level)
  up = upconv(x, decoder_filters[0], 1)
  up = _crop_to(up, height, width, 'upconv1_crop')
  x = iconv(_pad1(up, reflect_padding, 'pad1'), decoder_filters[0], 1)
  out = keras.layers.Conv2D(
      head_channels,
      3,
      padding='valid',
      activation=head_activation,
      bias_initializer=head_bias_initializer,
      kernel_regularizer=regularizer,
      name=head_name,
  )(_pad1(x, reflect_padding, 'pad0'))
  if output_fn is not None:
    out = keras.layers.Lambda(output_fn, name=f'{head_name}_output')(out)
  model = keras.Model(image, out, name=name)
  model.noise_step = noise_step
  # What every randomized layer norm reads; a trainer may point it at its own step variable.
  model.noise_step_reference = step
  return model


def build_dfv_depth_net(
    height: int,
    width: int,
    weight_reg: float = 0.01,
    reflect_padding: bool = True,
    noise_max_stddev: float = 0.5,
    noise_rampup_steps: int = 10000,
    filters_scale: float = 1.0,
    decoder_leaky_slope: float = 0.0,
    initial_depth: Optional[float] = None,
    name: str = 'dfv_depth',
) -> keras.Model:
  """Builds the ResNet-18 U-Net depth network.

  Args:
    height: input height in pixels (static; at least 1).
    width: input width in pixels (static).
    weight_reg: L2 weight regularisation of the decoder (the reference's weight_reg = 1e-2;
      its l2_regularizer(s) is s * sum(w^2) / 2). Collected in `model.losses`; the encoder has
      none, as in the reference.
    reflect_padding: reflect (True, as published) or zero padding in the decoder.
    noise_max_stddev: randomized layer norm noise once ramped up (0.5).
    noise_rampup_steps: steps of the parabolic noise ramp (10000).
    filters_scale: every layer's filter count times this (1.0 = as published; smaller for fast
      tests). An ImageNet checkpoint only fits 1.0.
    decoder_leaky_slope: 0 (published): the decoder's convolutions end in ReLU. In [0, 1)
      (ours): LeakyReLU with this negative slope instead. With ReLU, a self-supervised depth
      network can reach a constant depth by silencing its last decoder layers (every unit
      negative: softplus(bias) everywhere), from which no gradient brings them back; README,
      "Why the depth waits", measures that plateau and this fix.
    initial_depth: None (published: the head's bias starts at 0, so the depth starts near
      softplus(0) = ln 2 = 0.69 m), or d > 0 metres (ours): the bias starts at
      softplus^-1(d) = ln(e^d - 1), so the depth starts near d. A self-supervised depth that
      starts closer than the camera moves in one frame puts every forward-warped point behind
      the camera (README, "The collapse"); one that starts far keeps low-texture regions far
      (README, "A starting depth removes the collapse, and costs the ground").
    name: Keras model name.

  Returns:
    A tf_keras Model: `image` float32 [B, H, W, 3] RGB in [0, 1] -> depth float32
    [B, H, W, 1] (softplus, positive; metres up to the scale of self-supervision). The model
    has an attribute `noise_step` (int64 variable, non-trainable) that the randomized layer
    norms read their noise ramp from, through `noise_step_reference` (a StepReference whose
    `variable` a trainer may replace by its own step variable before the first trace).
  """
  head_bias_initializer = 'zeros'
  if initial_depth is not None:
    if not (
        isinstance(initial_depth, (int, float))
        and not isinstance(initial_depth, bool)
        and 0 < initial_depth < math.inf
    ):
      raise ValueError(
          'build_dfv_depth_net: initial_depth must be None or a finite number > 0 (metres), got'
          f' {initial_depth!r}'
      )
    # softplus^-1(d) = ln(e^d - 1), computed as d + ln(1 - e^-d) so it stays finite for large d.
    head_bias_initializer = keras.initializers.Constant(
        initial_depth + math.log(-math.expm1(-initial_depth))
    )
  return build_resnet18_unet(
      height,
      width,
      head_channels=1,
      head_activation='softplus',
      head_bias_initializer=head_bias_initializer,
      head_name='disp1',
      weight_reg=weight_reg,
      reflect_padding=reflect_padding,
      noise_max_stddev=noise_max_stddev,
      noise_rampup_steps=noise_rampup_steps,
      filters_scale=filters_scale,
      decoder_leaky_slope=decoder_leaky_slope,
      name=name,
      where='build_dfv_depth_net',
  )


def encoder_variables(model: keras.Model) -> Dict[str, tf.Variable]:
  """The encoder's variables keyed by their reference checkpoint names.

  Args:
    model: a network from `build_resnet18_unet` (the depth or the normals network).

  Returns:
    {'conv1/conv/kernel': variable, 'conv1/bn/gamma': ..., 'conv2_1/conv_1/kernel': ...}.
  """
  out = {}
  for layer in model.layers:
    if not layer.name.startswith('conv') or _SCOPE_SEPARATOR not in layer.name:
      continue
    for variable in layer.weights:
      short = variable.name.split('/')[-1].split(':')[0]
      out[f'{_ref_name(layer.name)}/{short}'] = variable
  return out


def load_imagenet_encoder(model: keras.Model, checkpoint_path: str, prefix: str = '') -> List[str]:
  """Initialises the encoder from an ImageNet-pretrained ResNet-18 checkpoint.

  The checkpoint must hold, for every encoder variable, a tensor named in the reference's
  TF1 scopes (`prefix` + 'conv1/conv/kernel', 'conv2_1/bn_1/gamma', ...; conv kernels
  [k, k, in, out], norm gamma and beta [C]), the way the reference's `imagenet_init_restorer`
  reads it. Batch-norm moving statistics in the checkpoint are ignored (randomized layer norm
  has none).

  Args:
    model: a network from `build_resnet18_unet` (the depth or the normals network).
    checkpoint_path: a checkpoint prefix, or a directory holding one.
    prefix: scope prepended to every name in the checkpoint (e.g. 'resnet18/').

  Returns:
    The checkpoint names that were loaded.

  Raises:
    FileNotFoundError: no checkpoint at `checkpoint_path`.
    ValueError: names missing from the checkpoint, or shapes that differ (all are listed).
  """
  path = checkpoint_path
  if tf.io.gfile.isdir(path):
    path = tf.train.latest_checkpoint(path)
    if path is None:
      raise FileNotFoundError(
          f'load_imagenet_encoder: no checkpoint in directory {checkpoint_path!r}'
      )
  if not tf.io.gfile.exists(path + '.index'):
    raise FileNotFoundError(
        f'load_imagenet_encoder: no checkpoint at {checkpoint_path!r} (expected {path}.index)'
    )
  reader = tf.train.load_checkpoint(path)
  available = reader.get_variable_to_shape_map()
  wanted = encoder_variables(model)
  missing = sorted(prefix + n for n in wanted if prefix + n not in available)
  mismatched = sorted(
      f'{prefix + n}: checkpoint {available[prefix + n]} vs network {v.shape.as_list()}'
      for n, v in wanted.items()
      if prefix + n in available and list(available[prefix + n]) != v.shape.as_list()
  )
  if missing or mismatched:
    sample = ', '.join(sorted(available)[:8])
    raise ValueError(
        f'load_imagenet_encoder: checkpoint {path!r} does not match the ResNet-18 encoder: '
        f'{len(missing)} missing name(s) {missing[:6]}{"..." if len(missing) > 6 else ""}; '
        f'{len(mismatched)} shape mismatch(es) {mismatched[:6]}. The checkpoint holds e.g. '
        f'[{sample}]; check `prefix` (given {prefix!r}).'
    )
  for n, v in wanted.items():
    v.assign(reader.get_tensor(prefix + n))
  return sorted(prefix + n for n in wanted)


def flip_min_depth(net_fn, image: tf.Tensor) -> tf.Tensor:
  """Test-time flip combination of the reference: min(d(I), flip(d(flip(I)))).

  The reference's depth test graph (model.py, _build_depth_test_graph) runs the network on the
  image and on its mirror image and keeps the per-pixel minimum of the two depths.

  Args:
    net_fn: callable, float32 [B, H, W, 3] -> depth [B, H, W, 1].
    image: [B, H, W, 3] float32 RGB in [0, 1].

  Returns:
    [B, H, W, 1] float32 depth.
  """
  direct = net_fn(image)
  mirrored = tf.reverse(net_fn(tf.reverse(image, axis=[2])), axis=[2])
  return tf.minimum(direct, mirrored)


def decoder_activity(model: keras.Model, image: tf.Tensor) -> Dict[str, float]:
  """How alive a ResNet-18 U-Net's decoder is on `image` (tools/dfv_depth_probe.py).

  Args:
    model: a network of `build_resnet18_unet` (depth or normals).
    image: float32 [B, H, W, 3] RGB in [0, 1].

  Returns:
    {layer: fraction of units with a positive pre-activation} for every decoder convolution
    (upconv5 ... iconv1; a ReLU unit at or below 0 passes no gradient), plus 'output_spread':
    the mean over images of the output's standard deviation over pixels divided by its mean
    (0 for a constant map), and 'output_mean', at inference (no layer-norm noise).
  """
  names = [
      layer.name
      for layer in model.layers
      if layer.name.startswith(('upconv', 'iconv')) and isinstance(layer, keras.layers.Conv2D)
  ]
  if not names:
    raise ValueError(f'decoder_activity: {model.name!r} has no upconv*/iconv* convolutions')
  # A fused ReLU's output is positive exactly where its pre-activation is; a linear convolution
  # (decoder_leaky_slope > 0) outputs the pre-activation itself.
  probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names] + [model.output])
  outputs = probe(image, training=False)
  result = {
      n: float(tf.reduce_mean(tf.cast(o > 0, tf.float32))) for n, o in zip(names, outputs[:-1])
  }
  out = outputs[-1]
  mean, variance = tf.nn.moments(out, axes=[1, 2, 3])
  result['output_spread'] = float(
      tf.reduce_mean(tf.sqrt(variance) / tf.maximum(tf.abs(mean), 1e-12))
  )
  result['output_mean'] = float(tf.reduce_mean(mean))
  return result
