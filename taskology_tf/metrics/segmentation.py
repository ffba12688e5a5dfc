"""Semantic segmentation metrics: mean IoU and pixel accuracy from a confusion matrix.

- `SegmentationMetrics`: numpy confusion matrix over class ids (mIoU, pixel accuracy).
- `ClassSetIoU` / `iou_results`: Model Garden's confusion-matrix metric over named classes,
  with per-class IoUs and the mIoU over the movable classes, its key naming them
  ('miou_movable_person_rider_car_truck_bus_train_motorcycle_bicycle' for the project set).
- `evaluate_cityscapes_segmentation`: a segmentation SavedModel scored on Cityscapes gtFine
  (Table 1's "person and vehicles" mIoU), every number with the classes it averages.
"""

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from taskology_tf.datasets import class_set


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


def iou_results(
    confusion: np.ndarray,
    class_names: Sequence[str],
    movable_class_names: Sequence[str] = class_set.MOVABLE_CLASS_NAMES,
) -> Dict[str, float]:
  """mIoU, pixel accuracy, per-class IoU and the movable-class mIoU of a confusion matrix.

  A class counts towards a mean only if it occurs in the ground truth or the prediction
  (union > 0), as the Cityscapes evaluation script leaves out classes it has no pixels of.

  Args:
    confusion: [C, C] counts, rows ground truth, columns prediction.
    class_names: the C class names (keys 'iou/<name>', spaces as '-').
    movable_class_names: the movable classes; those among `class_names` are averaged under
      `class_set.movable_classes_key()`-style keys naming them (omitted if none is present).

  Returns:
    {'miou', 'pixel_accuracy', 'iou/<name>' per class with pixels, '<movable key>'}.
  """
  c = np.asarray(confusion, np.float64)
  if c.shape != (len(class_names), len(class_names)):
    raise ValueError(f'confusion matrix {c.shape} does not fit {len(class_names)} class names')
  tp = np.diag(c)
  union = c.sum(0) + c.sum(1) - tp
  present = union > 0
  iou = np.where(present, tp / np.maximum(union, 1), 0.0)
  out = {
      'miou': float(iou[present].mean()) if present.any() else 0.0,
      'pixel_accuracy': float(tp.sum() / max(c.sum(), 1)),
  }
  for i, name in enumerate(class_names):
    if present[i]:
      out['iou/' + name.replace(' ', '-')] = float(iou[i])
  movable = [i for i, n in enumerate(class_names) if n in movable_class_names]
  if movable:
    key = '_'.join(['miou_movable'] + [class_names[i].replace(' ', '-') for i in movable])
    kept = [i for i in movable if present[i]]
    out[key] = float(iou[kept].mean()) if kept else 0.0
  return out


class ClassSetIoU:
  """Streaming per-class IoU over named classes, on Model Garden's confusion-matrix metric.

  `official.vision.evaluation.segmentation_metrics.PerClassIoU` accumulates the confusion
  matrix (arg-max of the logits, resized bilinearly to the labels' size, ignored pixels
  weighted 0); `iou_results` turns it into the named numbers.

  Args:
    class_names: the classes of the logits' last axis (default: the project class set).
    movable_class_names: the classes of the movable mIoU.
    ignore_label: label value left out (any label outside [0, C) is left out too).
  """

  def __init__(
      self,
      class_names: Sequence[str] = class_set.CLASS_NAMES,
      movable_class_names: Sequence[str] = class_set.MOVABLE_CLASS_NAMES,
  ):
    from official.vision.evaluation import segmentation_metrics  # pylint: disable=g-import-not-at-top

    self.class_names = tuple(class_names)
    self.movable_class_names = tuple(movable_class_names)
    self._metric = segmentation_metrics.PerClassIoU(num_classes=len(self.class_names))

  def reset(self) -> None:
    self._metric.reset_state()

  def update(self, gt_labels, logits) -> None:
    """Adds a batch. gt_labels: [B, H, W] integer ids; logits: [B, h, w, C] float."""
    labels = tf.cast(tf.convert_to_tensor(gt_labels), tf.int32)[..., None]
    logits = tf.convert_to_tensor(logits)
    if logits.shape[-1] != len(self.class_names):
      raise ValueError(
          f'logits have {logits.shape[-1]} classes, the metric {len(self.class_names)}'
      )
    valid = (labels >= 0) & (labels < len(self.class_names))
    batch = tf.shape(labels)[0]
    self._metric.update_state(
        {'masks': labels, 'valid_masks': valid, 'image_info': tf.zeros([batch, 4, 2])}, logits
    )

  @property
  def confusion(self) -> np.ndarray:
    """[C, C] int64 counts (rows ground truth, columns prediction)."""
    return np.asarray(self._metric.total_cm.numpy()).round().astype(np.int64)

  def result(self) -> Dict[str, float]:
    return iou_results(self.confusion, self.class_names, self.movable_class_names)
