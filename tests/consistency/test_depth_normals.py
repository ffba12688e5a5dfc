"""Tests for the depth-normals relation (Eq. 6)."""

import numpy as np
import tensorflow as tf

from taskology_tf.consistency import depth_normals
from taskology_tf.geometry import camera
from taskology_tf.geometry import transforms

H, W = 10, 12
K = np.array([[15.0, 0.0, 5.5], [0.0, 15.0, 4.5], [0.0, 0.0, 1.0]])


def _plane(a, b, c):
  """Depth of Z = aX + bY + c (z = c / (1 - a x_n - b y_n), see
  tests/geometry/test_normals.py) and its camera-facing unit normal
  (a, b, -1) / |(a, b, -1)|."""
  rays = np.einsum('ij,hwj->hwi', np.linalg.inv(K), camera.pixel_grid(H, W).numpy())
  depth = c / (1.0 - a * rays[..., 0] - b * rays[..., 1])
  normal = np.array([a, b, -1.0]) / np.linalg.norm([a, b, -1.0])
  return depth[..., None], np.broadcast_to(normal, (H, W, 3))


def _clip():
  """[B=2, T=2] clip of four different planes."""
  planes = [
      [_plane(0.2, -0.1, 3.0), _plane(0.0, 0.3, 5.0)],
      [_plane(-0.4, 0.0, 2.0), _plane(0.1, 0.1, 8.0)],
  ]
  depth = np.array([[p[0] for p in row] for row in planes], np.float32)
  normals = np.array([[p[1] for p in row] for row in planes], np.float32)
  return depth, normals


def _batch(batch=2):
  return {'intrinsics': tf.constant(np.broadcast_to(K, (batch, 3, 3)), tf.float32)}


def test_zero_for_consistent_planes_and_unnormalised_normals():
  depth, normals = _clip()
  relation = depth_normals.DepthNormalsConsistency()
  loss, metrics = relation(
      {'depth': {'depth': tf.constant(depth)}, 'normals': {'normals': tf.constant(3.0 * normals)}},
      _batch(),
  )
  assert abs(loss.numpy()) < 1e-5
  np.testing.assert_allclose(metrics['mean_cosine'].numpy(), 1.0, atol=1e-5)
  # Rank-4 ([B, H, W, ...]) predictions are accepted too.
  loss4, _ = relation(
      {
          'depth': {'depth': tf.constant(depth[:, 0])},
          'normals': {'normals': tf.constant(normals[:, 0])},
      },
      _batch(),
  )
  assert abs(loss4.numpy()) < 1e-5


def test_rotated_normals_cost_one_minus_cos_angle():
  # The depth-derived normals equal the true plane normals N (previous
  # test), so predicting N' = Q N for a rotation Q makes Eq. 6 exactly
  # mean(1 - N' . N). (For Q about y by alpha, N' . N = cos(alpha) +
  # (1 - cos(alpha)) N_y^2, so it is not simply 1 - cos(alpha) per pixel.)
  alpha = 0.3
  depth, normals = _clip()
  rotation = transforms.axis_angle_to_matrix(tf.constant([0.0, alpha, 0.0]))
  rotated = tf.linalg.matvec(rotation, tf.constant(normals))
  cos = tf.reduce_sum(rotated * normals, -1)
  relation = depth_normals.DepthNormalsConsistency()
  depth_t = tf.constant(depth)
  with tf.GradientTape() as tape:
    tape.watch([depth_t, rotated])
    loss, _ = relation({'depth': {'depth': depth_t}, 'normals': {'normals': rotated}}, _batch())
  np.testing.assert_allclose(loss.numpy(), 1.0 - tf.reduce_mean(cos).numpy(), atol=1e-5)
  assert loss.numpy() > 1e-3
  for grad in tape.gradient(loss, [depth_t, rotated]):
    assert np.all(np.isfinite(grad.numpy()))
    assert np.any(grad.numpy() != 0.0)


def test_bumpy_depth_is_penalised_with_gradients():
  depth, normals = _clip()
  noisy = tf.constant(
      depth * (1.0 + 0.05 * np.random.default_rng(0).normal(size=depth.shape)), tf.float32
  )
  relation = depth_normals.DepthNormalsConsistency()
  with tf.GradientTape() as tape:
    tape.watch(noisy)
    loss, _ = relation(
        {'depth': {'depth': noisy}, 'normals': {'normals': tf.constant(normals)}}, _batch()
    )
  assert loss.numpy() > 1e-2
  grad = tape.gradient(loss, noisy).numpy()
  assert np.all(np.isfinite(grad)) and np.any(grad != 0.0)


def test_max_depth_masks_sky_and_its_neighbours():
  depth, normals = _clip()
  depth[:, :, :3] = 1000.0  # Sky rows, with nonsense predicted normals.
  normals = normals.copy()
  normals[:, :, :3] = [0.0, 1.0, 0.0]
  predictions = {
      'depth': {'depth': tf.constant(depth)},
      'normals': {'normals': tf.constant(normals)},
  }
  masked = depth_normals.DepthNormalsConsistency(max_depth=100.0)
  loss, metrics = masked(predictions, _batch())
  # Row 3 borders the sky (its central difference reads row 2), so the
  # counted rows are 4..H-1.
  assert abs(loss.numpy()) < 1e-5
  np.testing.assert_allclose(metrics['valid_fraction'].numpy(), (H - 4) / H, atol=1e-6)
  unmasked_loss, _ = depth_normals.DepthNormalsConsistency()(predictions, _batch())
  assert unmasked_loss.numpy() > 0.1


def test_smoothness_zero_for_constant_depth_and_scale_invariant():
  from taskology_tf.consistency.smoothness import DepthSmoothness

  rng = np.random.default_rng(0)
  image = tf.constant(rng.uniform(size=(1, 2, 8, 10, 3)), tf.float32)
  relation = DepthSmoothness()
  # Constant depth: every disparity difference is 0.
  loss, _ = relation({'depth': {'depth': tf.fill([1, 2, 8, 10, 1], 7.0)}}, {'image': image})
  assert abs(float(loss)) < 1e-7
  # Mean-normalised disparity: scaling the depth by 3 leaves the loss unchanged.
  depth = tf.constant(rng.uniform(2, 20, (1, 2, 8, 10, 1)), tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(depth)
    a, _ = relation({'depth': {'depth': depth}}, {'image': image})
  grad = tape.gradient(a, depth)
  b, _ = relation({'depth': {'depth': 3.0 * depth}}, {'image': image})
  assert float(a) > 0
  np.testing.assert_allclose(float(a), float(b), rtol=1e-5)
  assert np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).max() > 0
