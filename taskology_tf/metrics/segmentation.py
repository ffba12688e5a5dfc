"""Semantic segmentation metrics: mean IoU and pixel accuracy from a confusion matrix."""

from typing import Dict

import numpy as np


class SegmentationMetrics:
  """Streams label maps into a confusion matrix.

  Args:
    num_classes: number of classes; labels outside [0, num_classes) (e.g. 255) are ignored.
  """

  def __init__(self, num_classes: int):
    self.num_classes = num_classes
    self.reset()

  def reset(self) -> None:
    self._confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

  def update(self, gt_labels, pred_labels) -> None:
    """Adds a batch. gt_labels, pred_labels: [B, H, W] integer class ids."""
    gt = np.asarray(gt_labels).astype(np.int64).ravel()
    pred = np.asarray(pred_labels).astype(np.int64).ravel()
    valid = (gt >= 0) & (gt < self.num_classes)
    idx = gt[valid] * self.num_classes + pred[valid]
    self._confusion += np.bincount(idx, minlength=self.num_classes**2).reshape(
        self.num_classes, self.num_classes
    )

  def result(self) -> Dict[str, float]:
    """Returns miou (over classes present in gt or pred) and pixel_accuracy."""
    c = self._confusion
    tp = np.diag(c).astype(np.float64)
    union = c.sum(0) + c.sum(1) - tp
    present = union > 0
    miou = float(np.mean(tp[present] / union[present])) if present.any() else 0.0
    return {'miou': miou, 'pixel_accuracy': float(tp.sum() / max(c.sum(), 1))}
