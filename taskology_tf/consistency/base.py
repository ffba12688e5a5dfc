"""The consistency-relation contract and helpers shared by relations.

A relation ties the predictions of several tasks on the same mediator batch
together with a known physical/geometric/logical constraint and turns its
violation into a loss (the paper's consistency losses, Sec. 3.2).

Contract
--------
* `name: str`: unique name; the trainer uses it to prefix summaries, so metric
  keys returned by a relation are local (e.g. 'forward_loss', not
  'photometric/forward_loss').
* `tasks: tuple[str, ...]`: the task names whose predictions are read.
* `__call__(predictions, batch) -> (loss, metrics)`:
  - `predictions`: `{task_name: {output_name: tensor}}`. Per-frame outputs of
    the mediator batch are `[B, T, ...]`; pairwise outputs (egomotion, object
    motion) between frames t and t+1 are `[B, T - 1, ...]`.
  - `batch`: the mediator batch, `batch['image']` [B, T, H, W, 3] float32 in
    [0, 1] (T consecutive frames) and `batch['intrinsics']` [B, 3, 3] float32
    in pixels (shared by all frames).
  - returns a scalar float32 loss (not yet multiplied by the relation's
    weight) and a dict of scalar float32 metrics.

A relation cannot tell whether a prediction came from a live model (gradients
flow) or a stale peer served over gRPC (a constant): it just gets tensors, and
computes gradients w.r.t. whatever the caller differentiates. Relations hold
no variables and no Keras state, so they run eagerly and under tf.function.
"""

from typing import Dict, Mapping, Tuple

import tensorflow as tf

from taskology_tf.geometry import transforms
from taskology_tf.geometry import warp

Predictions = Mapping[str, Mapping[str, tf.Tensor]]
Metrics = Dict[str, tf.Tensor]


class Relation:
  """Base class for consistency relations (see the module docstring).

  Subclasses set `name` and `tasks` and implement `__call__`.
  """

  name: str = 'relation'
  tasks: Tuple[str, ...] = ()

  def __call__(
      self, predictions: Predictions, batch: Mapping[str, tf.Tensor]
  ) -> Tuple[tf.Tensor, Metrics]:
    """Computes the consistency loss.

    Args:
      predictions: {task_name: {output_name: tensor}}; see module doc.
      batch: mediator batch; see module doc.

    Returns:
      loss: scalar float32.
      metrics: dict of scalar float32 tensors, keys local to the relation.
    """
    raise NotImplementedError

  def __repr__(self):
    return f'{type(self).__name__}(name={self.name!r}, ' f'tasks={self.tasks!r})'


def fold_time(x):
  """[B, T, ...] -> [B * T, ...] (batch-major: index b * T + t)."""
  x = tf.convert_to_tensor(x)
  shape = tf.shape(x)
  return tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))


def repeat_per_frame(intrinsics, num_frames):
  """[B, 3, 3] -> [B * num_frames, 3, 3], matching `fold_time`'s order."""
  return tf.repeat(intrinsics, num_frames, axis=0)


def masked_mean(values, mask):
  """Mean of `values` over pixels where mask is 1 (0 if there are none).

  Args:
    values: [N, H, W, 1] float32.
    mask: [N, H, W, 1] float32 in {0, 1}.

  Returns:
    Scalar float32.
  """
  return tf.reduce_sum(values * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def warp_consecutive_frames(
    values,
    depth,
    intrinsics,
    rotation,
    translation,
    object_motion=None,
    object_motion_backward=None,
):
  """Warps per-frame maps between consecutive frames, in both directions.

  For every pair (t, t+1) with motion (R, T) = cam_{t+1}_from_cam_t given as
  axis-angle:

  * 'forward': frame t+1's values resampled into frame t, using depth_t and
    (R, T) (and object motion m_t); compare with values_t.
  * 'backward': frame t's values resampled into frame t+1, using
    depth_{t+1} and the inverse motion cam_t_from_cam_{t+1} =
    (R^T, -R^T T); compare with values_{t+1}.

  Object motion in the backward direction: from X_{t+1} = R X_t + T + m,
  X_t = R^T X_{t+1} - R^T T - R^T m. The exact backward displacement is
  -R^T m evaluated at the frame-t pixel of the moving point, which is only
  known after warping; so if `object_motion_backward` (indexed by frame-t+1
  pixels, in frame t's camera frame) is given it is used as is, otherwise it
  is approximated by -R^T m sampled at the *same* pixel location, which is
  exact for rigid translations of regions larger than their image motion and
  first-order accurate otherwise.

  Args:
    values: [B, T, H, W, C] float32 per-frame maps (images, probabilities).
    depth: [B, T, H, W, 1] float32, metres.
    intrinsics: [B, 3, 3] float32, pixels.
    rotation: [B, T - 1, 3] float32, radians, axis-angle of
      cam_{t+1}_from_cam_t.
    translation: [B, T - 1, 3] float32, metres, of cam_{t+1}_from_cam_t.
    object_motion: optional [B, T - 1, H, W, 3] float32, metres: per-pixel
      displacement of frame t's pixels, in frame t+1's camera frame.
    object_motion_backward: optional [B, T - 1, H, W, 3] float32, metres:
      per-pixel displacement of frame t+1's pixels, in frame t's camera
      frame.

  Returns:
    {'forward': (target, warped, valid), 'backward': (target, warped, valid)}
    with target and warped [B * (T - 1), H, W, C] and valid
    [B * (T - 1), H, W, 1] float32 (pairs folded batch-major).
  """
  values = tf.convert_to_tensor(values, tf.float32)
  depth = tf.convert_to_tensor(depth, tf.float32)
  num_pairs = tf.shape(values)[1] - 1
  k = repeat_per_frame(tf.convert_to_tensor(intrinsics, tf.float32), num_pairs)
  values_t = fold_time(values[:, :-1])
  values_next = fold_time(values[:, 1:])
  depth_t = fold_time(depth[:, :-1])
  depth_next = fold_time(depth[:, 1:])
  rot = transforms.axis_angle_to_matrix(fold_time(rotation))  # [N, 3, 3]
  trans = fold_time(tf.convert_to_tensor(translation, tf.float32))  # [N, 3]
  rot_inv = tf.linalg.matrix_transpose(rot)
  trans_inv = -tf.linalg.matvec(rot_inv, trans)

  motion_fwd = None
  motion_bwd = None
  if object_motion is not None:
    motion_fwd = fold_time(tf.convert_to_tensor(object_motion, tf.float32))
    if object_motion_backward is None:
      motion_bwd = -tf.linalg.matvec(rot_inv[:, tf.newaxis, tf.newaxis], motion_fwd)
  if object_motion_backward is not None:
    motion_bwd = fold_time(tf.convert_to_tensor(object_motion_backward, tf.float32))

  warped_fwd, valid_fwd = warp.inverse_warp(values_next, depth_t, k, rot, trans, motion_fwd)
  warped_bwd, valid_bwd = warp.inverse_warp(values_t, depth_next, k, rot_inv, trans_inv, motion_bwd)
  return {
      'forward': (values_t, warped_fwd, valid_fwd),
      'backward': (values_next, warped_bwd, valid_bwd),
  }


def bidirectional_warp_loss(values, depth, intrinsics, motion, error_fn):
  """Warps `values` both ways between consecutive frames and averages a per-pixel error.

  The shared body of the warp-based relations (Eq. 3 photometric, Eq. 4 segmentation).

  Args:
    values: [B, T, H, W, C] float32 per-frame maps (images or class probabilities).
    depth: [B, T, H, W, 1] float32, metres.
    intrinsics: [B, 3, 3] float32, pixels.
    motion: the motion task's predictions: 'rotation', 'translation' [B, T - 1, 3] and
      optionally 'object_motion', 'object_motion_backward' [B, T - 1, H, W, 3].
    error_fn: (target, warped, valid) -> (error [N, H, W, 1], mask [N, H, W, 1]).

  Returns:
    (loss: mean of the two directions' masked means, metrics: forward_loss, backward_loss,
    valid_fraction).
  """
  warps = warp_consecutive_frames(
      values,
      depth,
      intrinsics,
      motion['rotation'],
      motion['translation'],
      motion.get('object_motion'),
      motion.get('object_motion_backward'),
  )
  losses, fractions = {}, []
  for direction, (target, warped, valid) in warps.items():
    error, mask = error_fn(target, warped, valid)
    losses[direction] = masked_mean(error, mask)
    fractions.append(tf.reduce_mean(mask))
  loss = 0.5 * (losses['forward'] + losses['backward'])
  return loss, {
      'forward_loss': losses['forward'],
      'backward_loss': losses['backward'],
      'valid_fraction': 0.5 * (fractions[0] + fractions[1]),
  }
