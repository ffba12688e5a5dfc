"""Tests for taskology_tf.geometry.transforms."""

import numpy as np
import tensorflow as tf

from taskology_tf.geometry import transforms


def _random_axis_angles(n, max_angle, seed):
  rng = np.random.default_rng(seed)
  axes = rng.normal(size=(n, 3))
  axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
  angles = rng.uniform(0.0, max_angle, size=(n, 1))
  return (axes * angles).astype(np.float32)


def test_rotation_about_z_matches_closed_form():
  # Rotation by theta about +z: x -> (cos, sin, 0), y -> (-sin, cos, 0).
  theta = 0.7
  matrix = transforms.axis_angle_to_matrix(tf.constant([0.0, 0.0, theta]))
  c, s = np.cos(theta), np.sin(theta)
  np.testing.assert_allclose(matrix.numpy(), [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-6)


def test_axis_angle_round_trip_all_regimes():
  generic = _random_axis_angles(50, 3.0, seed=0)
  tiny = _random_axis_angles(20, 1e-3, seed=1)
  near_pi = _random_axis_angles(20, 1.0, seed=2)
  near_pi = (
      near_pi
      / np.linalg.norm(near_pi, axis=-1, keepdims=True)
      * (np.pi - np.linspace(1e-4, 5e-2, 20)[:, None].astype(np.float32))
  )
  rotations = np.concatenate([generic, tiny, near_pi, np.zeros((1, 3), np.float32)]).astype(
      np.float32
  )
  matrices = transforms.axis_angle_to_matrix(rotations)
  # Orthonormal with det +1.
  eye = tf.linalg.matmul(matrices, matrices, transpose_a=True)
  np.testing.assert_allclose(eye.numpy(), np.broadcast_to(np.eye(3), eye.shape), atol=2e-6)
  np.testing.assert_allclose(tf.linalg.det(matrices).numpy(), 1.0, atol=2e-6)
  recovered = transforms.matrix_to_axis_angle(matrices).numpy()
  np.testing.assert_allclose(recovered[:70], rotations[:70], atol=2e-5)
  # Near pi, float32 matrices pin the axis to ~1e-4 relative.
  np.testing.assert_allclose(recovered[70:90], rotations[70:90], atol=5e-4)
  np.testing.assert_array_equal(recovered[90], [0.0, 0.0, 0.0])
  # Tiny angles keep full relative precision (no 1 - cos cancellation).
  np.testing.assert_allclose(recovered[50:70], rotations[50:70], rtol=1e-4)


def test_gradients_at_zero_are_finite_and_exact():
  # dR/dr_i at r = 0 is skew(e_i): R ~ I + skew(r) to first order.
  zero = tf.zeros([3])
  with tf.GradientTape() as tape:
    tape.watch(zero)
    matrix = transforms.axis_angle_to_matrix(zero)
  jacobian = tape.jacobian(matrix, zero).numpy()  # [3, 3, 3]
  skew_x = np.array([[0, 0, 0], [0, 0, -1], [0, 1, 0]])
  skew_y = np.array([[0, 0, 1], [0, 0, 0], [-1, 0, 0]])
  skew_z = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 0]])
  for i, skew in enumerate([skew_x, skew_y, skew_z]):
    np.testing.assert_allclose(jacobian[..., i], skew, atol=1e-6)
  # And the inverse map at the identity.
  identity = tf.eye(3)
  with tf.GradientTape() as tape:
    tape.watch(identity)
    rotation = transforms.matrix_to_axis_angle(identity)
  jacobian = tape.jacobian(rotation, identity).numpy()
  assert np.all(np.isfinite(jacobian))
  # r_x ~ (R21 - R12) / 2.
  np.testing.assert_allclose(jacobian[0, 2, 1], 0.5, atol=1e-6)
  np.testing.assert_allclose(jacobian[0, 1, 2], -0.5, atol=1e-6)


def test_compose_invert_and_transform_points():
  rotations = transforms.axis_angle_to_matrix(_random_axis_angles(4, 2.0, 5))
  translations = tf.random.normal([4, 3], seed=6)
  a_from_b = transforms.make_transform(rotations, translations)
  b_from_c = transforms.make_transform(tf.reverse(rotations, [0]), tf.reverse(translations, [0]))
  eye = np.broadcast_to(np.eye(4), (4, 4, 4))
  np.testing.assert_allclose(
      transforms.compose(a_from_b, transforms.invert_transform(a_from_b)).numpy(), eye, atol=1e-5
  )
  np.testing.assert_allclose(
      transforms.invert_transform(transforms.invert_transform(a_from_b)).numpy(),
      a_from_b.numpy(),
      atol=1e-6,
  )
  # inverse(a_from_b @ b_from_c) = c_from_b @ b_from_a.
  np.testing.assert_allclose(
      transforms.invert_transform(transforms.compose(a_from_b, b_from_c)).numpy(),
      transforms.compose(
          transforms.invert_transform(b_from_c), transforms.invert_transform(a_from_b)
      ).numpy(),
      atol=1e-5,
  )
  points = tf.random.normal([4, 2, 5, 3], seed=7)
  in_a = transforms.transform_points(transforms.compose(a_from_b, b_from_c), points)
  chained = transforms.transform_points(a_from_b, transforms.transform_points(b_from_c, points))
  np.testing.assert_allclose(in_a.numpy(), chained.numpy(), atol=1e-5)
  # X_a = R X_b + t, checked against the 4x4 product in numpy.
  homogeneous = np.concatenate([points.numpy(), np.ones((4, 2, 5, 1))], -1)
  expected = np.einsum('bij,bhwj->bhwi', a_from_b.numpy(), homogeneous)[..., :3]
  np.testing.assert_allclose(
      transforms.transform_points(a_from_b, points).numpy(), expected, atol=1e-5
  )
