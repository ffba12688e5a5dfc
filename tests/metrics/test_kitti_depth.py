"""KITTI Eigen / Cityscapes depth protocol against hand-computed values."""

import math

import numpy as np
import pytest

from taskology_tf.metrics import depth as depth_metrics
from taskology_tf.metrics import kitti_depth


def test_garg_crop_of_a_kitti_sized_map():
  # 375 x 1242: rows int(0.40810811 * 375) = int(153.04) = 153 to int(0.99189189 * 375) =
  # int(371.96) = 371; columns int(0.03594771 * 1242) = int(44.65) = 44 to
  # int(0.96405229 * 1242) = int(1197.35) = 1197.
  mask = kitti_depth.garg_crop_mask(375, 1242)
  rows, cols = np.nonzero(mask)
  assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (153, 371, 44, 1197)
  assert mask.sum() == (371 - 153) * (1197 - 44)


def _one_image(gt, pred, **kwargs):
  m = kitti_depth.EigenDepthMetrics(garg_crop=False, **kwargs)
  m.update(np.array([gt], np.float64), np.array([pred], np.float64))
  return m.result()


def test_metrics_of_one_image_by_hand():
  # gt (2, 4), pred (2.2, 6):
  #   Abs Rel = (0.2 / 2 + 2 / 4) / 2 = (0.1 + 0.5) / 2 = 0.3
  #   Sq Rel = (0.04 / 2 + 4 / 4) / 2 = (0.02 + 1) / 2 = 0.51
  #   RMSE = sqrt((0.04 + 4) / 2) = sqrt(2.02)
  #   RMSE log = sqrt((ln 1.1^2 + ln 1.5^2) / 2)
  #   ratios max(g/p, p/g) = 1.1, 1.5: delta1 (< 1.25) = 1/2, delta2 (< 1.5625) = 1, delta3 = 1.
  r = _one_image([[2.0, 4.0]], [[2.2, 6.0]], median_scaling=False)
  assert r['abs_rel'] == pytest.approx(0.3)
  assert r['sq_rel'] == pytest.approx(0.51)
  assert r['rmse'] == pytest.approx(math.sqrt(2.02))
  assert r['rmse_log'] == pytest.approx(math.sqrt((math.log(1.1) ** 2 + math.log(1.5) ** 2) / 2))
  assert (r['delta1'], r['delta2'], r['delta3']) == (0.5, 1.0, 1.0)
  assert r['num_images'] == 1 and r['median_scaling'] == 0.0


def test_metrics_are_image_means_not_pixel_means():
  # Image A: the image above (Abs Rel 0.3 over 2 pixels); image B: one exact pixel (0).
  # Per-image mean: (0.3 + 0) / 2 = 0.15; a pixel mean would be (0.1 + 0.5 + 0) / 3 = 0.2.
  m = kitti_depth.EigenDepthMetrics(garg_crop=False, median_scaling=False)
  m.update(np.array([[[2.0, 4.0]]]), np.array([[[2.2, 6.0]]]))
  m.update(np.array([[[5.0, 0.0]]]), np.array([[[5.0, 1.0]]]))  # gt 0: no ground truth.
  r = m.result()
  assert r['abs_rel'] == pytest.approx(0.15)
  assert r['delta1'] == pytest.approx((0.5 + 1.0) / 2)
  assert r['num_images'] == 2


def test_one_image_agrees_with_the_pixel_pooled_depth_metrics():
  # For a single image the image mean is the pixel mean: the existing DepthMetrics must agree.
  rng = np.random.default_rng(0)
  gt = rng.uniform(1, 60, (1, 6, 7))
  pred = gt * rng.uniform(0.7, 1.4, gt.shape)
  ours = _one_image(gt[0], pred[0], median_scaling=True)
  pooled = depth_metrics.DepthMetrics(median_scaling=True)
  pooled.update(gt[..., None], pred[..., None])
  theirs = pooled.result()
  for k in kitti_depth.METRIC_NAMES:
    assert ours[k] == pytest.approx(theirs[k], rel=1e-9), k


def test_median_scaling_removes_a_global_scale_and_reports_it():
  # pred = gt / 3: scaled by median(gt) / median(pred) = 3 it is exact (all errors 0, deltas 1);
  # unscaled, Abs Rel = |g - g/3| / g = 2/3 at every pixel.
  gt = [[2.0, 4.0, 8.0]]
  pred = [[2.0 / 3, 4.0 / 3, 8.0 / 3]]
  scaled = _one_image(gt, pred, median_scaling=True)
  assert scaled['abs_rel'] == pytest.approx(0.0, abs=1e-12)
  assert scaled['delta1'] == 1.0
  assert scaled['scale_ratio_median'] == pytest.approx(3.0)
  assert _one_image(gt, pred, median_scaling=False)['abs_rel'] == pytest.approx(2 / 3)


def test_depth_cap_and_clipping():
  # gt 85 m is beyond the 80 m cap (ignored); gt 50 m with pred 100 m: pred clipped to 80 ->
  # Abs Rel = 30 / 50 = 0.6. gt 1e-3 (not > min_depth) is ignored too.
  r = _one_image([[85.0, 50.0, 1e-3]], [[1.0, 100.0, 1.0]], median_scaling=False)
  assert r['abs_rel'] == pytest.approx(0.6)
  # pred below min_depth is clipped to it: gt 1, pred 1e-5 -> 1e-3, Abs Rel = 0.999.
  r = _one_image([[1.0]], [[1e-5]], median_scaling=False)
  assert r['abs_rel'] == pytest.approx(0.999)


def test_prediction_is_resized_to_the_padded_ground_truths_true_size():
  # Ground truth 4 x 6 inside an 8 x 8 zero-padded map; the 2 x 3 prediction is a constant
  # 2 m (bilinear resize keeps it constant); gt 1 m where valid -> Abs Rel = 1 exactly.
  gt = np.zeros((1, 8, 8))
  gt[0, :4, :6] = 1.0
  gt[0, 5, 7] = 50.0  # Padding: must be ignored (outside gt_size).
  m = kitti_depth.EigenDepthMetrics(garg_crop=False, median_scaling=False)
  m.update(gt, np.full((1, 2, 3, 1), 2.0), gt_size=np.array([[4, 6]]))
  assert m.result()['abs_rel'] == pytest.approx(1.0)
  # A zero gt_size (a clip without ground truth) is skipped, not scored.
  m.update(gt, np.full((1, 2, 3, 1), 2.0), gt_size=np.array([[0, 0]]))
  assert m.result()['num_images'] == 1


def test_garg_crop_excludes_points_outside_it():
  # A 100 x 100 map: the crop keeps rows int(40.81) = 40 to int(99.19) = 99 and columns int(3.59) = 3 to int(96.41) = 96. A wrong prediction outside the
  # crop does not count; inside it does.
  gt = np.full((1, 100, 100), 10.0)
  pred = np.full((1, 100, 100), 10.0)
  pred[0, :40] = 20.0  # Above the crop.
  m = kitti_depth.kitti_eigen_metrics(median_scaling=False)
  m.update(gt, pred)
  assert m.result()['abs_rel'] == pytest.approx(0.0)
  pred[0, 50, 50] = 20.0
  m.reset()
  m.update(gt, pred)
  # One wrong pixel of 59 * 93 valid ones, |10 - 20| / 10 = 1 there.
  assert m.result()['abs_rel'] == pytest.approx(1.0 / (59 * 93))


def test_every_table_names_its_protocol_and_scaling():
  scaled = kitti_depth.kitti_eigen_metrics(median_scaling=True)
  unscaled = kitti_depth.cityscapes_metrics(median_scaling=False)
  assert 'median-scaled' in scaled.protocol and 'Garg crop' in scaled.protocol
  assert 'not scaled' in unscaled.protocol and 'no crop' in unscaled.protocol
  scaled.update(np.ones((1, 10, 10)), np.ones((1, 10, 10)))
  table = kitti_depth.format_table(scaled.result(), scaled.protocol)
  assert scaled.protocol in table and 'abs_rel' in table


def test_bad_predictions_and_shapes_are_errors():
  m = kitti_depth.EigenDepthMetrics(garg_crop=False, median_scaling=False)
  with pytest.raises(ValueError, match='positive and finite'):
    m.update(np.ones((1, 2, 2)), np.zeros((1, 2, 2)))
  with pytest.raises(ValueError, match='one batch size'):
    m.update(np.ones((2, 2, 2)), np.ones((1, 2, 2)))
  with pytest.raises(ValueError, match='min_depth'):
    kitti_depth.EigenDepthMetrics(garg_crop=False, median_scaling=False, min_depth=90.0)
