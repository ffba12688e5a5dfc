"""Semantic segmentation metrics: mean IoU and pixel accuracy from a confusion matrix.

- `SegmentationMetrics`: numpy confusion matrix over class ids (mIoU, pixel accuracy).
- `ClassSetIoU` / `iou_results`: Model Garden's confusion-matrix metric over named classes,
  with per-class IoUs and the mIoU over the movable classes, its key naming them
  ('miou_movable_person_rider_car_truck_bus_train_motorcycle_bicycle' for the project set).
- `evaluate_cityscapes_segmentation`: a segmentation SavedModel scored on Cityscapes gtFine
  (Table 1's "person and vehicles" mIoU), every number with the classes it averages.
"""

from typing import Callable, Dict, Optional, Sequence

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


def evaluate_frames(
    predict: Callable[[tf.Tensor], tf.Tensor],
    clips: tf.data.Dataset,
    frame: int = 1,
    batch_size: int = 8,
    max_examples: Optional[int] = None,
    class_names: Sequence[str] = class_set.CLASS_NAMES,
    movable_class_names: Sequence[str] = class_set.MOVABLE_CLASS_NAMES,
) -> Dict[str, object]:
  """Scores a segmenter on the labelled `frame` of each clip that has labels there.

  Args:
    predict: uint8 images [N, H, W, 3] -> logits [N, h, w, C] over `class_names` (resized
      bilinearly to the labels' size if h x w differs, as Model Garden's metric does).
    clips: clips with `image` [T, H, W, 3] uint8, `semantics` [T, H, W] (project classes,
      255 ignore) and optionally `has_labels` [T] bool (clips without labels at `frame` are
      skipped).
    frame: the clip frame with labels (Cityscapes: 1, the snippet's 20th frame).
    batch_size, max_examples: batching, and the number of labelled frames scored (None: all).
    class_names, movable_class_names: see `ClassSetIoU`.

  Returns:
    {'frames': labelled frames scored, 'metrics': `iou_results` (its movable key names the
    classes), 'movable_classes_present': the movable classes with pixels, i.e. those the
    movable mIoU actually averages}.
  """
  if 'has_labels' in clips.element_spec:
    clips = clips.filter(lambda c: c['has_labels'][frame])
  if max_examples is not None:
    clips = clips.take(max_examples)
  metric = ClassSetIoU(class_names, movable_class_names)
  frames = 0
  for batch in clips.batch(batch_size):
    metric.update(batch['semantics'][:, frame], predict(batch['image'][:, frame]))
    frames += int(batch['image'].shape[0])
  confusion = metric.confusion
  present = confusion.sum(0) + confusion.sum(1) - np.diag(confusion) > 0
  return {
      'frames': frames,
      'metrics': iou_results(confusion, class_names, movable_class_names),
      'movable_classes_present': [
          n for i, n in enumerate(class_names) if n in movable_class_names and present[i]
      ],
  }


def evaluate_cityscapes_segmentation(
    saved_model: str,
    data_dir: str,
    split: str = 'validation',
    batch_size: int = 8,
    max_examples: Optional[int] = None,
    frame_step: int = 1,
    centre_stride: int = 2,
) -> Dict[str, object]:
  """Table 1's segmentation number: a SavedModel's mIoU on Cityscapes gtFine (`evaluate_frames`).

  The model's `serving_default` takes `image` uint8 [N, H, W, 3] (H x W a built Cityscapes
  size) and returns `logits` [N, H, W, 19] over the project class set (a segmentation
  snapshot, `serving/export.py`). Scored on the gtFine frame of every labelled clip of
  `split` (the test split has no labels). The result adds 'protocol'.

  Raises:
    FileNotFoundError: no SavedModel or the dataset is not built.
    ValueError: the signature does not fit.
  """
  from taskology_tf.datasets import clips as clip_sources  # pylint: disable=g-import-not-at-top
  from taskology_tf.metrics import saved_model_eval  # pylint: disable=g-import-not-at-top

  path = saved_model_eval.resolve_saved_model(saved_model)
  serve = tf.saved_model.load(path).signatures.get('serving_default')
  if serve is None:
    raise ValueError(f'{path}: no serving_default signature')
  inputs = serve.structured_input_signature[1]
  if (
      'image' not in inputs
      or inputs['image'].dtype != tf.uint8
      or None in inputs['image'].shape[1:3]
  ):
    raise ValueError(f'{path}: serving_default must take image uint8 [N, H, W, 3]; has {inputs}')
  height, width = int(inputs['image'].shape[1]), int(inputs['image'].shape[2])

  def predict(images):
    outputs = serve(image=images)
    if 'logits' not in outputs:
      raise ValueError(f'{path}: serving_default returns {sorted(outputs)}, not logits')
    return outputs['logits']

  data = clip_sources.cityscapes_clips(
      split=split,
      data_dir=data_dir,
      height=height,
      width=width,
      frame_step=frame_step,
      centre_stride=centre_stride,
  )
  result = evaluate_frames(predict, data, 1, batch_size, max_examples)
  result['protocol'] = f'cityscapes_gtFine_{split}_{height}x{width}'
  return result


def format_results(result: Dict[str, object]) -> str:
  """Lines for a report: every mIoU with the classes it averages beside it."""
  metrics = result['metrics']
  lines = [f"{result.get('protocol', 'segmentation')}: {result['frames']} labelled frames"]
  for key, value in metrics.items():
    if key.startswith('miou_movable'):
      lines.append(
          f"  mIoU over the movable classes ({', '.join(class_set.MOVABLE_CLASS_NAMES)}; with "
          f"pixels: {', '.join(result['movable_classes_present']) or 'none'}): {value:.4f}"
      )
  lines.append(f"  mIoU over the classes with pixels: {metrics['miou']:.4f}")
  lines.append(f"  pixel accuracy: {metrics['pixel_accuracy']:.4f}")
  return '\n'.join(lines)
