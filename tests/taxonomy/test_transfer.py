"""Readouts on frozen encoders: frozen weights, shapes, and a whole (tiny) target measurement."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from taskology_tf.tasks.depth import DepthTask
from taskology_tf.tasks.normals import NormalsTask
from taskology_tf.tasks.segmentation import SegmentationTask
from taskology_tf.taxonomy import transfer

H, W = 16, 24


def _frames(num=4, seed=0):
  rng = np.random.default_rng(seed)
  n = rng.normal(size=(num, H, W, 3)).astype(np.float32)
  return tf.data.Dataset.from_tensor_slices(
      {
          'image': rng.integers(0, 255, (num, H, W, 3), dtype=np.uint8),
          'depth': rng.uniform(1.0, 20.0, (num, H, W, 1)).astype(np.float32),
          'normals': n / np.linalg.norm(n, axis=-1, keepdims=True),
          'semantics': rng.integers(0, 3, (num, H, W), dtype=np.uint8),
      }
  )


def test_frozen_encoder_is_the_bottleneck_and_stays_fixed():
  task = DepthTask(H, W, base_filters=4, levels=3)
  net = task.build_network()
  enc = transfer.frozen_encoder(net)
  assert enc.output_shape == (None, H // 4, W // 4, 16)
  before = {v.name: v.numpy().copy() for v in net.variables}
  tm = transfer.TransferModel(NormalsTask(H, W), [enc], H, W)
  transfer.train(tm, _frames().batch(2).repeat(), 2, 1e-2)
  assert tm.trainable_variables and not enc.trainable_variables
  for v in net.variables:  # The source network, encoder included, is unchanged by training.
    np.testing.assert_array_equal(before[v.name], v.numpy())
  with pytest.raises(ValueError, match='not a build_unet U-Net'):
    transfer.frozen_encoder(keras.Sequential([keras.Input((H, W, 3)), keras.layers.Conv2D(2, 1)]))


@pytest.mark.timeout(600)
def test_measure_target_gives_normalised_affinities():
  tasks = {
      'depth': DepthTask(H, W, base_filters=4, levels=2),
      'normals': NormalsTask(H, W, base_filters=4, levels=2),
      'segmentation': SegmentationTask(H, W, 3, base_filters=4, levels=2),
  }
  models = {n: t.build_network() for n, t in tasks.items()}
  r = transfer.measure_target(
      tasks['depth'],
      [('normals',), ('segmentation',), ('normals', 'segmentation')],
      models,
      _frames().batch(2).repeat(),
      _frames(3, seed=1).batch(2),
      2,
      1e-3,
      H,
      W,
      log=lambda s: None,
  )
  assert r.names == ['normals', 'segmentation', 'normals+segmentation', 'full', 'scratch']
  assert r.losses.shape == (5, 3)
  assert sum(r.affinity.values()) == pytest.approx(1.0)
  assert set(r.affinity) == set(r.names[:-1])
  for d in (r.gain, r.quality):
    assert all(0.0 <= v <= 1.0 for v in d.values())
  assert r.quality['full'] == pytest.approx(0.5)  # itself: every image a tie
