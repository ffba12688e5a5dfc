"""Semantic segmentation: per-pixel class logits from a U-Net or a NAS-FPN segmenter.

Networks (`network`):
- 'unet': the project's GroupNorm U-Net (`networks/unet.py`); its loss is the masked mean
  cross-entropy written here (unchanged, so earlier experiments reproduce).
- 'nasfpn': Model Garden's ResNet + NAS-FPN + segmentation head (`networks/nasfpn_segmenter.py`,
  Ghiasi et al. 2019), supervised with Model Garden's `SegmentationLoss` (label smoothing 0,
  no class weights, ignore label 255: its segmentation task's defaults).

With `project_classes=True` the logits are the project class set (`datasets/class_set.py`) and
the evaluator reports per-class IoUs by name and the mIoU over the movable classes under a key
naming them; otherwise it reports mIoU and pixel accuracy over class ids.
"""

import os
from typing import Optional

from absl import logging
import tensorflow as tf

from taskology_tf.datasets import class_set
from taskology_tf.metrics.segmentation import ClassSetIoU
from taskology_tf.metrics.segmentation import SegmentationMetrics
from taskology_tf.networks.unet import build_unet
from taskology_tf.tasks.base import FrameTask
from taskology_tf.tasks.base import to_float_image

NETWORKS = ('unet', 'nasfpn')


class SegmentationTask(FrameTask):
  """Predicts `logits` [N, H, W, num_classes] float32 at the input resolution.

  Args:
    height, width: frame size in pixels.
    num_classes: number of classes; labels >= num_classes (e.g. 255) are ignored. None: the
      project class set's (requires `project_classes`).
    base_filters, levels: U-Net size (network 'unet').
    name: task name.
    network: 'unet' or 'nasfpn'.
    project_classes: the classes are `class_set.CLASS_NAMES` (named metrics, movable mIoU).
    backbone_depth, backbone_width_multiplier: NAS-FPN's ResNet (50 and 1.0 at full scale).
    min_level, max_level, num_filters, num_repeats: NAS-FPN (3, 7, 256, 5 at full scale).
    head_level, head_num_convs, head_num_filters: the segmentation head (level 3, 2 convs of
      256); its logits are resized bilinearly to full resolution.
  """

  def __init__(
      self,
      height: int,
      width: int,
      num_classes: Optional[int] = None,
      base_filters: int = 16,
      levels: int = 4,
      name: str = 'segmentation',
      network: str = 'unet',
      project_classes: bool = False,
      backbone_depth: int = 50,
      backbone_width_multiplier: float = 1.0,
      min_level: int = 3,
      max_level: int = 7,
      num_filters: int = 256,
      num_repeats: int = 5,
      head_level: int = 3,
      head_num_convs: int = 2,
      head_num_filters: int = 256,
  ):
    super().__init__(height, width, name)
    if network not in NETWORKS:
      raise ValueError(
          f'SegmentationTask.network={network!r} (task {name!r}): expected one of {NETWORKS}'
      )
    if num_classes is None:
      if not project_classes:
        raise ValueError(
            f'SegmentationTask (task {name!r}): give num_classes, or project_classes=True for '
            f'the project class set ({class_set.NUM_CLASSES} classes)'
        )
      num_classes = class_set.NUM_CLASSES
    if project_classes and num_classes != class_set.NUM_CLASSES:
      raise ValueError(
          f'SegmentationTask.num_classes={num_classes} (task {name!r}) with project_classes: '
          f'the project class set has {class_set.NUM_CLASSES} classes'
      )
    self.num_classes = int(num_classes)
    self.base_filters = base_filters
    self.levels = levels
    self.network = network
    self.project_classes = project_classes
    self.nasfpn_options = dict(
        backbone_depth=backbone_depth,
        backbone_width_multiplier=backbone_width_multiplier,
        min_level=min_level,
        max_level=max_level,
        num_filters=num_filters,
        num_repeats=num_repeats,
        head_level=head_level,
        head_num_convs=head_num_convs,
        head_num_filters=head_num_filters,
    )
    self._model_garden_loss = None

  @property
  def output_spec(self):
    return {'logits': tf.TensorSpec([self.height, self.width, self.num_classes], tf.float32)}

  def build_network(self):
    if self.network == 'nasfpn':
      from taskology_tf.networks import nasfpn_segmenter  # pylint: disable=g-import-not-at-top

      return nasfpn_segmenter.build_nasfpn_segmenter(
          self.height,
          self.width,
          self.num_classes,
          name=f'{self.name}_nasfpn',
          **self.nasfpn_options,
      )
    return build_unet(
        self.height,
        self.width,
        3,
        self.num_classes,
        self.base_filters,
        self.levels,
        name=f'{self.name}_unet',
    )

  def call(self, model, inputs, training=False):
    image = inputs['image']
    self._check_image(image)
    if self.network == 'nasfpn' and training and image.shape[0] == 1:
      _warn_batch_of_one(self.name)
    return {'logits': model(to_float_image(image), training=training)}

  def supervised_loss(self, batch, outputs):
    labels = tf.cast(batch['semantics'], tf.int32)
    logits = outputs['logits']
    valid = (labels >= 0) & (labels < self.num_classes)
    mask = tf.cast(valid, tf.float32)
    if self.network == 'nasfpn':
      loss = self._model_garden_segmentation_loss(logits, labels, valid)
    else:
      safe = tf.where(valid, labels, tf.zeros_like(labels))
      xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
      loss = tf.reduce_sum(xent * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    return loss, {
        'pixel_accuracy': tf.reduce_sum(correct * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
    }

  def _model_garden_segmentation_loss(self, logits, labels, valid):
    """Model Garden's SegmentationLoss: sum of xent over valid pixels / (count + 1e-5)."""
    if self._model_garden_loss is None:
      from official.vision.losses import segmentation_losses  # pylint: disable=g-import-not-at-top

      self._model_garden_loss = segmentation_losses.SegmentationLoss(
          label_smoothing=0.0,
          class_weights=[],
          ignore_label=class_set.IGNORE_LABEL,
          use_groundtruth_dimension=True,
      )
    # Any label outside [0, C) is ignored, as the U-Net loss ignores it.
    labels = tf.where(valid, labels, class_set.IGNORE_LABEL)
    return self._model_garden_loss(logits, labels[..., None])

  def new_metrics(self):
    if self.project_classes:
      return _ClassSetEvaluator()
    return _SegmentationEvaluator(self.num_classes)

  def image_summaries(self, outputs):
    labels = tf.argmax(outputs['logits'], -1)
    return {'labels': tf.cast(labels, tf.float32)[..., None] / max(self.num_classes - 1, 1)}


class _SegmentationEvaluator:

  def __init__(self, num_classes: int):
    self.metrics = SegmentationMetrics(num_classes)

  def update(self, batch, outputs):
    self.metrics.update(batch['semantics'], tf.argmax(outputs['logits'], -1))

  def result(self):
    return self.metrics.result()


class _ClassSetEvaluator:
  """Named per-class IoUs and the movable-class mIoU (project class set)."""

  def __init__(self):
    self.metrics = ClassSetIoU(class_set.CLASS_NAMES, class_set.MOVABLE_CLASS_NAMES)

  def update(self, batch, outputs):
    self.metrics.update(batch['semantics'], outputs['logits'])

  def result(self):
    return self.metrics.result()


def _warn_batch_of_one(task_name: str) -> None:
  """Warns of a TF CPU crash: the gradient of a batch of one through ResNet's shortcuts.

  With oneDNN (TF's CPU default), the gradient of a 1x1 stride-2 'SAME' convolution (the
  ResNet projection shortcut) on a batch of one image of even size corrupts the heap
  (`malloc(): corrupted top size`, segfault; TF 2.20; minimal repro in WORKSPACE.md). Batches
  of 2 or more compute correct gradients; TF_ENABLE_ONEDNN_OPTS=0 avoids it.
  """
  if os.environ.get('TF_ENABLE_ONEDNN_OPTS', '1') == '0' or tf.config.list_logical_devices('GPU'):
    return
  logging.log_first_n(
      logging.WARNING,
      'task %r: a NAS-FPN training pass on a batch of one image; its gradient crashes TF on CPU '
      'with oneDNN (1x1 stride-2 convolution backward). Use a batch of 2 or more '
      '(<task>/TaskConfig.batch_size) or TF_ENABLE_ONEDNN_OPTS=0.',
      1,
      task_name,
  )
