"""Monocular depth: a U-Net with a softplus head (depth is positive, in metres)."""

import tensorflow as tf

from taskology_tf.metrics.depth import abs_rel
from taskology_tf.metrics.depth import DepthMetrics
from taskology_tf.networks.unet import build_unet
from taskology_tf.tasks.base import FrameTask
from taskology_tf.tasks.base import to_float_image


class DepthTask(FrameTask):
  """Predicts `depth` [N, H, W, 1] float32, metres, camera z.

  Args:
    height, width: frame size in pixels.
    base_filters, levels: U-Net size.
    max_depth: supervised pixels need 0 < gt < max_depth (excludes sky, and ScanNet's 0 =
      missing depth, in the loss and in the metrics); also the evaluation cap.
    min_depth: floor added to the softplus so depth never reaches 0 (warps divide by it).
    loss: 'l1' (|d - d*| / d*, relative L1) or 'log_l1' (|log d - log d*|).
    median_scaling: evaluate with per-image median scaling (for self-supervised depth).
    name: task name.
  """

  def __init__(
      self,
      height: int,
      width: int,
      base_filters: int = 16,
      levels: int = 4,
      max_depth: float = 80.0,
      min_depth: float = 0.1,
      loss: str = 'log_l1',
      median_scaling: bool = False,
      name: str = 'depth',
  ):
    super().__init__(height, width, name)
    if loss not in ('l1', 'log_l1'):
      raise ValueError(f'DepthTask({name}): loss must be "l1" or "log_l1", got {loss!r}')
    self.base_filters = base_filters
    self.levels = levels
    self.max_depth = max_depth
    self.min_depth = min_depth
    self.loss = loss
    self.median_scaling = median_scaling

  @property
  def output_spec(self):
    return {'depth': tf.TensorSpec([self.height, self.width, 1], tf.float32)}

  def build_network(self):
    return build_unet(
        self.height, self.width, 3, 1, self.base_filters, self.levels, name=f'{self.name}_unet'
    )

  def call(self, model, inputs, training=False):
    image = inputs['image']
    self._check_image(image)
    raw = model(to_float_image(image), training=training)
    # Softplus keeps depth positive with non-vanishing gradients; the +log(10) shift makes an
    # untrained net (raw ~ 0) start near 10 m, a sensible mid-range for street scenes.
    return {'depth': tf.nn.softplus(raw + 2.3) + self.min_depth}

  def supervised_loss(self, batch, outputs):
    gt = batch['depth']
    pred = outputs['depth']
    mask = tf.cast((gt > 0) & (gt < self.max_depth), tf.float32)
    count = tf.maximum(tf.reduce_sum(mask), 1.0)
    if self.loss == 'log_l1':
      err = tf.abs(tf.math.log(pred) - tf.math.log(tf.maximum(gt, 1e-3)))
    else:
      err = tf.abs(pred - gt) / tf.maximum(gt, 1e-3)
    loss = tf.reduce_sum(err * mask) / count
    return loss, {'abs_rel': abs_rel(gt, pred, mask)}

  def new_metrics(self):
    return _DepthEvaluator(self.max_depth, self.median_scaling)

  def image_summaries(self, outputs):
    inv = 1.0 / outputs['depth']
    return {'inverse_depth': inv / tf.reduce_max(inv, axis=[1, 2, 3], keepdims=True)}


class _DepthEvaluator:
  """Adapts DepthMetrics to the (batch, outputs) evaluator protocol."""

  def __init__(self, max_depth: float, median_scaling: bool):
    self.metrics = DepthMetrics(max_depth=max_depth, median_scaling=median_scaling)

  def update(self, batch, outputs):
    self.metrics.update(batch['depth'], outputs['depth'])

  def result(self):
    return self.metrics.result()
