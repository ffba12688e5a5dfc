"""The motion network of Depth from Videos in the Wild (Gordon et al., ICCV 2019).

The reference's motion_prediction_net.motion_field_net: two RGB frames stacked on channels
(6 channels), seven 3x3 stride-2 ReLU convolutions (16 ... 1024 filters), a bottleneck (spatial
mean) from which a 1x1 convolution gives the background motion (3 rotation angles and a
translation), and a translation field refined from the bottleneck up to full resolution
(FlowNet-like: at each encoder level the coarser field is bilinearly upsampled and a residual
from two parallel towers of 3x3 convolutions over [field, features] is added). Learnable
rotation and translation scales (initialised to 0.01, constrained to >= 0.001) multiply the
outputs, and an optional head predicts the intrinsics (focal lengths through a softplus times
the image width / height, principal point as (0.5 + offset) times width / height).

As published, the refinement starts from the background translation itself, so the
"residual" field carries the upsampled background translation plus learnt corrections; the
total translation at a pixel is background + residual * movable mask (Eq. 2).

Conventions: the network maps (image_a, image_b) to cam_b_from_cam_a: X_b = R X_a + t, with the
translation field indexed by image_a's pixels and expressed in camera b's frame. The rotation is
parameterised by the reference's three angles, R = Rx(a_x) Ry(a_y) Rz(a_z)
(`matrix_from_angles`). The reference stacks the frames in the other order (target first); a
network learns either labelling, and this one names its outputs by ARCHITECTURE.md's convention.
"""

from typing import Optional

import tensorflow as tf
import tf_keras as keras

from taskology_tf.networks import dfv_depth

ENCODER_FILTERS = (16, 32, 64, 128, 256, 512, 1024)
# Learnable output scales start here and are kept at or above the minimum (create_scales).
SCALE_INIT = 0.01
SCALE_MINIMUM = 0.001
# Filters of the correlation branch's shared stem at filters_scale 1 (ours; correlation_displacement).
CORRELATION_STEM_FILTERS = 64


def matrix_from_angles(angles: tf.Tensor) -> tf.Tensor:
  """The reference's rotation parameterisation: R = Rx(a_x) Ry(a_y) Rz(a_z).

  transform_utils.matrix_from_angles is transpose(from_euler(-a)) with tensorflow_graphics'
  from_euler(a) = Rz(a_z) Ry(a_y) Rx(a_x); the transpose of Rz(-z) Ry(-y) Rx(-x) is
  Rx(x) Ry(y) Rz(z).

  Args:
    angles: [..., 3] float32, radians, (a_x, a_y, a_z).

  Returns:
    [..., 3, 3] float32 rotation matrices.
  """
  angles = tf.convert_to_tensor(angles, tf.float32)
  sx, sy, sz = tf.unstack(tf.sin(angles), axis=-1)
  cx, cy, cz = tf.unstack(tf.cos(angles), axis=-1)
  zero = tf.zeros_like(sx)
  one = tf.ones_like(sx)

  def mat(rows):
    return tf.stack([tf.stack(r, axis=-1) for r in rows], axis=-2)

  rx = mat([[one, zero, zero], [zero, cx, -sx], [zero, sx, cx]])
  ry = mat([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
  rz = mat([[cz, -sz, zero], [sz, cz, zero], [zero, zero, one]])
  return tf.linalg.matmul(rx, tf.linalg.matmul(ry, rz))


class _Scales(keras.layers.Layer):
  """Learnable rotation and translation scales (create_scales of the reference).

  With `learning_rate_multiplier` k != 1 (ours; 1 as published) each scale is stored as
  value / k and used as k * variable, so an optimizer step of size ~lr on the variable (Adam)
  moves the scale by ~k * lr: the scales alone learn k times faster, from the same initial
  value and under the same floor (the variable's constraint is max(v, SCALE_MINIMUM / k)).
  """

  def __init__(
      self,
      rotation_init: float = SCALE_INIT,
      translation_init: float = SCALE_INIT,
      learning_rate_multiplier: float = 1.0,
      **kwargs,
  ):
    super().__init__(**kwargs)
    self.rotation_init = float(rotation_init)
    self.translation_init = float(translation_init)
    self.learning_rate_multiplier = float(learning_rate_multiplier)

  def build(self, input_shape):
    k = self.learning_rate_multiplier
    floor = SCALE_MINIMUM / k
    constraint = lambda v: tf.maximum(v, floor)  # relu(v - m) + m, on the stored value.
    self.rotation_scale = self.add_weight(
        'rotation',
        shape=[],
        initializer=keras.initializers.Constant(self.rotation_init / k),
        constraint=constraint,
    )
    self.translation_scale = self.add_weight(
        'translation',
        shape=[],
        initializer=keras.initializers.Constant(self.translation_init / k),
        constraint=constraint,
    )
    super().build(input_shape)

  def values(self):
    """(rotation scale, translation scale) as the outputs use them: k * the variables."""
    k = self.learning_rate_multiplier
    return k * self.rotation_scale, k * self.translation_scale

  def get_config(self):
    config = super().get_config()
    config.update(
        rotation_init=self.rotation_init,
        translation_init=self.translation_init,
        learning_rate_multiplier=self.learning_rate_multiplier,
    )
    return config

  def call(self, inputs):
    rotation, translation, residual = inputs
    rotation_scale, translation_scale = self.values()
    return (
        rotation * rotation_scale,
        translation * translation_scale,
        residual * translation_scale,
    )


def _conv(
    filters,
    kernel,
    stride,
    regularizer,
    name,
    activation='relu',
    use_bias=True,
    kernel_initializer='glorot_uniform',
):
  # contrib layers.conv2d defaults: SAME padding, Glorot-uniform kernels, zero biases.
  return keras.layers.Conv2D(
      filters,
      kernel,
      strides=stride,
      padding='same',
      activation=activation,
      use_bias=use_bias,
      kernel_initializer=kernel_initializer,
      kernel_regularizer=regularizer,
      name=name,
  )


def _refine_motion_field(field, layer, regularizer, name, head_initializer):
  """Upsamples `field` to `layer`'s size and adds a residual from two conv towers."""
  height, width = layer.shape[1], layer.shape[2]
  channels = max(4, layer.shape[-1])
  up = keras.layers.Lambda(
      lambda t: tf.image.resize(t, [height, width], method='bilinear'), name=f'{name}_upsample'
  )(field)
  x = keras.layers.Concatenate(name=f'{name}_concat')([up, layer])
  tower1 = _conv(channels, 3, 1, regularizer, f'{name}_conv')(x)
  tower2 = _conv(channels, 3, 1, regularizer, f'{name}_conv_a')(x)
  tower2 = _conv(channels, 3, 1, regularizer, f'{name}_conv_b')(tower2)
  x = keras.layers.Concatenate(name=f'{name}_towers')([tower1, tower2])
  delta = _conv(
      field.shape[-1],
      1,
      1,
      regularizer,
      f'{name}_bottleneck',
      activation=None,
      use_bias=False,
      kernel_initializer=head_initializer,
  )(x)
  return keras.layers.Add(name=f'{name}_residual')([up, delta])


def _intrinsics_head(bottleneck, height: int, width: int, regularizer):
  """add_intrinsics_head: K from the bottleneck [B, 1, 1, C]."""
  del regularizer  # The reference's intrinsics head has no weight regulariser.
  size = tf.constant([[width, height]], tf.float32)
  foci = keras.layers.Conv2D(2, 1, activation='softplus', name='intrinsics_foci')(bottleneck)
  offsets = keras.layers.Conv2D(2, 1, use_bias=False, name='intrinsics_offsets')(bottleneck)

  def assemble(tensors):
    f, c = tensors
    # Focal lengths in pixels are of the order of the image size; the principal point is near
    # the centre, so the network predicts it as a fraction of the size around 0.5.
    f = tf.squeeze(f, axis=[1, 2]) * size  # [B, 2] = (fx, fy)
    c = (tf.squeeze(c, axis=[1, 2]) + 0.5) * size  # [B, 2] = (cx, cy)
    zero = tf.zeros_like(f[:, 0])
    one = tf.ones_like(zero)
    return tf.stack(
        [
            tf.stack([f[:, 0], zero, c[:, 0]], axis=-1),
            tf.stack([zero, f[:, 1], c[:, 1]], axis=-1),
            tf.stack([zero, zero, one], axis=-1),
        ],
        axis=-2,
    )

  return keras.layers.Lambda(assemble, name='intrinsics')([foci, offsets])


def _correlation_branch(image_a, image_b, displacement, filters_scale, regularizer, initializer):
  """The cost volume of both frames' shared (siamese) stem features, at half resolution."""
  (filters,) = dfv_depth.scaled_filters(
      (CORRELATION_STEM_FILTERS,), filters_scale, 'build_dfv_motion_net'
  )
  stem = [
      _conv(filters, 3, 2, regularizer, 'correlation_stem1', kernel_initializer=initializer),
      _conv(filters, 3, 1, regularizer, 'correlation_stem2', kernel_initializer=initializer),
  ]

  def features(image):
    for layer in stem:
      image = layer(image)
    return image

  return keras.layers.Lambda(lambda t: correlation(t[0], t[1], displacement), name='correlation')(
      [features(image_a), features(image_b)]
  )


def correlation(a: tf.Tensor, b: tf.Tensor, max_displacement: int) -> tf.Tensor:
  """FlowNetC's correlation (cost volume) of two feature maps, at every displacement.

  out[n, y, x, k] = mean_c a[n, y, x, c] * b[n, y + dy, x + dx, c] for the (2D + 1)^2
  displacements (dy, dx) in [-D, D]^2, k = (dy + D) * (2D + 1) + (dx + D); b is zero outside
  the image.

  Args:
    a, b: [N, H, W, C] float32 feature maps of the same shape.
    max_displacement: D >= 1, in pixels of the maps.

  Returns:
    [N, H, W, (2D + 1)^2] float32.
  """
  d = int(max_displacement)
  height, width = a.shape[1], a.shape[2]
  padded = tf.pad(b, [[0, 0], [d, d], [d, d], [0, 0]])
  return tf.stack(
      [
          tf.reduce_mean(a * padded[:, dy : dy + height, dx : dx + width, :], axis=-1)
          for dy in range(2 * d + 1)
          for dx in range(2 * d + 1)
      ],
      axis=-1,
  )


def build_dfv_motion_net(
    height: int,
    width: int,
    learn_intrinsics: bool = False,
    weight_reg: float = 0.01,
    filters_scale: float = 1.0,
    rotation_scale_init: float = SCALE_INIT,
    translation_scale_init: float = SCALE_INIT,
    scale_learning_rate_multiplier: float = 1.0,
    channels_per_frame: int = 3,
    encoder_initializer: str = 'glorot_uniform',
    correlation_displacement: int = 0,
    encoder_filters=None,
    head_initializer: str = 'glorot_uniform',
    name: str = 'dfv_motion',
) -> keras.Model:
  """Builds the motion-field network.

  Args:
    height: frame height in pixels (static).
    width: frame width in pixels (static).
    learn_intrinsics: add the intrinsics head (output 'intrinsics').
    weight_reg: L2 weight regularisation of the convolutions (the reference's 1e-2, as
      s * sum(w^2) / 2); collected in `model.losses`.
    filters_scale: the encoder's filter counts times this (the refinement towers follow them);
      1.0 = as published, smaller for fast tests.
    rotation_scale_init, translation_scale_init: initial values of the learnable output scales
      (0.01 both, as published; each must be >= SCALE_MINIMUM). With Adam each scale moves by
      about the learning rate per step, so from 0.01 a translation scale needs ~1 / lr steps to
      reach a metre-sized output (10k steps at the published 1e-4). Every gin file keeps 0.01;
      README, "Why the motion network waits", measures larger translation inits.
    scale_learning_rate_multiplier: k > 0 (ours; 1 as published): the two scales alone learn
      k times faster (stored as value / k, used as k * variable; _Scales), for schedules far
      shorter than the reference's.
    channels_per_frame: channels of each input frame: 3 (RGB, as published) or 4 (RGB and the
      predicted depth, the 'cascade' of Li et al. 2020, depth_and_motion_learning, whose
      motion network takes RGB-D pairs, 8 channels; its default).
    encoder_initializer: kernel initializer of the seven encoder convolutions:
      'glorot_uniform' (the reference's contrib default) or 'he_normal' (ours). Through seven
      ReLU layers Glorot's variance halves per layer, so the bottleneck the background motion is
      read from starts ~10x smaller than its input and the translation barely varies between
      pairs (README, "the speed it does not teach"); He's keeps the activations' scale.
    correlation_displacement: 0 (as published), or D >= 1 (ours): a FlowNetC-style cost volume
      joins the encoder. Both frames pass through the same two 3x3 ReLU convolutions
      (CORRELATION_STEM_FILTERS times filters_scale; the first of stride 2), `correlation`
      matches them at every displacement in [-D, D]^2 (half-resolution pixels), and the
      (2D + 1)^2 matching scores are stacked onto the first encoder level's features, which the
      rest of the encoder and the field refinement read. It makes the image motion, and so the
      speed, an explicit input (README, "the speed it does not teach").
    encoder_filters: None (the published ENCODER_FILTERS times filters_scale), or the seven
      encoder convolutions' filter counts themselves (ours; filters_scale then sizes only the
      correlation stem). At a quarter of the published widths the first two levels have 4 and
      8 filters, too few to match textures between the frames: the network then cannot learn
      the speed even from its true value (README, "the speed it does not teach").
    head_initializer: kernel initializer of the motion heads, the 1x1 background-motion
      convolution and the eight refinement levels' 1x1 residual convolutions: 'glorot_uniform'
      (as published) or 'zeros' (ours). With zeros every motion output starts at exactly 0 (the
      task's translation prior, if any) whatever the output scales, so larger scales or He
      kernels upstream no longer start the training from a random, metre-sized motion; the
      gradient reaches those kernels at once (their inputs are not zero), and the layers below
      them from the second step on.
    name: Keras model name.

  Returns:
    A tf_keras Model with inputs `image_a`, `image_b` (float32 [B, H, W, channels_per_frame]:
    RGB in [0, 1], then the depth in metres if 4) and
    outputs, for cam_b_from_cam_a:
      'rotation_angles' [B, 3] float32, radians (R = matrix_from_angles(angles));
      'translation' [B, 3] float32, metres, camera b's frame (background motion);
      'residual_translation' [B, H, W, 3] float32, metres, camera b's frame, indexed by
        image_a's pixels (to be multiplied by the movable mask, Eq. 2);
      'intrinsics' [B, 3, 3] float32, pixels (only with learn_intrinsics).
  """
  if not (height and width) or height < 1 or width < 1:
    raise ValueError(f'build_dfv_motion_net: height and width must be >= 1, got {height}x{width}')
  for flag, value in (
      ('rotation_scale_init', rotation_scale_init),
      ('translation_scale_init', translation_scale_init),
  ):
    if not value >= SCALE_MINIMUM:
      raise ValueError(
          f"build_dfv_motion_net: {flag} must be >= {SCALE_MINIMUM} (the scales' constraint),"
          f' got {value}'
      )
  if not scale_learning_rate_multiplier > 0:
    raise ValueError(
        'build_dfv_motion_net: scale_learning_rate_multiplier must be > 0, got'
        f' {scale_learning_rate_multiplier}'
    )
  if channels_per_frame not in (3, 4):
    raise ValueError(
        'build_dfv_motion_net: channels_per_frame must be 3 (RGB) or 4 (RGB and depth), got'
        f' {channels_per_frame}'
    )
  if encoder_initializer not in ('glorot_uniform', 'he_normal'):
    raise ValueError(
        "build_dfv_motion_net: encoder_initializer must be 'glorot_uniform' or 'he_normal', got"
        f' {encoder_initializer!r}'
    )
  if head_initializer not in ('glorot_uniform', 'zeros'):
    raise ValueError(
        "build_dfv_motion_net: head_initializer must be 'glorot_uniform' or 'zeros', got"
        f' {head_initializer!r}'
    )
  if not isinstance(correlation_displacement, int) or correlation_displacement < 0:
    raise ValueError(
        'build_dfv_motion_net: correlation_displacement must be an integer >= 0 (0: as'
        f' published), got {correlation_displacement!r}'
    )
  if encoder_filters is None:
    encoder_filters = dfv_depth.scaled_filters(
        ENCODER_FILTERS, filters_scale, 'build_dfv_motion_net'
    )
  else:
    given = encoder_filters
    encoder_filters = tuple(given) if isinstance(given, (list, tuple)) else ()
    if len(encoder_filters) != len(ENCODER_FILTERS) or not all(
        isinstance(f, int) and f >= 1 for f in encoder_filters
    ):
      raise ValueError(
          f'build_dfv_motion_net: encoder_filters must be {len(ENCODER_FILTERS)} integers >= 1'
          f' (one per encoder level), got {given!r}'
      )
  regularizer = keras.regularizers.L2(weight_reg / 2.0) if weight_reg else None
  image_a = keras.Input(shape=(height, width, channels_per_frame), name='image_a')
  image_b = keras.Input(shape=(height, width, channels_per_frame), name='image_b')
  images = keras.layers.Concatenate(name='pair')([image_a, image_b])
  features = []
  x = images
  for i, filters in enumerate(encoder_filters):
    x = _conv(filters, 3, 2, regularizer, f'conv{i + 1}', kernel_initializer=encoder_initializer)(x)
    if i == 0 and correlation_displacement:
      x = keras.layers.Concatenate(name='conv1_and_correlation')(
          [
              x,
              _correlation_branch(
                  image_a,
                  image_b,
                  correlation_displacement,
                  filters_scale,
                  regularizer,
                  encoder_initializer,
              ),
          ]
      )
    features.append(x)
  bottleneck = keras.layers.Lambda(
      lambda t: tf.reduce_mean(t, axis=[1, 2], keepdims=True), name='bottleneck'
  )(x)
  background = _conv(
      6,
      1,
      1,
      regularizer,
      'background_motion',
      activation=None,
      use_bias=False,
      kernel_initializer=head_initializer,
  )(bottleneck)
  rotation = keras.layers.Lambda(lambda t: t[:, 0, 0, :3], name='raw_rotation')(background)
  translation = keras.layers.Lambda(lambda t: t[:, :, :, 3:], name='raw_translation')(background)
  field = translation
  for i, layer in reversed(list(enumerate(features))):
    field = _refine_motion_field(field, layer, regularizer, f'refine{i + 1}', head_initializer)
  field = _refine_motion_field(field, images, regularizer, 'refine0', head_initializer)
  rotation, translation, field = _Scales(
      rotation_init=rotation_scale_init,
      translation_init=translation_scale_init,
      learning_rate_multiplier=scale_learning_rate_multiplier,
      name='scales',
  )([rotation, translation, field])
  outputs = {
      'rotation_angles': keras.layers.Lambda(lambda t: t, name='rotation_angles')(rotation),
      'translation': keras.layers.Lambda(lambda t: t[:, 0, 0, :], name='translation')(translation),
      'residual_translation': keras.layers.Lambda(lambda t: t, name='residual_translation')(field),
  }
  if learn_intrinsics:
    outputs['intrinsics'] = _intrinsics_head(bottleneck, height, width, regularizer)
  return keras.Model([image_a, image_b], outputs, name=name)


def scales(model: keras.Model) -> Optional[keras.layers.Layer]:
  """The layer holding the learnable rotation / translation scales of a motion network."""
  return model.get_layer('scales')
