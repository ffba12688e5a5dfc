"""Surface normals: a U-Net whose 3-channel output is normalised to unit length."""

import tensorflow as tf

from taskology_tf.metrics.normals import NormalsMetrics
from taskology_tf.networks.unet import build_unet
from taskology_tf.tasks.base import FrameTask
from taskology_tf.tasks.base import to_float_image

# Ground-truth normals with |n|^2 at or below this are invalid: the indoor builders (ScanNet,
# SceneNet RGB-D) write the all-zero vector where depth is missing. Unit normals have |n|^2 = 1.
INVALID_NORMAL_SQ = 1e-6


class NormalsTask(FrameTask):
  """Predicts `normals` [N, H, W, 3] float32 unit vectors, camera frame (x right, y down, z fwd).

  Args:
    height, width: frame size in pixels.
    base_filters, levels: U-Net size.
    max_depth: pixels whose gt depth is >= max_depth (sky) are neither supervised nor scored.
      Neither are pixels with gt depth <= 0 (ScanNet's 0 = missing) nor those whose gt normal
      is the all-zero vector (the indoor builders' invalid marker); see `valid_mask`.
    name: task name.
  """

  def __init__(
      self,
      height: int,
      width: int,
      base_filters: int = 16,
      levels: int = 4,
      max_depth: float = 80.0,
      name: str = 'normals',
  ):
    super().__init__(height, width, name)
    self.base_filters = base_filters
    self.levels = levels
    self.max_depth = max_depth

  @property
  def output_spec(self):
    return {'normals': tf.TensorSpec([self.height, self.width, 3], tf.float32)}

  def build_network(self):
    return build_unet(
        self.height, self.width, 3, 3, self.base_filters, self.levels, name=f'{self.name}_unet'
    )

  def call(self, model, inputs, training=False):
    image = inputs['image']
    self._check_image(image)
    raw = model(to_float_image(image), training=training)
    # A bias of -1 on z makes an untrained net predict "facing the camera"; the epsilon keeps
    # the normalisation's gradient finite where the raw vector is ~0.
    raw = raw + tf.constant([0.0, 0.0, -1.0])
    norm = tf.sqrt(tf.reduce_sum(tf.square(raw), axis=-1, keepdims=True) + 1e-8)
    return {'normals': raw / norm}

  def valid_mask(self, batch):
    """Pixels with ground truth: [..., 1] float32 1/0, the leading shape of batch['normals'].

    Valid where the gt normal is not all-zero (|n|^2 > INVALID_NORMAL_SQ) and, when the batch
    carries `depth`, 0 < depth < max_depth. The synthetic world has neither holes nor zero
    normals, so there this is the former `depth < max_depth`.
    """
    gt = tf.convert_to_tensor(batch['normals'], tf.float32)
    valid = tf.reduce_sum(tf.square(gt), axis=-1, keepdims=True) > INVALID_NORMAL_SQ
    if 'depth' in batch:
      depth = tf.convert_to_tensor(batch['depth'], tf.float32)
      valid = valid & (depth > 0.0) & (depth < self.max_depth)
    return tf.cast(valid, tf.float32)

  def supervised_loss(self, batch, outputs):
    gt = batch['normals']
    pred = outputs['normals']
    mask = self.valid_mask(batch)
    cos = tf.reduce_sum(gt * pred, axis=-1, keepdims=True)
    count = tf.maximum(tf.reduce_sum(mask), 1.0)
    loss = tf.reduce_sum((1.0 - cos) * mask) / count
    angle = tf.acos(tf.clip_by_value(cos, -1.0, 1.0)) * (180.0 / 3.141592653589793)
    return loss, {'mean_angle': tf.reduce_sum(angle * mask) / count}

  def new_metrics(self):
    return _NormalsEvaluator(self)

  def image_summaries(self, outputs):
    return {'normals': outputs['normals'] * 0.5 + 0.5}


class _NormalsEvaluator:
  """Adapts NormalsMetrics to the (batch, outputs) evaluator protocol, with the task's mask."""

  def __init__(self, task: NormalsTask):
    self.task = task
    self.metrics = NormalsMetrics()

  def update(self, batch, outputs):
    mask = self.task.valid_mask(batch).numpy()[..., 0] > 0.5
    self.metrics.update(batch['normals'], outputs['normals'], mask)

  def result(self):
    return self.metrics.result()
