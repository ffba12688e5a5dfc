"""Surface-normal metrics: mean and median angular error, % of pixels within 11.25/22.5/30 deg.

The median comes from a 0.01-degree histogram (error <= 0.005 deg), so memory stays constant on
full-size evaluation sets. Pixels whose ground-truth normal is the all-zero vector (the indoor
builders' marker for missing depth, e.g. ScanNet's holes) are never scored.
"""

from typing import Dict, Optional

import numpy as np

_BIN_DEG = 0.01
_NUM_BINS = int(180.0 / _BIN_DEG)
# |gt|^2 at or below this: an invalid (all-zero) ground-truth normal (tasks/normals.py agrees).
_INVALID_NORMAL_SQ = 1e-6


class NormalsMetrics:
  """Streams unit-normal predictions against ground truth."""

  def __init__(self):
    self.reset()

  def reset(self) -> None:
    self._hist = np.zeros(_NUM_BINS, np.int64)
    self._sum = 0.0
    self._count = 0

  def update(self, gt_normals, pred_normals, mask: Optional[np.ndarray] = None) -> None:
    """Adds a batch.

    Args:
      gt_normals: [B, H, W, 3] float32 unit vectors, camera frame.
      pred_normals: [B, H, W, 3] float32, camera frame (renormalised here).
      mask: optional [B, H, W] or [B, H, W, 1] bool, pixels to score (e.g. not sky, depth
        > 0). Pixels with an all-zero gt normal are dropped whatever the mask says.
    """
    gt = np.asarray(gt_normals, np.float64)
    pred = np.asarray(pred_normals, np.float64)
    if gt.shape != pred.shape or gt.shape[-1] != 3:
      raise ValueError(f'NormalsMetrics: gt {gt.shape} and pred {pred.shape} must be equal [...,3]')
    valid = np.sum(gt * gt, axis=-1) > _INVALID_NORMAL_SQ
    if mask is not None:
      mask = np.asarray(mask, bool)
      if mask.size != valid.size:
        raise ValueError(f'NormalsMetrics: mask shape {mask.shape} does not fit gt {gt.shape}')
      valid &= mask.reshape(valid.shape)
    pred = pred / np.maximum(np.linalg.norm(pred, axis=-1, keepdims=True), 1e-12)
    gt = gt / np.maximum(np.linalg.norm(gt, axis=-1, keepdims=True), 1e-12)
    cos = np.clip(np.sum(gt * pred, axis=-1), -1.0, 1.0)
    angle = np.degrees(np.arccos(cos))[valid]
    angle = angle.ravel()
    self._sum += angle.sum()
    self._count += angle.size
    bins = np.minimum((angle / _BIN_DEG).astype(np.int64), _NUM_BINS - 1)
    self._hist += np.bincount(bins, minlength=_NUM_BINS)

  def result(self) -> Dict[str, float]:
    """Returns mean, median (degrees) and within_11_25, within_22_5, within_30 (percent)."""
    n = max(self._count, 1)
    cdf = np.cumsum(self._hist)
    median_bin = int(np.searchsorted(cdf, (self._count + 1) / 2.0))
    out = {
        'mean_angle': self._sum / n,
        'median_angle': (median_bin + 0.5) * _BIN_DEG,
        'num_pixels': float(self._count),
    }
    for threshold, name in ((11.25, 'within_11_25'), (22.5, 'within_22_5'), (30.0, 'within_30')):
      out[name] = 100.0 * cdf[int(round(threshold / _BIN_DEG)) - 1] / n
    return out
