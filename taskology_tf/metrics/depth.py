"""Depth metrics (Eigen et al.): Abs Rel, Sq Rel, RMSE, RMSE log, delta < 1.25^k.

Accumulated as sums over every valid pixel of the evaluation set, so the result is the
dataset-level pixel mean and does not depend on how the set was batched. Ground truth at or
below `min_depth` is invalid and never scored: ScanNet's and SceneNet RGB-D's 0 = missing depth.
"""

from typing import Dict, Optional

import numpy as np
import tensorflow as tf


class DepthMetrics:
  """Streams depth predictions against ground truth.

  Args:
    min_depth: ground-truth depths at or below this (metres) are ignored.
    max_depth: ground-truth depths at or above this (metres) are ignored (e.g. sky); predictions
      are clipped to [min_depth, max_depth] as is standard.
    median_scaling: rescale each predicted map by median(gt) / median(pred) over its valid pixels,
      for scale-ambiguous (self-supervised) depth.
  """

  def __init__(
      self, min_depth: float = 1e-3, max_depth: float = 80.0, median_scaling: bool = False
  ):
    self.min_depth = min_depth
    self.max_depth = max_depth
    self.median_scaling = median_scaling
    self.reset()

  def reset(self) -> None:
    self._sums = {k: 0.0 for k in ('abs_rel', 'sq_rel', 'sq_err', 'sq_log_err', 'd1', 'd2', 'd3')}
    self._count = 0

  def update(self, gt_depth, pred_depth) -> None:
    """Adds a batch.

    Args:
      gt_depth: [B, H, W, 1] float32, metres, camera z.
      pred_depth: [B, H, W, 1] float32, metres, camera z.
    """
    gt = np.asarray(gt_depth, np.float64)
    pred = np.asarray(pred_depth, np.float64)
    if gt.shape != pred.shape:
      raise ValueError(f'DepthMetrics: gt_depth shape {gt.shape} != pred_depth shape {pred.shape}')
    for g, p in zip(gt, pred):
      valid = (g > self.min_depth) & (g < self.max_depth)
      if not valid.any():
        continue
      g, p = g[valid], p[valid]
      if self.median_scaling:
        p = p * (np.median(g) / max(np.median(p), 1e-9))
      p = np.clip(p, self.min_depth, self.max_depth)
      ratio = np.maximum(g / p, p / g)
      self._sums['abs_rel'] += np.sum(np.abs(g - p) / g)
      self._sums['sq_rel'] += np.sum((g - p) ** 2 / g)
      self._sums['sq_err'] += np.sum((g - p) ** 2)
      self._sums['sq_log_err'] += np.sum((np.log(g) - np.log(p)) ** 2)
      for k, name in ((1, 'd1'), (2, 'd2'), (3, 'd3')):
        self._sums[name] += np.sum(ratio < 1.25**k)
      self._count += g.size

  def result(self) -> Dict[str, float]:
    """Returns abs_rel, sq_rel, rmse, rmse_log, delta1..3 (fractions) over all pixels seen."""
    n = max(self._count, 1)
    s = self._sums
    return {
        'abs_rel': s['abs_rel'] / n,
        'sq_rel': s['sq_rel'] / n,
        'rmse': float(np.sqrt(s['sq_err'] / n)),
        'rmse_log': float(np.sqrt(s['sq_log_err'] / n)),
        'delta1': s['d1'] / n,
        'delta2': s['d2'] / n,
        'delta3': s['d3'] / n,
        'num_pixels': float(self._count),
    }


def abs_rel(gt_depth: tf.Tensor, pred_depth: tf.Tensor, mask: Optional[tf.Tensor] = None):
  """In-graph Abs Rel for training summaries: mean |gt - pred| / gt over `mask` (float 0/1)."""
  mask = tf.ones_like(gt_depth) if mask is None else mask
  err = tf.abs(gt_depth - pred_depth) / tf.maximum(gt_depth, 1e-6)
  return tf.reduce_sum(err * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def abs_rel_by_group(
    gt_depth,
    pred_depth,
    groups,
    num_groups: int,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    median_scaling: bool = False,
) -> Dict[str, np.ndarray]:
  """Where an Abs Rel comes from: its pixel sums split by an integer label per pixel.

  Each map is scaled and clipped exactly as `DepthMetrics` does (the median ratio over all of
  its valid pixels, not per group), so the groups' sums add up to `DepthMetrics`' Abs Rel sum:
  sum(share * abs_rel) over groups = DepthMetrics().result()['abs_rel'].

  Args:
    gt_depth, pred_depth: [B, H, W, 1] metres.
    groups: [B, H, W, 1] (or [B, H, W]) integers in [0, num_groups): e.g. semantic classes or
      ground-truth depth bins.
    num_groups: the number of groups.
    min_depth, max_depth, median_scaling: as `DepthMetrics`.

  Returns:
    'abs_rel' [num_groups]: the pixel-pooled Abs Rel of each group's valid pixels (nan where a
    group has none); 'share' [num_groups]: each group's fraction of all valid pixels;
    'pixels' [num_groups].
  """
  gt = np.asarray(gt_depth, np.float64)
  pred = np.asarray(pred_depth, np.float64)
  labels = np.asarray(groups)
  if labels.ndim == gt.ndim - 1:
    labels = labels[..., np.newaxis]
  if gt.shape != pred.shape or labels.shape != gt.shape:
    raise ValueError(
        f'abs_rel_by_group: gt_depth {gt.shape}, pred_depth {pred.shape} and groups '
        f'{np.asarray(groups).shape} must have one shape'
    )
  if labels.size and (labels.min() < 0 or labels.max() >= num_groups):
    raise ValueError(
        f'abs_rel_by_group: groups must lie in [0, {num_groups}), got '
        f'[{labels.min()}, {labels.max()}]'
    )
  sums = np.zeros(num_groups)
  pixels = np.zeros(num_groups)
  for g, p, l in zip(gt, pred, labels):
    valid = (g > min_depth) & (g < max_depth)
    if not valid.any():
      continue
    g, p, l = g[valid], p[valid], l[valid].astype(np.int64)
    if median_scaling:
      p = p * (np.median(g) / max(np.median(p), 1e-9))
    p = np.clip(p, min_depth, max_depth)
    sums += np.bincount(l, weights=np.abs(g - p) / g, minlength=num_groups)
    pixels += np.bincount(l, minlength=num_groups)
  with np.errstate(invalid='ignore', divide='ignore'):
    per_group = np.where(pixels > 0, sums / np.maximum(pixels, 1), np.nan)
  return {'abs_rel': per_group, 'share': pixels / max(pixels.sum(), 1), 'pixels': pixels}


def median_scale_vs_speed(
    gt_depth, pred_depth, speed, min_depth: float = 1e-3, max_depth: float = 80.0
) -> Dict[str, float]:
  """Whether a monocular depth's per-image scale follows the camera's speed.

  Self-supervised depth and translation are known up to one scale per frame pair: a depth
  network that cannot see the speed, trained with a motion network that does not learn it,
  can only match the photometric loss by scaling each image's depth by 1 / speed, which a
  single image does not tell (unless the network memorises its training images). Per image,
  the median-scaling factor s = median(gt) / median(pred) over valid pixels (what
  `DepthMetrics(median_scaling=True)` multiplies the prediction by) is regressed on the true
  speed in logs: log s = a + slope * log speed.

  Args:
    gt_depth, pred_depth: [B, H, W, 1] metres.
    speed: [B] the true translation length of each image's frame pair, metres.
    min_depth, max_depth: valid ground-truth range, as `DepthMetrics`.

  Returns:
    'slope': 0 when the depth's scale does not depend on the speed (a consistent scale, the
    motion carrying the speed), 1 when each depth is scaled by 1 / speed (the speed absorbed
    by the depth); 'corr': the correlation of log s with log speed; 'std_log_scale': the spread
    of log s over images (0: one scale for all); 'images': the images used (those with valid
    pixels and a positive speed; a stopped camera's pair tells no scale).
  """
  gt = np.asarray(gt_depth, np.float64)
  pred = np.asarray(pred_depth, np.float64)
  speed = np.asarray(speed, np.float64).reshape(-1)
  if gt.shape != pred.shape or speed.shape[0] != gt.shape[0]:
    raise ValueError(
        f'median_scale_vs_speed: gt_depth {gt.shape} and pred_depth {pred.shape} must have one '
        f'shape, and speed {speed.shape} one value per image'
    )
  log_scale, log_speed = [], []
  for g, p, v in zip(gt, pred, speed):
    valid = (g > min_depth) & (g < max_depth)
    if not valid.any() or v <= 0:
      continue
    log_scale.append(np.log(np.median(g[valid]) / max(np.median(p[valid]), 1e-9)))
    log_speed.append(np.log(v))
  log_scale, log_speed = np.array(log_scale), np.array(log_speed)
  if len(log_scale) < 2 or np.std(log_speed) == 0:
    raise ValueError(
        f'median_scale_vs_speed: needs >= 2 images with valid depth and different speeds, got '
        f'{len(log_scale)} image(s)'
    )
  centred_speed = log_speed - log_speed.mean()
  centred_scale = log_scale - log_scale.mean()
  slope = float(np.sum(centred_speed * centred_scale) / np.sum(centred_speed**2))
  spread = float(np.std(log_scale))
  corr = float(np.corrcoef(log_speed, log_scale)[0, 1]) if spread > 1e-12 else 0.0
  return {'slope': slope, 'corr': corr, 'std_log_scale': spread, 'images': len(log_scale)}
