"""Tests for taskology_tf.geometry.ssim."""

import numpy as np
import tensorflow as tf

from taskology_tf.geometry import ssim


def test_identical_images_give_one():
  x = tf.random.uniform([2, 8, 9, 3], seed=0)
  result = ssim.ssim(x, x).numpy()
  assert result.shape == (2, 8, 9, 3)
  np.testing.assert_allclose(result, 1.0, atol=1e-5)


def test_constant_images_closed_form():
  # Constant windows have zero (co)variances, so SSIM reduces to the
  # luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) with
  # C1 = 1e-4 for max_val = 1: (0.24 + 1e-4) / (0.40 + 1e-4). The float32
  # variances E[x^2] - mu^2 leave ~1e-8 residuals against C2 = 9e-4, hence
  # the 1e-4 relative tolerance.
  x = tf.fill([1, 4, 4, 1], 0.2)
  y = tf.fill([1, 4, 4, 1], 0.6)
  np.testing.assert_allclose(ssim.ssim(x, y).numpy(), (0.24 + 1e-4) / (0.40 + 1e-4), rtol=1e-4)


def test_ssim_decreases_with_noise_and_is_symmetric():
  x = tf.random.uniform([1, 16, 16, 1], 0.2, 0.8, seed=1)
  noise = tf.random.normal([1, 16, 16, 1], seed=2)
  means = [tf.reduce_mean(ssim.ssim(x, x + s * noise)).numpy() for s in (0.0, 0.02, 0.1, 0.3)]
  assert all(a > b for a, b in zip(means, means[1:])), means
  y = x + 0.1 * noise
  np.testing.assert_allclose(ssim.ssim(x, y).numpy(), ssim.ssim(y, x).numpy(), atol=1e-6)
