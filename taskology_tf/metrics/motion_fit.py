"""Free ego-motion fitted to a fixed depth through a DfV objective (tools/dfv_motion_fit_probe.py).

No motion network: every consecutive pair of every clip gets its own rotation and translation
(both frame orders), free variables that Adam fits to `DfvConsistency` for a depth that does not
change (the ground truth, a constant, a ground-plane prior). Where this fit finds the true motion
quickly from a near-zero start, the objective identifies the motion for that depth and a network
that stays far from it is slow for reasons of its own (its parametrisation, its start); where
the fit does not, the objective itself does not tell the motion at that depth.

The residual (object) translation fields stay zero: the fit is of the ego-motion alone.
"""

from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from taskology_tf.geometry import transforms
from taskology_tf.metrics import egomotion_errors


def initial_motion(num_clips: int, num_pairs: int, translation_norm: float, seed: int):
  """Start values [B, T-1, 3] (float32 numpy): zero rotations; translations of norm
  `translation_norm` in random directions (uniform on the sphere), forward and backward
  independent, as a randomly initialised motion head gives."""
  rng = np.random.default_rng(seed)

  def directions():
    v = rng.normal(size=[num_clips, num_pairs, 3])
    return v / np.linalg.norm(v, axis=-1, keepdims=True)

  zero = np.zeros([num_clips, num_pairs, 3], np.float32)
  return {
      'rotation': zero.copy(),
      'translation': (translation_norm * directions()).astype(np.float32),
      'rotation_backward': zero.copy(),
      'translation_backward': (translation_norm * directions()).astype(np.float32),
  }


def ego_errors(rotation, translation, rotation_backward, egomotion) -> Dict[str, np.ndarray]:
  """`egomotion_errors.compare_egomotion` of forward motions [B, T-1, 3] (axis-angle, metres)
  against the ground truth `egomotion` [B, T-1, 4, 4] (cam_{t+1}_from_cam_t)."""
  egomotion = np.asarray(egomotion, np.float64).reshape([-1, 4, 4])
  to_matrix = lambda r: transforms.axis_angle_to_matrix(tf.reshape(r, [-1, 3])).numpy()
  return egomotion_errors.compare_egomotion(
      to_matrix(rotation).astype(np.float64),
      np.asarray(translation, np.float64).reshape([-1, 3]),
      egomotion[:, :3, :3],
      egomotion[:, :3, 3],
      to_matrix(rotation_backward).astype(np.float64),
  )


def fit_free_motion(
    relation,
    depth: tf.Tensor,
    batch: Dict[str, tf.Tensor],
    init: Dict[str, np.ndarray],
    steps: int,
    learning_rate: float,
    record_at: Sequence[int],
    rotation_learning_rate: Optional[float] = None,
    depth_task: str = 'depth',
    motion_task: str = 'motion',
):
  """Fits free per-pair ego-motions to `relation` for a fixed depth.

  Args:
    relation: a `DfvConsistency` whose depth_task / motion_task are `depth_task` and
      `motion_task` (a motion task, not the ground-truth oracle).
    depth: [B, T, H, W, 1] the fixed depth (no gradient).
    batch: the relation's mediator batch ('image' in [0, 1], 'intrinsics', mask labels).
    init: start values, `initial_motion`'s keys, each [B, T-1, 3].
    steps: Adam steps.
    learning_rate: Adam's learning rate of the translations (metres per step, roughly).
    record_at: steps (0 = the start, before any update) at which to record the motion.
    rotation_learning_rate: Adam's learning rate of the rotations (radians per step, roughly;
      None: `learning_rate`).

  Returns:
    {step: {'rotation', 'translation', 'rotation_backward', 'translation_backward': numpy
    [B, T-1, 3], 'loss': float}} for the steps of `record_at` that are <= `steps`.
  """
  rotation_learning_rate = (
      learning_rate if rotation_learning_rate is None else rotation_learning_rate
  )
  if steps < 0 or learning_rate <= 0 or rotation_learning_rate <= 0:
    raise ValueError(
        'fit_free_motion: steps must be >= 0 and the learning rates > 0, got '
        f'steps={steps}, learning_rate={learning_rate}, '
        f'rotation_learning_rate={rotation_learning_rate}'
    )
  missing = {'rotation', 'translation', 'rotation_backward', 'translation_backward'} - set(init)
  if missing:
    raise KeyError(f'fit_free_motion: init lacks {sorted(missing)}')
  depth = tf.constant(depth, tf.float32)
  if depth.shape.rank != 5:
    raise ValueError(f'fit_free_motion: depth must be [B, T, H, W, 1], got shape {depth.shape}')
  expected = (depth.shape[0], depth.shape[1] - 1, 3)
  for k in sorted(init):
    if np.shape(init[k]) != expected:
      raise ValueError(
          f'fit_free_motion: init[{k!r}] has shape {np.shape(init[k])}; the depth '
          f'{tuple(depth.shape)} needs [B, T-1, 3] = {expected}'
      )
  field_shape = tf.concat(
      [tf.shape(depth)[:1], tf.shape(depth)[1:2] - 1, tf.shape(depth)[2:4], [3]], 0
  )
  zeros_field = tf.zeros(field_shape)
  variables = {k: tf.Variable(np.asarray(v, np.float32), name=k) for k, v in init.items()}
  optimizers = {
      k: keras.optimizers.Adam(
          rotation_learning_rate if k.startswith('rotation') else learning_rate
      )
      for k in variables
  }

  def loss_fn():
    motion = dict(variables)
    motion['residual_translation'] = zeros_field
    motion['residual_translation_backward'] = zeros_field
    loss, _ = relation({depth_task: {'depth': depth}, motion_task: motion}, batch)
    return loss

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = loss_fn()
    grads = tape.gradient(loss, variables)
    for k, v in variables.items():
      optimizers[k].apply_gradients([(grads[k], v)])
    return loss

  record = sorted(s for s in set(record_at) if 0 <= s <= steps)
  out = {}

  def snapshot(at, loss):
    out[at] = {k: v.numpy().copy() for k, v in variables.items()}
    out[at]['loss'] = float(loss)

  if 0 in record:
    snapshot(0, loss_fn())
  for s in range(1, steps + 1):
    loss = step()
    if s in record:
      snapshot(s, loss)
  return out
