"""Tests for taskology_tf.geometry.camera (analytic goldens derived inline)."""

import math

import numpy as np
import tensorflow as tf

from taskology_tf.geometry import camera


def _intrinsics(batch=2):
  # Two different, slightly skewed cameras so the tests exercise K fully.
  k = np.array(
      [
          [[30.0, 0.5, 9.3], [0.0, 28.0, 6.1], [0.0, 0.0, 1.0]],
          [[22.0, 0.0, 7.5], [0.0, 25.0, 5.5], [0.0, 0.0, 1.0]],
      ],
      np.float32,
  )
  return tf.constant(k[:batch])


def test_pixel_grid_is_column_row_one():
  grid = camera.pixel_grid(2, 3).numpy()
  assert grid.shape == (2, 3, 3)
  # grid[v, u] = (u, v, 1): u indexes columns, v rows.
  np.testing.assert_array_equal(grid[1, 2], [2.0, 1.0, 1.0])
  np.testing.assert_array_equal(grid[..., 2], np.ones((2, 3)))


def test_intrinsics_from_fov_edges_at_half_fov():
  # The outer pixel edge u = -0.5 is W/2 pixels left of cx = (W-1)/2, so its
  # ray has x/z = -(W/2)/f = -tan(fov/2) by construction of f.
  height, width, fov = 6, 8, 70.0
  k = camera.intrinsics_from_fov(height, width, fov).numpy()
  assert k.shape == (3, 3)
  np.testing.assert_allclose(k[0, 2], (width - 1) / 2)
  np.testing.assert_allclose(k[1, 2], (height - 1) / 2)
  assert k[0, 0] == k[1, 1]
  ray = np.linalg.inv(k) @ np.array([-0.5, 0.0, 1.0])
  np.testing.assert_allclose(math.degrees(math.atan(-ray[0])), fov / 2, rtol=1e-5)


def test_unproject_project_round_trip_image_and_points():
  k = _intrinsics()
  depth = tf.random.uniform([2, 5, 7, 1], 0.5, 20.0, seed=1)
  points = camera.unproject(depth, k)
  # Depth is z (not ray length).
  np.testing.assert_allclose(points[..., 2:].numpy(), depth.numpy(), rtol=1e-6)
  pixels, z = camera.project(points, k)
  grid = camera.pixel_grid(5, 7)[..., :2].numpy()
  np.testing.assert_allclose(pixels.numpy(), np.broadcast_to(grid, (2, 5, 7, 2)), atol=1e-4)
  np.testing.assert_allclose(z.numpy(), depth.numpy(), rtol=1e-6)
  # [B, N, 3] layout.
  flat = tf.reshape(points, [2, -1, 3])
  pixels_flat, _ = camera.project(flat, k)
  np.testing.assert_allclose(pixels_flat.numpy().reshape(2, 5, 7, 2), pixels.numpy(), atol=1e-5)


def test_project_guards_zero_and_negative_depth():
  k = _intrinsics(1)
  points = tf.constant([[[1.0, 2.0, 0.0], [1.0, -1.0, -3.0], [0.0, 0.0, 1e-9]]])
  with tf.GradientTape() as tape:
    tape.watch(points)
    pixels, z = camera.project(points, k)
    total = tf.reduce_sum(pixels)
  grad = tape.gradient(total, points)
  assert np.all(np.isfinite(pixels.numpy()))
  assert np.all(np.isfinite(grad.numpy()))
  np.testing.assert_array_equal(z.numpy()[0, :, 0], np.float32([0.0, -3.0, 1e-9]))


def test_scale_intrinsics_pixel_centre_convention():
  # A point projecting to (u, v) with K must land at
  # ((u + 0.5) sx - 0.5, (v + 0.5) sy - 0.5) with the scaled K: the image
  # extent [-0.5, W - 0.5] maps onto [-0.5, W sx - 0.5].
  k = _intrinsics()
  sx = tf.constant([0.5, 2.0])
  sy = tf.constant([0.25, 3.0])
  scaled = camera.scale_intrinsics(k, sx, sy)
  points = tf.random.uniform([2, 10, 3], -2.0, 2.0, seed=3) + [0.0, 0.0, 5.0]
  pixels, _ = camera.project(points, k)
  pixels_scaled, _ = camera.project(points, scaled)
  scale = tf.stack([sx, sy], axis=-1)[:, tf.newaxis]
  expected = (pixels + 0.5) * scale - 0.5
  np.testing.assert_allclose(pixels_scaled.numpy(), expected.numpy(), atol=1e-4)
  # Unprojecting the scaled pixel with the scaled K recovers the point.
  k_inv = tf.linalg.inv(scaled)
  homogeneous = tf.concat([pixels_scaled, tf.ones([2, 10, 1])], axis=-1)
  rays = tf.linalg.matvec(k_inv[:, tf.newaxis], homogeneous)
  np.testing.assert_allclose((rays * points[..., 2:]).numpy(), points.numpy(), atol=1e-4)
  # Scalar scales and an unbatched K also work; (cx + 0.5) * 2 - 0.5.
  single = camera.scale_intrinsics(k[0], 2.0, 2.0).numpy()
  np.testing.assert_allclose(single[0, 2], (9.3 + 0.5) * 2 - 0.5, rtol=1e-6)
  np.testing.assert_allclose(single[0, 0], 60.0)


def test_unproject_works_under_tf_function_with_unknown_batch():
  fn = tf.function(
      lambda d, k: camera.project(camera.unproject(d, k), k)[0],
      input_signature=[
          tf.TensorSpec([None, None, None, 1], tf.float32),
          tf.TensorSpec([None, 3, 3], tf.float32),
      ],
  )
  out = fn(tf.ones([3, 4, 5, 1]), tf.tile(_intrinsics(1), [3, 1, 1]))
  assert out.shape == (3, 4, 5, 2)
