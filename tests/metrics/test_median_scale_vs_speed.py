"""metrics.depth.median_scale_vs_speed: hand-built depths whose scale does or does not follow
the speed."""

import numpy as np
import pytest

from taskology_tf.metrics.depth import median_scale_vs_speed


def _gt(n):
  rng = np.random.default_rng(0)
  return rng.uniform(2.0, 40.0, (n, 6, 8, 1))


def test_depth_scaled_by_one_over_speed_has_slope_one():
  # pred = gt / speed: s = median(gt) / median(gt / v) = v, so log s = log v exactly: slope 1,
  # corr 1, and the spread of log s is that of log v.
  gt = _gt(4)
  speed = np.array([0.4, 0.8, 1.0, 1.3])
  out = median_scale_vs_speed(gt, gt / speed[:, None, None, None], speed)
  assert out['slope'] == pytest.approx(1.0)
  assert out['corr'] == pytest.approx(1.0)
  assert out['std_log_scale'] == pytest.approx(np.std(np.log(speed)))
  assert out['images'] == 4


def test_one_scale_for_all_images_has_slope_zero():
  # pred = gt / 3 for every image: s = 3 everywhere, log s constant: slope 0, no spread.
  gt = _gt(3)
  out = median_scale_vs_speed(gt, gt / 3.0, [0.5, 0.9, 1.2])
  assert out['slope'] == pytest.approx(0.0, abs=1e-12)
  assert out['std_log_scale'] == pytest.approx(0.0, abs=1e-12)
  assert out['corr'] == 0.0


def test_half_absorbed_speed_and_invalid_pixels():
  # pred = gt / sqrt(v): log s = 0.5 log v, slope 0.5. Pixels beyond max_depth (100 m) are left
  # out of the medians; an image with none valid is skipped.
  gt = _gt(4)
  gt[0, 0] = 100.0
  gt[3] = 90.0
  speed = np.array([0.5, 1.0, 2.0, 1.5])
  pred = gt / np.sqrt(speed)[:, None, None, None]
  pred[0, 0] = 1e6  # Would move the median if these pixels counted.
  out = median_scale_vs_speed(gt, pred, speed)
  assert out['slope'] == pytest.approx(0.5) and out['images'] == 3


def test_names_mismatched_shapes_and_too_few_images():
  gt = _gt(2)
  with pytest.raises(ValueError, match=r'speed \(3,\) one value per image'):
    median_scale_vs_speed(gt, gt, [1.0, 2.0, 3.0])
  with pytest.raises(ValueError, match='different speeds, got 2 image'):
    median_scale_vs_speed(gt, gt, [1.0, 1.0])
