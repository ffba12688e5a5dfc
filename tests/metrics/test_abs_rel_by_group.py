"""abs_rel_by_group: per-group Abs Rel with DepthMetrics' scaling, and sums that add up."""

import numpy as np
import pytest

from taskology_tf.metrics.depth import abs_rel_by_group
from taskology_tf.metrics.depth import DepthMetrics


def test_hand_golden_with_median_scaling():
  # One 1x4 image, gt (1, 2, 4, 100): 100 m >= max_depth 80 is invalid (sky), so the valid gt is
  # (1, 2, 4), median 2. pred (2, 2, 2, 5): valid pred (2, 2, 2), median 2, scale 2 / 2 = 1.
  # Relative errors |g - p| / g: (1, 0, 0.5). Groups (0, 1, 1, 1): group 0 holds 1 -> 1.0,
  # group 1 holds (0, 0.5) -> 0.25; group 2 is empty -> nan. Shares 1/3, 2/3, 0.
  gt = np.array([1.0, 2.0, 4.0, 100.0]).reshape(1, 1, 4, 1)
  pred = np.array([2.0, 2.0, 2.0, 5.0]).reshape(1, 1, 4, 1)
  groups = np.array([0, 1, 1, 1]).reshape(1, 1, 4)
  out = abs_rel_by_group(gt, pred, groups, 3, median_scaling=True)
  np.testing.assert_allclose(out['abs_rel'][:2], [1.0, 0.25])
  assert np.isnan(out['abs_rel'][2])
  np.testing.assert_allclose(out['share'], [1 / 3, 2 / 3, 0.0])
  np.testing.assert_array_equal(out['pixels'], [1, 2, 0])


def test_shares_times_group_errors_sum_to_depth_metrics():
  rng = np.random.default_rng(0)
  gt = rng.uniform(0.5, 100.0, (3, 6, 8, 1))
  pred = gt * rng.uniform(0.5, 2.0, gt.shape) * np.array([1.0, 3.0, 0.2]).reshape(3, 1, 1, 1)
  groups = rng.integers(0, 4, (3, 6, 8, 1))
  for scaling in (False, True):
    metrics = DepthMetrics(median_scaling=scaling)
    metrics.update(gt, pred)
    out = abs_rel_by_group(gt, pred, groups, 4, median_scaling=scaling)
    total = np.nansum(out['share'] * out['abs_rel'])
    assert total == pytest.approx(metrics.result()['abs_rel'], rel=1e-12)
    assert out['pixels'].sum() == metrics.result()['num_pixels']


def test_bad_groups_are_named():
  gt = np.ones((1, 2, 2, 1))
  with pytest.raises(ValueError, match=r'groups must lie in \[0, 2\), got \[0, 5\]'):
    abs_rel_by_group(gt, gt, np.array([[[0, 5], [1, 1]]]), 2)
  with pytest.raises(ValueError, match='must have one shape'):
    abs_rel_by_group(gt, gt, np.zeros((1, 3, 2)), 2)
