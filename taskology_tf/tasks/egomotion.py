"""Ego-motion: the rigid camera motion between consecutive frames of a clip."""

import tensorflow as tf

from taskology_tf.networks.pose import build_pose_net
from taskology_tf.tasks.base import Task
from taskology_tf.tasks.base import to_float_image


class EgomotionTask(Task):
  """Predicts, per consecutive frame pair (t, t+1), cam_{t+1}_from_cam_t.

  Outputs per pair: `rotation` [N, 3] axis-angle (radians) and `translation` [N, 3] (metres,
  camera frame of t+1). Unflattened: [B, T-1, 3].

  Args:
    height, width: frame size in pixels.
    base_filters, levels: pose-net size.
    name: task name.
  """

  def __init__(
      self,
      height: int,
      width: int,
      base_filters: int = 16,
      levels: int = 5,
      name: str = 'egomotion',
  ):
    self.height = height
    self.width = width
    self.base_filters = base_filters
    self.levels = levels
    self.name = name

  @property
  def output_spec(self):
    return {
        'rotation': tf.TensorSpec([3], tf.float32),
        'translation': tf.TensorSpec([3], tf.float32),
    }

  @property
  def input_spec(self):
    frame = tf.TensorSpec([self.height, self.width, 3], tf.uint8)
    return {'image_a': frame, 'image_b': frame}

  def build_network(self):
    return build_pose_net(
        self.height, self.width, self.base_filters, self.levels, name=f'{self.name}_posenet'
    )

  def call(self, model, inputs, training=False):
    for key in ('image_a', 'image_b'):
      if key not in inputs:
        raise KeyError(f'task {self.name!r}: missing input tensor {key!r}; got {sorted(inputs)}')
    out = model(
        [to_float_image(inputs['image_a']), to_float_image(inputs['image_b'])], training=training
    )
    return {'rotation': out['rotation'], 'translation': out['translation']}

  def serving_inputs(self, mediator):
    image = mediator['image']
    shape = tf.shape(image)
    flat = tf.concat([[-1], shape[2:]], 0)
    return {'image_a': tf.reshape(image[:, :-1], flat), 'image_b': tf.reshape(image[:, 1:], flat)}

  def unflatten(self, outputs, batch_size, num_frames):
    return {
        k: tf.reshape(v, tf.concat([[batch_size, num_frames - 1], tf.shape(v)[1:]], 0))
        for k, v in outputs.items()
    }

  def dedicated_inputs(self, batch):
    return {'image_a': batch['image'][:, 0], 'image_b': batch['image'][:, 1]}

  def new_metrics(self):
    return None
