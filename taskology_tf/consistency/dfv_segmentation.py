"""Segmentation warp consistency (Eq. 4) through the Depth from Videos in the Wild depth and motion.

Eq. 4 of Taskology: the segmentation moves with the scene, so frame 2's segmentation sampled
where frame 1's pixels land must equal frame 1's segmentation. Here the warp is DfVitW's
(consistency/dfv.py): frame 1's depth is moved into frame 2 by the predicted rotation and the
per-pixel translation field t(p) = T + m(p) * residual(p) of Eq. 2, so moving objects are
warped with their own motion, and each pair is compared in both directions with the motion the
network predicts for that frame order (the `_backward` outputs), as DfVitW's RGB term does.
Only pixels whose moved point is inside frame 2 and not behind frame 2's surface there count
(the occlusion mask of `dfv.rgbd_consistency_loss`, with a relative tolerance
`occlusion_tolerance` so that a surface seen at the same depth in both frames, the consistent
case, is compared rather than dropped by float rounding): an occluded point has no counterpart
to agree with.

Per direction, with S the compared maps ([N, H, W, C]):

    L_dir = sum_p closer(p) e(p) / max(sum_p closer(p), 1),
    e(p) = mean_c |S1_c(p) - S2_c(p')|            (compare='logits', Eq. 4 on the logits), or
    e(p) = 1/2 sum_c |P1_c(p) - P2_c(p')|          (compare='probabilities': total variation of
                                                     the softmax, as segmentation_warp.py),

and the loss is the mean over both directions (and over pairs, folded into the batch). The
movable mask m of the translation field comes from the segmenter's own arg-max (default), from
dataset labels (`label_key`, received through `mediator_label_keys`), or is the whole frame
(`mask_from_segmentation=False` and no label key). A frozen segmenter and a stale peer give
their logits like a live one; the relation cannot tell them apart.
"""

from typing import Optional, Sequence

import tensorflow as tf

from taskology_tf.consistency import base
from taskology_tf.consistency import dfv
from taskology_tf.geometry import transforms

COMPARE_MODES = ('logits', 'probabilities')


class DfvSegmentationWarpConsistency(base.Relation):
  """Eq. 4 through the DfV depth and motion (module docstring).

  Reads predictions[segmentation_task]['logits'] [B, T, H, W, C], predictions[depth_task]
  ['depth'] [B, T, H, W, 1] (metres) and the DfV motion task's outputs (dfv.py's module
  docstring; [B, T-1, ...]); batch['intrinsics'] [B, 3, 3] (pixels) or the motion task's learned
  'intrinsics'.

  Args:
    segmentation_task: task predicting 'logits'.
    depth_task: task predicting 'depth'.
    motion_task: the DfV motion task.
    compare: 'logits' (Eq. 4 on the logits, L1 averaged over classes) or 'probabilities'
      (half L1 of the softmax).
    mask_from_segmentation: the movable mask of the translation field is the arg-max of
      `segmentation_task` in `movable_classes` (Eq. 2's m).
    label_key: or from these per-frame labels of the mediator batch (ids in the class set).
    movable_classes: class ids that can move (needed with either mask source).
    foreground_dilation: mask dilation in pixels (8, as published).
    learned_intrinsics: use the motion task's 'intrinsics'.
    occlusion_tolerance: a moved point counts while its depth <= (1 + this) x frame 2's.
    name: relation name.
  """

  def __init__(
      self,
      segmentation_task: str = 'segmentation',
      depth_task: str = 'depth',
      motion_task: str = 'motion',
      compare: str = 'logits',
      mask_from_segmentation: bool = True,
      label_key: Optional[str] = None,
      movable_classes: Sequence[int] = (),
      foreground_dilation: int = dfv.FOREGROUND_DILATION,
      learned_intrinsics: bool = False,
      occlusion_tolerance: float = 0.01,
      name: str = 'dfv_segmentation_warp',
  ):
    if compare not in COMPARE_MODES:
      raise ValueError(
          f'DfvSegmentationWarpConsistency.compare must be one of {COMPARE_MODES}, got '
          f'{compare!r}'
      )
    if mask_from_segmentation and label_key:
      raise ValueError(
          'DfvSegmentationWarpConsistency: mask_from_segmentation=True and label_key='
          f'{label_key!r} both give the movable mask; choose one'
      )
    if (mask_from_segmentation or label_key) and not movable_classes:
      raise ValueError(
          'DfvSegmentationWarpConsistency: a movable mask needs movable_classes (e.g. '
          'class_set.MOVABLE_CLASS_IDS)'
      )
    self.segmentation_task = segmentation_task
    self.depth_task = depth_task
    self.motion_task = motion_task
    self.compare = compare
    self.mask_from_segmentation = bool(mask_from_segmentation)
    self.label_key = label_key
    self.mediator_label_keys = (label_key,) if label_key else ()
    self.movable_classes = tuple(int(c) for c in movable_classes)
    self.foreground_dilation = int(foreground_dilation)
    self.learned_intrinsics = learned_intrinsics
    self.occlusion_tolerance = float(occlusion_tolerance)
    self.name = name
    self.tasks = (segmentation_task, depth_task, motion_task)

  @property
  def mask_source(self) -> str:
    """'segmentation:<task>', 'labels:<key>' or 'none' (as the DfV relations report it)."""
    if self.mask_from_segmentation:
      return f'segmentation:{self.segmentation_task}'
    if self.label_key:
      return f'labels:{self.label_key}'
    return 'none'

  def _masks(self, logits, batch):
    """[B, T, H, W, 1] dilated movable masks, or None."""
    if self.mask_from_segmentation:
      mask = dfv.movable_mask_from_logits(base.fold_time(logits), self.movable_classes)
    elif self.label_key:
      if self.label_key not in batch:
        raise KeyError(
            f'{self.name}: label_key={self.label_key!r} but the mediator batch has only '
            f'{sorted(batch)}'
        )
      mask = dfv.movable_mask_from_labels(
          base.fold_time(batch[self.label_key]), self.movable_classes
      )
    else:
      return None
    mask = dfv.dilate_mask(mask, self.foreground_dilation)
    shape = tf.shape(logits)
    return tf.reshape(mask, tf.concat([shape[:2], tf.shape(mask)[1:]], axis=0))

  def _error(self, target, sampled):
    if self.compare == 'logits':
      return tf.reduce_mean(tf.abs(target - sampled), axis=-1, keepdims=True)
    return 0.5 * tf.reduce_sum(tf.abs(target - sampled), axis=-1, keepdims=True)

  def __call__(self, predictions, batch):
    """See `base.Relation.__call__`. Metrics: 'forward_loss', 'backward_loss' and
    'closer_fraction' (fraction of pixels compared, mean of both directions)."""
    logits = tf.convert_to_tensor(predictions[self.segmentation_task]['logits'], tf.float32)
    depth = tf.convert_to_tensor(predictions[self.depth_task]['depth'], tf.float32)
    motion = predictions[self.motion_task]
    maps = logits if self.compare == 'logits' else tf.nn.softmax(logits, axis=-1)
    num_pairs = depth.shape[1] - 1 if depth.shape[1] is not None else tf.shape(depth)[1] - 1
    if self.learned_intrinsics:
      if 'intrinsics' not in motion:
        raise KeyError(
            f'{self.name}: learned_intrinsics=True but task {self.motion_task!r} predicts no '
            '"intrinsics"'
        )
      intrinsics = base.fold_time(tf.convert_to_tensor(motion['intrinsics'], tf.float32))
    else:
      intrinsics = base.repeat_per_frame(
          tf.convert_to_tensor(batch['intrinsics'], tf.float32), num_pairs
      )
    masks = self._masks(logits, batch)
    fwd_mask = bwd_mask = None
    if masks is not None:
      fwd_mask, bwd_mask = base.fold_time(masks[:, :-1]), base.fold_time(masks[:, 1:])

    def fold(x):
      return base.fold_time(tf.convert_to_tensor(x, tf.float32))

    fwd_field = dfv.translation_field(
        fold(motion['translation']), fold(motion['residual_translation']), fwd_mask
    )
    bwd_field = dfv.translation_field(
        fold(motion['translation_backward']),
        fold(motion['residual_translation_backward']),
        bwd_mask,
    )
    fwd_rotation = transforms.axis_angle_to_matrix(fold(motion['rotation']))
    bwd_rotation = transforms.axis_angle_to_matrix(fold(motion['rotation_backward']))
    depth_t, depth_next = fold(depth[:, :-1]), fold(depth[:, 1:])
    maps_t, maps_next = fold(maps[:, :-1]), fold(maps[:, 1:])
    losses, fractions = [], []
    for depth1, maps1, rotation, field, depth2, maps2 in (
        (depth_t, maps_t, fwd_rotation, fwd_field, depth_next, maps_next),
        (depth_next, maps_next, bwd_rotation, bwd_field, depth_t, maps_t),
    ):
      pixels, moved_depth, valid = dfv.transform_depth_map(depth1, rotation, field, intrinsics)
      sampled_depth = dfv._resample(depth2, pixels)  # pylint: disable=protected-access
      sampled = dfv._resample(maps2, pixels)  # pylint: disable=protected-access
      not_behind = moved_depth <= sampled_depth * (1.0 + self.occlusion_tolerance)
      closer = valid * tf.cast(not_behind, tf.float32)
      losses.append(base.masked_mean(self._error(maps1, sampled), closer))
      fractions.append(tf.reduce_mean(closer))
    loss = 0.5 * (losses[0] + losses[1])
    return loss, {
        'forward_loss': losses[0],
        'backward_loss': losses[1],
        'closer_fraction': 0.5 * (fractions[0] + fractions[1]),
    }
