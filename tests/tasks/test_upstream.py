"""Tasks fed other tasks' predictions (Task.input_tasks): ordering, feeding, clear errors."""

import pytest
import tensorflow as tf

from taskology_tf.tasks import base


class _Doubler(base.Task):
  """Predicts 2 x (its upstream task's 'y', or its image's mean with no upstream)."""

  def __init__(self, name, upstream=()):
    self.name = name
    self._upstream = tuple(upstream)

  @property
  def input_tasks(self):
    return self._upstream

  output_spec = {'y': tf.TensorSpec([], tf.float32)}
  input_spec = {'x': tf.TensorSpec([], tf.float32)}

  def build_network(self):
    return None

  def call(self, model, inputs, training=False):
    return {'y': 2.0 * inputs['x']}

  def serving_inputs(self, mediator):
    if self._upstream:
      return {'x': tf.reshape(mediator[base.upstream_key(self._upstream[0], 'y')], [-1])}
    return {'x': tf.reshape(tf.reduce_mean(tf.cast(mediator['image'], tf.float32), [2]), [-1])}

  def unflatten(self, outputs, batch_size, num_frames):
    return {k: tf.reshape(v, [batch_size, num_frames]) for k, v in outputs.items()}


def test_predict_in_order_runs_upstream_first_and_feeds_constants():
  # c <- b <- a, listed downstream-first: a = 2 m, b = 2 a = 4 m, c = 2 b = 8 m for an image
  # whose mean is m = 1.5 per frame.
  tasks = {'c': _Doubler('c', ['b']), 'b': _Doubler('b', ['a']), 'a': _Doubler('a')}
  assert base.upstream_order(tasks) == ('a', 'b', 'c')
  mediator = {'image': tf.fill([1, 2, 4], 1.5)}
  models = {n: None for n in tasks}
  out = base.predict_in_order(tasks, models, mediator)
  assert out['c']['y'].numpy().tolist() == [[12.0, 12.0]]  # 8 x 1.5
  # A given (e.g. stale) upstream replaces the set's own: b fed a = 10 gives b = 20, c = 40.
  given = {'a': {'y': tf.fill([1, 2], 10.0)}}
  out = base.predict_in_order(tasks, models, mediator, given=given)
  assert out['c']['y'].numpy().tolist() == [[40.0, 40.0]]
  # Upstream predictions reach the downstream task as constants: no gradient flows back.
  x = tf.Variable(3.0)
  with tf.GradientTape() as tape:
    fed = base.with_upstream(mediator, 'a', {'y': x * tf.ones([1, 2])})
    y = tasks['b'].predict_mediator(None, fed)['y']
  assert tape.gradient(y, x) is None


def test_missing_upstream_and_cycles_are_named():
  with pytest.raises(KeyError, match=r"task 'b' takes the predictions of task 'a'"):
    base.predict_in_order({'b': _Doubler('b', ['a'])}, {'b': None}, {'image': tf.ones([1, 2, 4])})
  # Already carried by the mediator (a live upstream added by the trainer): fine.
  fed = base.with_upstream({'image': tf.ones([1, 2, 4])}, 'a', {'y': tf.ones([1, 2])})
  out = base.predict_in_order({'b': _Doubler('b', ['a'])}, {'b': None}, fed)
  assert out['b']['y'].numpy().tolist() == [[2.0, 2.0]]
  with pytest.raises(ValueError, match='cycle: a -> b -> a'):
    base.upstream_order({'a': _Doubler('a', ['b']), 'b': _Doubler('b', ['a'])})
