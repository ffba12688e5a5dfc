"""Semantic segmentation: a U-Net producing per-pixel class logits."""

import tensorflow as tf

from taskology_tf.metrics.segmentation import SegmentationMetrics
from taskology_tf.networks.unet import build_unet
from taskology_tf.tasks.base import FrameTask
from taskology_tf.tasks.base import to_float_image


class SegmentationTask(FrameTask):
  """Predicts `logits` [N, H, W, num_classes] float32.

  Args:
    height, width: frame size in pixels.
    num_classes: number of classes; labels >= num_classes (e.g. 255) are ignored.
    base_filters, levels: U-Net size.
    name: task name.
  """

  def __init__(
      self,
      height: int,
      width: int,
      num_classes: int,
      base_filters: int = 16,
      levels: int = 4,
      name: str = 'segmentation',
  ):
    super().__init__(height, width, name)
    self.num_classes = num_classes
    self.base_filters = base_filters
    self.levels = levels

  @property
  def output_spec(self):
    return {'logits': tf.TensorSpec([self.height, self.width, self.num_classes], tf.float32)}

  def build_network(self):
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
    return {'logits': model(to_float_image(image), training=training)}

  def supervised_loss(self, batch, outputs):
    labels = tf.cast(batch['semantics'], tf.int32)
    logits = outputs['logits']
    valid = labels < self.num_classes
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    mask = tf.cast(valid, tf.float32)
    loss = tf.reduce_sum(xent * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    return loss, {
        'pixel_accuracy': tf.reduce_sum(correct * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
    }

  def new_metrics(self):
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
