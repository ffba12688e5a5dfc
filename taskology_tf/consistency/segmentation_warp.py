"""Segmentation consistency under the depth + motion warp.

Eq. 4 of Taskology: semantic labels move with the scene, so the segmentation
of frame t+1 warped into frame t (with the same Sec. 3.2.1 warp as Eq. 3) must
agree with the segmentation of frame t. We compare class probabilities
(softmax of the logits) with an L1 distance, halved so it is the total
variation distance in [0, 1]:

    L_seg = 1/2 sum_c |S_t,c - warp(S_t+1)_c|,

averaged over valid pixels and over both directions (t+1 -> t and
t -> t+1). Probabilities rather than logits are compared because logits are
only defined up to a per-pixel additive constant. Gradients reach the
segmentation of both frames and, through the sampling positions, depth and
motion.
"""

import tensorflow as tf

from taskology_tf.consistency import base


class SegmentationWarpConsistency(base.Relation):
  """Eq. 4: warped segmentation of the next frame matches this frame's.

  Reads `predictions[segmentation_task]['logits']` [B, T, H, W, C],
  `predictions[depth_task]['depth']` [B, T, H, W, 1] (metres) and
  `predictions[motion_task]` 'rotation' / 'translation' [B, T-1, 3] of
  cam_{t+1}_from_cam_t (axis-angle radians / metres), plus the optional
  object motion fields (see `photometric.PhotometricConsistency`).
  """

  def __init__(
      self,
      segmentation_task='segmentation',
      depth_task='depth',
      motion_task='egomotion',
      name='segmentation_warp',
  ):
    """Initialises the relation.

    Args:
      segmentation_task: name of the task predicting 'logits'.
      depth_task: name of the task predicting 'depth'.
      motion_task: name of the task predicting 'rotation' and
        'translation' (optionally 'object_motion',
        'object_motion_backward').
      name: relation name.
    """
    self.segmentation_task = segmentation_task
    self.depth_task = depth_task
    self.motion_task = motion_task
    self.name = name
    self.tasks = (segmentation_task, depth_task, motion_task)

  def __call__(self, predictions, batch):
    """See `base.Relation.__call__`.

    Metrics: 'forward_loss', 'backward_loss', 'valid_fraction'.
    """
    logits = tf.convert_to_tensor(predictions[self.segmentation_task]['logits'], tf.float32)
    probabilities = tf.nn.softmax(logits, axis=-1)
    motion = predictions[self.motion_task]

    def half_l1(target, warped, valid):
      return 0.5 * tf.reduce_sum(tf.abs(target - warped), axis=-1, keepdims=True), valid

    return base.bidirectional_warp_loss(
        probabilities, predictions[self.depth_task]['depth'], batch['intrinsics'], motion, half_l1
    )
