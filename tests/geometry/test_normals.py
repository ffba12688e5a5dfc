"""Tests for taskology_tf.geometry.normals (plane golden derived inline)."""

import numpy as np
import tensorflow as tf

from taskology_tf.geometry import camera
from taskology_tf.geometry import normals

H, W = 9, 12


def _plane_depth(a, b, c, k):
  # Plane Z = aX + bY + c. On the ray through pixel p, X = z x_n, Y = z y_n
  # with (x_n, y_n, 1) = K^-1 p, so z = a z x_n + b z y_n + c, i.e.
  # z = c / (1 - a x_n - b y_n).
  rays = np.einsum('ij,hwj->hwi', np.linalg.inv(k), camera.pixel_grid(H, W).numpy())
  return (c / (1.0 - a * rays[..., 0] - b * rays[..., 1]))[..., None]


def test_plane_normals_proportional_to_a_b_minus_one():
  # Points on Z = aX + bY + c satisfy (a, b, -1) . X = -c, so (a, b, -1) is
  # the plane normal and, for c > 0, (a, b, -1) . X = -c < 0: it already
  # faces the camera.
  k = np.array([[14.0, 0.0, 5.7], [0.0, 13.0, 4.2], [0.0, 0.0, 1.0]])
  planes = [(0.3, -0.2, 4.0), (0.0, 0.0, 2.5), (-0.5, 0.4, 7.0)]
  depth = np.stack([_plane_depth(a, b, c, k) for a, b, c in planes])
  assert np.all(depth > 0)
  result = normals.depth_to_normals(
      tf.constant(depth, tf.float32), tf.constant(np.broadcast_to(k, (3, 3, 3)), tf.float32)
  ).numpy()
  for i, (a, b, _) in enumerate(planes):
    expected = np.array([a, b, -1.0]) / np.linalg.norm([a, b, -1.0])
    np.testing.assert_allclose(
        result[i, 1:-1, 1:-1], np.broadcast_to(expected, (H - 2, W - 2, 3)), atol=1e-4
    )
    # Edge pixels use one-sided differences, still chords of the plane.
    np.testing.assert_allclose(result[i], np.broadcast_to(expected, (H, W, 3)), atol=1e-3)


def test_normals_match_depth_derivative_formula():
  # Module docstring: n ~ (fx z_u, fy z_v, -(z + (u-cx) z_u + (v-cy) z_v)).
  # For a depth map linear in the pixel coordinates, z = 5 + 0.05 u - 0.1 v,
  # central differences are exact: z_u = 0.05, z_v = -0.1.
  k = np.array([[20.0, 0.0, 6.0], [0.0, 18.0, 4.0], [0.0, 0.0, 1.0]])
  grid = camera.pixel_grid(H, W).numpy()
  z = 5.0 + 0.05 * grid[..., 0] - 0.1 * grid[..., 1]
  result = normals.depth_to_normals(
      tf.constant(z[None, ..., None], tf.float32), tf.constant(k[None], tf.float32)
  ).numpy()[0]
  z_u, z_v = 0.05, -0.1
  expected = np.stack(
      [
          np.full_like(z, 20.0 * z_u),
          np.full_like(z, 18.0 * z_v),
          -(z + (grid[..., 0] - 6.0) * z_u + (grid[..., 1] - 4.0) * z_v),
      ],
      -1,
  )
  expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
  np.testing.assert_allclose(result[1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-4)


def test_normals_face_camera_and_have_finite_gradients():
  k = tf.constant([[[10.0, 0.0, 5.5], [0.0, 10.0, 4.0], [0.0, 0.0, 1.0]]])
  depth = tf.random.uniform([1, H, W, 1], 1.0, 3.0, seed=0)
  flat = tf.ones([1, H, W, 1])  # Scales an all-zero vector field below.
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([depth, flat])
    n = normals.depth_to_normals(depth, k)
    total = tf.reduce_sum(n * [0.3, -0.2, 0.5])
    zero = normals.safe_normalize(tf.zeros([4, 3]) * tf.reduce_sum(flat))
    zero_total = tf.reduce_sum(zero)
  rays = camera.unproject(depth, k)
  assert np.all(tf.reduce_sum(n * rays, -1).numpy() < 0)
  np.testing.assert_allclose(tf.norm(n, axis=-1).numpy(), 1.0, atol=1e-5)
  grad = tape.gradient(total, depth).numpy()
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  np.testing.assert_array_equal(zero.numpy(), 0.0)
  assert np.all(np.isfinite(tape.gradient(zero_total, flat).numpy()))
