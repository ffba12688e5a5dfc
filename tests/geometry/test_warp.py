"""Tests for taskology_tf.geometry.warp (goldens derived inline)."""

import numpy as np
import tensorflow as tf

from taskology_tf.geometry import camera
from taskology_tf.geometry import transforms
from taskology_tf.geometry import warp

H, W = 6, 8


def _intrinsics(batch=2):
  k = np.array([[10.0, 0.0, 3.5], [0.0, 12.0, 2.5], [0.0, 0.0, 1.0]], np.float32)
  return tf.constant(np.broadcast_to(k, (batch, 3, 3)))


def test_identity_pose_leaves_warp_unchanged():
  # R = I, T = 0: X2 = X1, so every pixel maps onto itself at its own depth.
  depth = tf.random.uniform([2, H, W, 1], 1.0, 10.0, seed=0)
  image = tf.random.uniform([2, H, W, 3], seed=1)
  k = _intrinsics()
  rotation = tf.eye(3, batch_shape=[2])
  translation = tf.zeros([2, 3])
  pixels, warped_depth = warp.warp_pixels(depth, k, rotation, translation)
  grid = camera.pixel_grid(H, W)[..., :2].numpy()
  np.testing.assert_allclose(pixels.numpy(), np.broadcast_to(grid, pixels.shape), atol=1e-4)
  np.testing.assert_allclose(warped_depth.numpy(), depth.numpy(), rtol=1e-6)
  warped, valid = warp.inverse_warp(image, depth, k, rotation, translation)
  np.testing.assert_allclose(warped.numpy(), image.numpy(), atol=1e-4)
  np.testing.assert_array_equal(valid.numpy(), 1.0)


def test_pure_translation_shifts_by_focal_times_t_over_depth():
  # X2 = X1 + (tx, 0, 0) at constant depth d: u2 = fx (x1 + tx) / d + cx
  # = u1 + fx tx / d; v and depth unchanged. fx = 10, tx = 0.4, d = 2 ->
  # a shift of +2 pixels (to the right: the camera moved left).
  depth = tf.fill([2, H, W, 1], 2.0)
  k = _intrinsics()
  rotation = tf.eye(3, batch_shape=[2])
  translation = tf.constant([[0.4, 0.0, 0.0]] * 2)
  pixels, warped_depth = warp.warp_pixels(depth, k, rotation, translation)
  grid = camera.pixel_grid(H, W)[..., :2].numpy()
  np.testing.assert_allclose(pixels[..., 0].numpy() - grid[..., 0], 2.0, atol=1e-4)
  np.testing.assert_allclose(pixels[..., 1].numpy() - grid[..., 1], 0.0, atol=1e-4)
  np.testing.assert_allclose(warped_depth.numpy(), 2.0, rtol=1e-6)
  # inverse_warp reads the source 2 columns to the right; the last two
  # columns fall outside the source image.
  image = tf.random.uniform([2, H, W, 3], seed=2)
  warped, valid = warp.inverse_warp(image, depth, k, rotation, translation)
  np.testing.assert_allclose(warped[:, :, : W - 2].numpy(), image[:, :, 2:].numpy(), atol=1e-4)
  np.testing.assert_array_equal(valid[:, :, : W - 2].numpy(), 1.0)
  np.testing.assert_array_equal(valid[:, :, W - 2 :].numpy(), 0.0)


def test_warp_matches_paper_equation_and_object_motion():
  # Sec. 3.2.1: z' p' = K R K^-1 z p + K (m + T), evaluated in numpy.
  rng = np.random.default_rng(0)
  depth = rng.uniform(2.0, 8.0, (2, H, W, 1)).astype(np.float32)
  rotation = transforms.axis_angle_to_matrix(tf.constant(rng.normal(0, 0.05, (2, 3)), tf.float32))
  translation = rng.normal(0, 0.3, (2, 3)).astype(np.float32)
  motion = rng.normal(0, 0.1, (2, H, W, 3)).astype(np.float32)
  k = _intrinsics()
  pixels, warped_depth = warp.warp_pixels(depth, k, rotation, translation, motion)
  grid = camera.pixel_grid(H, W).numpy()
  kn = k.numpy()[0]
  rhs = np.einsum(
      'ij,bjk,kl,hwl->bhwi', kn, rotation.numpy(), np.linalg.inv(kn), grid
  ) * depth + np.einsum('ij,bhwj->bhwi', kn, motion + translation[:, None, None])
  np.testing.assert_allclose(warped_depth.numpy()[..., 0], rhs[..., 2], rtol=1e-5)
  np.testing.assert_allclose(pixels.numpy(), rhs[..., :2] / rhs[..., 2:], atol=1e-3)
  # A constant object motion is indistinguishable from extra translation.
  constant = tf.constant([[0.1, -0.2, 0.3]] * 2)
  with_motion = warp.warp_pixels(
      depth, k, rotation, translation, tf.broadcast_to(constant[:, None, None], [2, H, W, 3])
  )
  shifted = warp.warp_pixels(depth, k, rotation, translation + constant)
  np.testing.assert_allclose(with_motion[0].numpy(), shifted[0].numpy(), atol=1e-4)


def test_bilinear_sample_integer_half_and_outside():
  image = tf.random.uniform([1, H, W, 2], seed=3)
  grid = camera.pixel_grid(H, W)[tf.newaxis, ..., :2]
  sampled, valid = warp.bilinear_sample(image, grid)
  np.testing.assert_array_equal(sampled.numpy(), image.numpy())
  np.testing.assert_array_equal(valid.numpy(), 1.0)
  # (u, v) = (2.5, 1) is the average of columns 2 and 3 in row 1, and
  # (2.5, 1.5) the average of the 2x2 block rows 1-2, columns 2-3.
  pixels = tf.constant(
      [[[[2.5, 1.0], [2.5, 1.5], [-0.01, 1.0], [W - 1.0, H - 1.0], [W - 0.99, 0.0]]]]
  )
  sampled, valid = warp.bilinear_sample(image, pixels)
  img = image.numpy()[0]
  np.testing.assert_allclose(sampled[0, 0, 0].numpy(), 0.5 * (img[1, 2] + img[1, 3]), atol=1e-6)
  np.testing.assert_allclose(sampled[0, 0, 1].numpy(), img[1:3, 2:4].mean(axis=(0, 1)), atol=1e-6)
  np.testing.assert_allclose(sampled[0, 0, 3].numpy(), img[H - 1, W - 1], atol=1e-6)
  np.testing.assert_array_equal(valid.numpy()[0, 0, :, 0], [1, 1, 0, 1, 0])
  np.testing.assert_array_equal(sampled[0, 0, 2].numpy(), 0.0)
  # Non-finite and huge coordinates are invalid, not errors.
  bad = tf.constant([[[[np.nan, 1.0], [1e30, 2.0], [np.inf, -np.inf]]]])
  sampled, valid = warp.bilinear_sample(image, bad)
  np.testing.assert_array_equal(valid.numpy(), 0.0)
  assert np.all(np.isfinite(sampled.numpy()))


def test_bilinear_sample_gradients():
  # On the ramp image f(u, v) = 3u + 2v bilinear interpolation is exact, so
  # d sample / d(u, v) = (3, 2) and d sample / d image are the weights.
  grid = camera.pixel_grid(H, W)
  ramp = (3.0 * grid[..., 0:1] + 2.0 * grid[..., 1:2])[tf.newaxis]
  pixels = tf.constant([[[[2.3, 1.6], [5.75, 4.2]]]])
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([ramp, pixels])
    sampled, _ = warp.bilinear_sample(ramp, pixels)
    total = tf.reduce_sum(sampled)
  np.testing.assert_allclose(
      sampled.numpy()[0, 0, :, 0], [3 * 2.3 + 2 * 1.6, 3 * 5.75 + 2 * 4.2], rtol=1e-5
  )
  np.testing.assert_allclose(
      tape.gradient(total, pixels).numpy()[0, 0], [[3.0, 2.0], [3.0, 2.0]], atol=1e-4
  )
  image_grad = tf.convert_to_tensor(tape.gradient(total, ramp)).numpy()
  # Weights of (2.3, 1.6): 0.7 * 0.4 at (u=2, v=1).
  np.testing.assert_allclose(image_grad[0, 1, 2, 0], 0.7 * 0.4, atol=1e-6)
  np.testing.assert_allclose(image_grad.sum(), 2.0, atol=1e-5)


def test_inverse_warp_under_tf_function_unknown_batch_and_gradients():
  spec = tf.TensorSpec

  @tf.function(
      input_signature=[
          spec([None, H, W, 3], tf.float32),
          spec([None, H, W, 1], tf.float32),
          spec([None, 3, 3], tf.float32),
          spec([None, 3, 3], tf.float32),
          spec([None, 3], tf.float32),
      ]
  )
  def fn(image, depth, k, rotation, translation):
    with tf.GradientTape() as tape:
      tape.watch([depth, translation])
      warped, valid = warp.inverse_warp(image, depth, k, rotation, translation)
      total = tf.reduce_sum(warped * valid)
    return warped, tape.gradient(total, [depth, translation])

  image = tf.random.uniform([3, H, W, 3], seed=4)
  warped, grads = fn(
      image,
      tf.fill([3, H, W, 1], 3.0),
      _intrinsics(3),
      tf.eye(3, batch_shape=[3]),
      tf.constant([[0.1, 0.05, 0.0]] * 3),
  )
  assert warped.shape == (3, H, W, 3)
  for grad in grads:
    assert np.all(np.isfinite(grad.numpy()))
    assert np.any(grad.numpy() != 0.0)
