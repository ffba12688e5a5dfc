"""Photometric consistency between depth, egomotion (and object motion).

Eq. 3 of Taskology: a frame warped into its neighbour with the predicted depth
and motion (Sec. 3.2.1) must look like the neighbour,

    L_photo = (1 - a) |I - I_w| + a (1 - SSIM(I, I_w)) / 2,   a = 0.85,

averaged over pixels where the warp is valid, evaluated in both directions
over every consecutive pair of the mediator clip.
"""

import tensorflow as tf

from taskology_tf.consistency import base
from taskology_tf.geometry import ssim as ssim_lib


def _erode3(mask):
  """3x3 minimum of a {0, 1} mask: a pixel stays valid only if its whole
  SSIM window is valid. Edge pixels keep their in-image neighbours."""
  return -tf.nn.max_pool2d(-mask, ksize=3, strides=1, padding='SAME')


def photometric_error(target, warped, valid, ssim_weight):
  """Per-pixel Eq. 3 error and the mask it is valid on.

  Invalid warped pixels are 0, which would corrupt the 3x3 SSIM windows of
  their valid neighbours, so the SSIM term (and the whole per-pixel error)
  is only counted where the full window is valid (eroded mask).

  Args:
    target: [N, H, W, C] float32 in [0, 1].
    warped: [N, H, W, C] float32 in [0, 1].
    valid: [N, H, W, 1] float32 {0, 1}.
    ssim_weight: float, a of Eq. 3.

  Returns:
    error: [N, H, W, 1] float32, mean over channels.
    mask: [N, H, W, 1] float32 {0, 1}.
  """
  l1 = tf.reduce_mean(tf.abs(target - warped), axis=-1, keepdims=True)
  dssim = tf.clip_by_value(0.5 * (1.0 - ssim_lib.ssim(target, warped, max_val=1.0)), 0.0, 1.0)
  dssim = tf.reduce_mean(dssim, axis=-1, keepdims=True)
  error = (1.0 - ssim_weight) * l1 + ssim_weight * dssim
  return error, _erode3(valid)


class PhotometricConsistency(base.Relation):
  """Eq. 3: brightness constancy under the depth + motion warp.

  Reads `predictions[depth_task]['depth']` [B, T, H, W, 1] (metres),
  `predictions[motion_task]['rotation']` [B, T-1, 3] (axis-angle, radians)
  and `['translation']` [B, T-1, 3] (metres), both of cam_{t+1}_from_cam_t,
  and optionally `['object_motion']` [B, T-1, H, W, 3] (metres, frame t
  pixels, frame t+1 camera frame) and `['object_motion_backward']`
  [B, T-1, H, W, 3] (metres, frame t+1 pixels, frame t camera frame). If
  only the forward field is present the backward one is approximated by
  -R^T m at the same pixel (see `base.warp_consecutive_frames`).

  Loss = mean of the forward (t+1 -> t) and backward (t -> t+1) losses,
  each averaged over pixels whose warp (and SSIM window) is valid.
  """

  def __init__(
      self, depth_task='depth', motion_task='egomotion', ssim_weight=0.85, name='photometric'
  ):
    """Initialises the relation.

    Args:
      depth_task: name of the task predicting 'depth'.
      motion_task: name of the task predicting 'rotation', 'translation'
        (and optionally 'object_motion', 'object_motion_backward').
      ssim_weight: float in [0, 1], a of Eq. 3.
      name: relation name.
    """
    self.depth_task = depth_task
    self.motion_task = motion_task
    self.ssim_weight = float(ssim_weight)
    self.name = name
    self.tasks = (depth_task, motion_task)

  def __call__(self, predictions, batch):
    """See `base.Relation.__call__`.

    Metrics: 'forward_loss', 'backward_loss' (scalar losses per
    direction) and 'valid_fraction' (fraction of pixels counted, averaged
    over both directions).
    """
    motion = predictions[self.motion_task]
    return base.bidirectional_warp_loss(
        batch['image'],
        predictions[self.depth_task]['depth'],
        batch['intrinsics'],
        motion,
        lambda target, warped, valid: photometric_error(target, warped, valid, self.ssim_weight),
    )
