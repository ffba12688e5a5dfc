"""Per-pixel structural similarity (SSIM) with a 3x3 box window.

SSIM(x, y) = ((2 mu_x mu_y + C1) (2 sigma_xy + C2)) /
             ((mu_x^2 + mu_y^2 + C1) (sigma_x^2 + sigma_y^2 + C2)),
with local means / (co)variances from 3x3 average pooling, as used by the
photometric losses of SfMLearner / monodepth2 / depth-from-video-in-the-wild
(Eq. 3 of Taskology). Reflect padding keeps the output the size of the input.
"""

import tensorflow as tf


def _box3(x):
  """3x3 mean with reflect padding: [B, H, W, C] -> [B, H, W, C]."""
  padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode='REFLECT')
  return tf.nn.avg_pool2d(padded, ksize=3, strides=1, padding='VALID')


def ssim(x, y, max_val=1.0):
  """Per-pixel SSIM map.

  Args:
    x: [B, H, W, C] float32 image with values in [0, max_val] (H, W >= 2).
    y: [B, H, W, C] float32 image, same shape and range.
    max_val: float, dynamic range L; C1 = (0.01 L)^2, C2 = (0.03 L)^2.

  Returns:
    [B, H, W, C] float32 SSIM per pixel and channel, in [-1, 1]; 1 for
    identical windows. Not clipped (losses usually use
    clip((1 - ssim) / 2, 0, 1)).
  """
  x = tf.convert_to_tensor(x, tf.float32)
  y = tf.convert_to_tensor(y, tf.float32)
  c1 = (0.01 * max_val) ** 2
  c2 = (0.03 * max_val) ** 2
  mu_x = _box3(x)
  mu_y = _box3(y)
  sigma_x = _box3(x * x) - mu_x * mu_x
  sigma_y = _box3(y * y) - mu_y * mu_y
  sigma_xy = _box3(x * y) - mu_x * mu_y
  numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * sigma_xy + c2)
  denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_x + sigma_y + c2)
  return numerator / denominator
