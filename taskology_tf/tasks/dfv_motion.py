"""Camera and object motion with the Depth from Videos in the Wild motion network."""

from typing import Optional, Sequence

import tensorflow as tf

from taskology_tf.geometry import transforms
from taskology_tf.networks import dfv_motion
from taskology_tf.tasks.base import to_float_image
from taskology_tf.tasks.base import upstream_key
from taskology_tf.tasks.egomotion import EgomotionTask


class DfvMotionTask(EgomotionTask):
  """Per consecutive frame pair (t, t+1): rigid camera motion, translation field, intrinsics.

  As published, the network runs on the pair in both frame orders (one batched call). Outputs
  per pair (unflattened to [B, T-1, ...]):
    'rotation' [3] axis-angle (radians) and 'translation' [3] (metres) of cam_{t+1}_from_cam_t,
      from the order (I_t, I_{t+1}); the same names as `EgomotionTask`, so any relation that
      reads ego-motion reads these;
    'residual_translation' [H, W, 3] metres, camera t+1's frame, indexed by frame-t pixels
      (multiplied by the movable mask in the relations, Eq. 2);
    'rotation_backward', 'translation_backward', 'residual_translation_backward': the same for
      cam_t_from_cam_{t+1} from the order (I_{t+1}, I_t), field indexed by frame-t+1 pixels;
    'intrinsics' [3, 3] pixels, the mean of both orders' predictions (learn_intrinsics only).
  The network's three rotation angles (R = Rx Ry Rz, the reference's parameterisation) are
  returned as the equivalent axis-angle vector, the project's convention.

  Args:
    height, width: frame size in pixels.
    learn_intrinsics: add the intrinsics head.
    weight_reg: L2 regularisation (1e-2 published), in `model.losses`.
    filters_scale: the network's filter counts times this (1.0 as published; gin/tests/tiny.gin
      shrinks it so smoke tests build in seconds).
    rotation_scale_init, translation_scale_init: initial learnable output scales (0.01 as
      published; networks/dfv_motion.build_dfv_motion_net).
    scale_learning_rate_multiplier: the scales alone learn this many times faster (1 as
      published; build_dfv_motion_net).
    translation_prior: None (published), or a translation (x, y, z) in metres of
      cam_{t+1}_from_cam_t added to the network's background translation of the order
      (I_t, I_{t+1}) and subtracted from that of (I_{t+1}, I_t) (ours): a camera that moves
      forward d metres per frame has (0, 0, -d), and its inverse is -(0, 0, -d) while the
      rotation is small. The network learns the rest; the translation field is unchanged.
      With the published 0.01 output scales the motion starts at the prior instead of at
      ~0 (README, "Why the depth waits").
    depth_input_task: None (published: the network sees the RGB pair), or the name of a depth
      task whose predicted depth of both frames is stacked onto their RGB (8 input channels):
      the 'cascade' of Li et al. 2020 (depth_and_motion_learning, on by default there), the
      same group's successor of DfVitW. It tells the network the scale the depth network
      chose, so the translation can follow it; the depth is a constant input (a peer's
      prediction, no gradient into the depth network through it). Wire inputs gain
      'depth_a', 'depth_b' (float32 [H, W, 1], metres), read from the mediator's upstream
      predictions (tasks/base.with_upstream).
    encoder_initializer: the encoder convolutions' kernel initializer, 'glorot_uniform' (as
      published) or 'he_normal' (ours; networks/dfv_motion.build_dfv_motion_net).
    correlation_displacement: 0 (as published), or D >= 1 (ours): a cost volume of the two
      frames' shared stem features at displacements [-D, D]^2 joins the encoder
      (networks/dfv_motion.build_dfv_motion_net).
    encoder_filters: None (the published widths times filters_scale), or the seven encoder
      levels' filter counts (ours; networks/dfv_motion.build_dfv_motion_net).
    head_initializer: the motion heads' kernel initializer, 'glorot_uniform' (as published) or
      'zeros' (ours: the motion starts at exactly the translation prior, or 0;
      networks/dfv_motion.build_dfv_motion_net).
    name: task name.
  """

  def __init__(
      self,
      height: int,
      width: int,
      learn_intrinsics: bool = False,
      weight_reg: float = 0.01,
      filters_scale: float = 1.0,
      rotation_scale_init: float = dfv_motion.SCALE_INIT,
      translation_scale_init: float = dfv_motion.SCALE_INIT,
      scale_learning_rate_multiplier: float = 1.0,
      translation_prior: Optional[Sequence[float]] = None,
      depth_input_task: Optional[str] = None,
      encoder_initializer: str = 'glorot_uniform',
      correlation_displacement: int = 0,
      encoder_filters: Optional[Sequence[int]] = None,
      head_initializer: str = 'glorot_uniform',
      name: str = 'motion',
  ):
    super().__init__(height, width, name=name)
    self.learn_intrinsics = learn_intrinsics
    self.weight_reg = weight_reg
    self.filters_scale = filters_scale
    self.rotation_scale_init = rotation_scale_init
    self.translation_scale_init = translation_scale_init
    self.scale_learning_rate_multiplier = scale_learning_rate_multiplier
    if translation_prior is not None:
      try:
        prior = [float(v) for v in translation_prior]
      except (TypeError, ValueError) as e:
        raise ValueError(
            f'DfvMotionTask.translation_prior must be 3 numbers (metres), got {translation_prior!r}'
        ) from e
      if len(prior) != 3:
        raise ValueError(
            f'DfvMotionTask.translation_prior must be 3 numbers (metres), got {translation_prior!r}'
        )
      translation_prior = tuple(prior)
    self.translation_prior = translation_prior
    if depth_input_task is not None and (
        not isinstance(depth_input_task, str) or not depth_input_task
    ):
      raise ValueError(
          f'DfvMotionTask.depth_input_task must be a task name or None, got {depth_input_task!r}'
      )
    if depth_input_task == name:
      raise ValueError(
          f'DfvMotionTask.depth_input_task cannot be the motion task itself ({name!r})'
      )
    self.depth_input_task = depth_input_task
    self.encoder_initializer = encoder_initializer
    self.correlation_displacement = correlation_displacement
    # As given (gin passes tuples); build_dfv_motion_net checks it and names a bad value.
    self.encoder_filters = encoder_filters
    self.head_initializer = head_initializer

  @property
  def input_tasks(self):
    return (self.depth_input_task,) if self.depth_input_task else ()

  @property
  def input_spec(self):
    spec = dict(super().input_spec)
    if self.depth_input_task:
      depth = tf.TensorSpec([self.height, self.width, 1], tf.float32)
      spec.update(depth_a=depth, depth_b=depth)
    return spec

  def serving_inputs(self, mediator):
    inputs = super().serving_inputs(mediator)
    if self.depth_input_task:
      key = upstream_key(self.depth_input_task, 'depth')
      if key not in mediator:
        raise KeyError(
            f'task {self.name!r} takes the depth of task {self.depth_input_task!r} as input '
            f'(DfvMotionTask.depth_input_task); the mediator batch has no {key!r}'
        )
      depth = tf.cast(mediator[key], tf.float32)
      shape = tf.shape(depth)
      flat = tf.concat([[-1], shape[2:]], 0)
      inputs['depth_a'] = tf.reshape(depth[:, :-1], flat)
      inputs['depth_b'] = tf.reshape(depth[:, 1:], flat)
    return inputs

  def dedicated_inputs(self, batch):
    if self.depth_input_task:
      raise ValueError(
          f'task {self.name!r} takes predicted depth as input (depth_input_task='
          f'{self.depth_input_task!r}) and so trains on the mediator only; it has no dedicated '
          'batches (drop its dedicated_clips)'
      )
    return super().dedicated_inputs(batch)

  @property
  def output_spec(self):
    vec = tf.TensorSpec([3], tf.float32)
    field = tf.TensorSpec([self.height, self.width, 3], tf.float32)
    spec = {
        'rotation': vec,
        'translation': vec,
        'residual_translation': field,
        'rotation_backward': vec,
        'translation_backward': vec,
        'residual_translation_backward': field,
    }
    if self.learn_intrinsics:
      spec['intrinsics'] = tf.TensorSpec([3, 3], tf.float32)
    return spec

  def build_network(self):
    return dfv_motion.build_dfv_motion_net(
        self.height,
        self.width,
        learn_intrinsics=self.learn_intrinsics,
        weight_reg=self.weight_reg,
        filters_scale=self.filters_scale,
        rotation_scale_init=self.rotation_scale_init,
        translation_scale_init=self.translation_scale_init,
        scale_learning_rate_multiplier=self.scale_learning_rate_multiplier,
        channels_per_frame=4 if self.depth_input_task else 3,
        encoder_initializer=self.encoder_initializer,
        correlation_displacement=self.correlation_displacement,
        encoder_filters=self.encoder_filters,
        head_initializer=self.head_initializer,
        name=f'{self.name}_dfv_motion',
    )

  def scalar_summaries(self, model):
    """The learnt output scales as the network applies them (`scale/rotation`, ...)."""
    rotation, translation = dfv_motion.scales(model).values()
    return {'scale/rotation': float(rotation), 'scale/translation': float(translation)}

  def call(self, model, inputs, training=False):
    needed = ('image_a', 'image_b') + (('depth_a', 'depth_b') if self.depth_input_task else ())
    for key in needed:
      if key not in inputs:
        raise KeyError(f'task {self.name!r}: missing input tensor {key!r}; got {sorted(inputs)}')
    a = to_float_image(inputs['image_a'])
    b = to_float_image(inputs['image_b'])
    if self.depth_input_task:
      a = tf.concat([a, tf.cast(inputs['depth_a'], tf.float32)], -1)
      b = tf.concat([b, tf.cast(inputs['depth_b'], tf.float32)], -1)
    # Both frame orders in one batch: [(a, b); (b, a)].
    out = model([tf.concat([a, b], 0), tf.concat([b, a], 0)], training=training)
    rotation = transforms.matrix_to_axis_angle(
        dfv_motion.matrix_from_angles(out['rotation_angles'])
    )
    fwd_rot, bwd_rot = tf.split(rotation, 2)
    fwd_t, bwd_t = tf.split(out['translation'], 2)
    if self.translation_prior is not None:
      prior = tf.constant(self.translation_prior, fwd_t.dtype)
      fwd_t, bwd_t = fwd_t + prior, bwd_t - prior
    fwd_field, bwd_field = tf.split(out['residual_translation'], 2)
    result = {
        'rotation': fwd_rot,
        'translation': fwd_t,
        'residual_translation': fwd_field,
        'rotation_backward': bwd_rot,
        'translation_backward': bwd_t,
        'residual_translation_backward': bwd_field,
    }
    if self.learn_intrinsics:
      fwd_k, bwd_k = tf.split(out['intrinsics'], 2)
      result['intrinsics'] = 0.5 * (fwd_k + bwd_k)  # As published: the mean of both orders.
    return result
