"""PillarFeatureNet: the masked max over a pillar's points, and its gradient under XLA.

The NAS-FPN cell's reduce_max gradient turned NaN under XLA at conftest's
--xla_backend_optimization_level=0 (networks/nasfpn_segmenter.py, `_GlobalAttention`): TF's
gradient dy * (x == max) / count(x == max) divides 0 by 0 when the fusion that compares x with
its max rounds x differently from the one that reduced it. The pillar net's max over points is
the same op on ReLU outputs with many tied zeros (padding points), so its compiled gradient is
checked against the uncompiled one here.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from taskology_tf.networks.pointpillars import PillarFeatureNet


def _identity_net(channels=9):
  net = PillarFeatureNet(channels)
  net(tf.zeros([1, 1, 1, 2, 9]), tf.ones([1, 1, 1, 2]), training=False)
  net.dense.kernel.assign(np.eye(9, channels, dtype=np.float32))
  return net


def test_masked_max_ignores_padding_points():
  # Kernel = identity and a fresh BatchNorm at inference (mean 0, variance 1, gamma 1, beta 0)
  # give relu(x / sqrt(1 + 1e-3)) per point. Pillar of 3 points, the third padding with the
  # largest values: the max must come from points 0 and 1 only, feature-wise.
  net = _identity_net()
  points = np.zeros([1, 1, 1, 3, 9], np.float32)
  points[0, 0, 0, 0] = [1, -2, 3, 0, 0, 0, 0, 0, -1]
  points[0, 0, 0, 1] = [2, -1, 1, 0, 0, 0, 0, 0, -5]
  points[0, 0, 0, 2] = [9, 9, 9, 9, 9, 9, 9, 9, 9]
  mask = np.array([[[[1, 1, 0]]]], np.float32)
  out = net(tf.constant(points), tf.constant(mask), training=False).numpy()[0, 0, 0]
  expected = np.array([2, 0, 3, 0, 0, 0, 0, 0, 0], np.float32) / np.sqrt(1.001)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_xla_gradient_is_finite_and_equals_the_uncompiled_one():
  keras.utils.set_random_seed(0)
  net = PillarFeatureNet(16)
  x = tf.random.normal([2, 2, 32, 8, 9])
  mask = tf.cast(tf.random.uniform([2, 2, 32, 8]) > 0.3, tf.float32)
  net(x, mask, training=True)

  def grads(x, mask):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = net(x, mask, training=True)
      loss = tf.reduce_sum(y * tf.sin(y))
    return tape.gradient(loss, net.trainable_variables + [x])

  compiled = tf.function(grads, jit_compile=True)(x, mask)
  plain = tf.function(grads)(x, mask)
  for c, p in zip(compiled, plain):
    assert np.isfinite(c.numpy()).all()
    # Float32 sums over 2 x 2 x 32 x 8 points in another order: relative differences ~2e-4
    # seen; a NaN, or dy routed to a wrong point, differs by O(1).
    np.testing.assert_allclose(c.numpy(), p.numpy(), rtol=2e-3, atol=2e-4)
