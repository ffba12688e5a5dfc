"""Depth-normals consistency.

Eq. 6 of Taskology: the normals implied by the predicted depth (its spatial
derivatives, see `geometry.normals`) must agree with the predicted normals,

    L_dn = 1 - cos(n(D), N) = 1 - n(D) . N / |N|,

averaged over pixels. Gradients reach the depth (through the finite
differences) and the normals.
"""

import tensorflow as tf

from taskology_tf.consistency import base
from taskology_tf.geometry import normals as normals_lib


class DepthNormalsConsistency(base.Relation):
  """Eq. 6: cosine distance between depth-derived and predicted normals.

  Reads `predictions[depth_task]['depth']` ([B, T, H, W, 1] or
  [B, H, W, 1], metres) and `predictions[normals_task]['normals']` (same
  leading shape, [..., 3], camera frame; normalised here, so unnormalised
  network outputs are fine). Uses `batch['intrinsics']` [B, 3, 3].
  """

  def __init__(
      self, depth_task='depth', normals_task='normals', max_depth=None, name='depth_normals'
  ):
    """Initialises the relation.

    Args:
      depth_task: name of the task predicting 'depth'.
      normals_task: name of the task predicting 'normals'.
      max_depth: optional float, metres: pixels with predicted depth at or
        beyond it (e.g. sky rendered at a large finite depth) are ignored.
      name: relation name.
    """
    self.depth_task = depth_task
    self.normals_task = normals_task
    self.max_depth = max_depth
    self.name = name
    self.tasks = (depth_task, normals_task)

  def __call__(self, predictions, batch):
    """See `base.Relation.__call__`.

    Metrics: 'mean_cosine' (mean cosine similarity over counted pixels)
    and 'valid_fraction'.
    """
    depth = tf.convert_to_tensor(predictions[self.depth_task]['depth'], tf.float32)
    normals = tf.convert_to_tensor(predictions[self.normals_task]['normals'], tf.float32)
    intrinsics = tf.convert_to_tensor(batch['intrinsics'], tf.float32)
    if depth.shape.rank == 5:  # [B, T, H, W, 1]: fold frames into batch.
      intrinsics = base.repeat_per_frame(intrinsics, tf.shape(depth)[1])
      depth = base.fold_time(depth)
      normals = base.fold_time(normals)
    from_depth = normals_lib.depth_to_normals(depth, intrinsics)
    cosine = tf.reduce_sum(from_depth * normals_lib.safe_normalize(normals), axis=-1, keepdims=True)
    if self.max_depth is None:
      mask = tf.ones_like(cosine)
    else:
      # The mask is a selection, not a function to differentiate. A
      # pixel counts only if its whole 3x3 neighbourhood is below
      # max_depth, because the central differences behind its
      # depth-normal read the neighbours (a sky neighbour would tilt it).
      far = tf.cast(tf.stop_gradient(depth) >= self.max_depth, tf.float32)
      far = tf.nn.max_pool2d(far, ksize=3, strides=1, padding='SAME')
      mask = 1.0 - far
    loss = base.masked_mean(1.0 - cosine, mask)
    metrics = {
        'mean_cosine': base.masked_mean(cosine, mask),
        'valid_fraction': tf.reduce_mean(mask),
    }
    return loss, metrics
