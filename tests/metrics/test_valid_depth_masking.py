"""Table 3 metrics and supervised losses ignore ScanNet's holes (depth 0, all-zero normals).

Goldens are hand-derived on tiny batches with holes; batches without holes (the synthetic
world's case) give what the former, unmasked-by-holes formulas gave.
"""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.metrics.depth import DepthMetrics
from taskology_tf.metrics.normals import NormalsMetrics
from taskology_tf.tasks.depth import DepthTask
from taskology_tf.tasks.dfv_depth import DfvDepthTask
from taskology_tf.tasks.dfv_normals import DfvNormalsTask
from taskology_tf.tasks.normals import NormalsTask

LN2 = np.log(2.0)
DEPTH_TASKS = [lambda: DepthTask(2, 2), lambda: DfvDepthTask(2, 2)]
NORMALS_TASKS = [lambda: NormalsTask(2, 3), lambda: DfvNormalsTask(2, 3)]


def _depth_batch():
  # gt [[2, 0], [4, 1]] with a hole (0) top right; pred [[1, 5], [4, 2]].
  # Valid pairs (g, p): (2, 1), (4, 4), (1, 2).
  gt = tf.constant([[[[2.0], [0.0]], [[4.0], [1.0]]]])
  pred = tf.constant([[[[1.0], [5.0]], [[4.0], [2.0]]]])
  return gt, pred


@pytest.mark.parametrize('make_task', DEPTH_TASKS, ids=['DepthTask', 'DfvDepthTask'])
def test_depth_loss_and_metrics_skip_holes(make_task):
  task = make_task()
  gt, pred = _depth_batch()
  with tf.GradientTape() as tape:
    tape.watch(pred)
    loss, metrics = task.supervised_loss({'depth': gt}, {'depth': pred})
  # log-L1: (|log 1 - log 2| + 0 + |log 2 - log 1|) / 3 = 2 ln 2 / 3.
  assert float(loss) == pytest.approx(2 * LN2 / 3, rel=1e-6)
  # Abs Rel: (1/2 + 0 + 1/1) / 3 = 0.5.
  assert float(metrics['abs_rel']) == pytest.approx(0.5, rel=1e-6)
  grad = tape.gradient(loss, pred).numpy()
  assert np.isfinite(grad).all() and grad[0, 0, 1, 0] == 0.0  # The hole gets no gradient.
  evaluator = task.new_metrics()
  evaluator.update({'depth': gt}, {'depth': pred})
  result = evaluator.result()
  assert result['num_pixels'] == 3
  assert result['abs_rel'] == pytest.approx(0.5)
  assert result['sq_rel'] == pytest.approx((1 / 2 + 0 + 1 / 1) / 3)  # (g - p)^2 / g
  assert result['rmse'] == pytest.approx(np.sqrt(2 / 3))  # sqrt((1 + 0 + 1) / 3)
  assert result['rmse_log'] == pytest.approx(LN2 * np.sqrt(2 / 3))
  # max(g/p, p/g) = 2, 1, 2: only the exact pixel is below 1.25, 1.25^2 = 1.5625 and
  # 1.25^3 = 1.953 (both < 2).
  assert result['delta1'] == pytest.approx(1 / 3)
  assert result['delta2'] == pytest.approx(1 / 3)
  assert result['delta3'] == pytest.approx(1 / 3)


def test_depth_relative_l1_skips_holes():
  gt, pred = _depth_batch()
  loss, _ = DepthTask(2, 2, loss='l1').supervised_loss({'depth': gt}, {'depth': pred})
  assert float(loss) == pytest.approx(0.5, rel=1e-6)  # |d - d*| / d*: (1/2 + 0 + 1) / 3


def _normals_batch():
  """A 2x3 frame: three scored pixels (angles 0, 60, 20 degrees) and three holes."""
  s60, c20, s20 = np.sin(np.radians(60)), np.cos(np.radians(20)), np.sin(np.radians(20))
  gt = [
      [[0, 0, -1], [0, 0, 0], [0, 0, -1]],  # p1: all-zero gt normal (invalid)
      [[1, 0, 0], [0, 1, 0], [0, 0, -1]],
  ]
  pred = [
      [[0, 0, -1], [0, 0, -1], [1, 0, 0]],  # p0: 0 deg; p2: 90 deg but its depth is a hole
      [[0.5, 0, -s60], [s20, c20, 0], [0, 0, -1]],  # p3: 60 deg; p4: 20 deg; p5: 0 deg, sky
  ]
  depth = [[[2.0], [2.0], [0.0]], [[3.0], [4.0], [100.0]]]  # p2 hole (0); p5 >= max_depth 80
  return {
      'normals': tf.constant([gt], tf.float32),
      'depth': tf.constant([depth], tf.float32),
  }, {'normals': tf.constant([pred], tf.float32)}


@pytest.mark.parametrize('make_task', NORMALS_TASKS, ids=['NormalsTask', 'DfvNormalsTask'])
def test_normals_loss_and_metrics_skip_holes(make_task):
  task = make_task()
  batch, outputs = _normals_batch()
  np.testing.assert_array_equal(task.valid_mask(batch).numpy()[0, ..., 0], [[1, 0, 0], [1, 1, 0]])
  loss, metrics = task.supervised_loss(batch, outputs)
  # 1 - cos over p0, p3, p4: (0 + (1 - 0.5) + (1 - cos 20)) / 3.
  assert float(loss) == pytest.approx((0.5 + 1 - np.cos(np.radians(20))) / 3, rel=1e-5)
  assert float(metrics['mean_angle']) == pytest.approx(80 / 3, abs=1e-3)
  evaluator = task.new_metrics()
  evaluator.update(batch, outputs)
  result = evaluator.result()
  assert result['num_pixels'] == 3
  assert result['mean_angle'] == pytest.approx(80 / 3, abs=1e-4)
  assert result['median_angle'] == pytest.approx(20.0, abs=0.01)  # the middle of 0, 20, 60
  assert result['within_11_25'] == pytest.approx(100 / 3)  # 0
  assert result['within_22_5'] == pytest.approx(200 / 3)  # 0, 20
  assert result['within_30'] == pytest.approx(200 / 3)


def test_normals_metric_drops_zero_ground_truth_without_a_mask():
  batch, outputs = _normals_batch()
  metrics = NormalsMetrics()
  metrics.update(batch['normals'], outputs['normals'])
  # Only p1 (zero gt) is dropped: angles 0, 90, 60, 20, 0 -> mean 34, median 20.
  result = metrics.result()
  assert result['num_pixels'] == 5
  assert result['mean_angle'] == pytest.approx(34.0, abs=1e-4)
  assert result['median_angle'] == pytest.approx(20.0, abs=0.01)
  with pytest.raises(ValueError, match='mask shape'):
    metrics.update(batch['normals'], outputs['normals'], np.ones([1, 2, 2], bool))


def _former_normals(batch, outputs, max_depth):
  """The formulas before hole masking: mask = depth < max_depth, nothing else."""
  gt, pred = batch['normals'].numpy(), outputs['normals'].numpy()
  mask = batch['depth'].numpy()[..., 0] < max_depth
  cos = np.sum(gt * pred, axis=-1)
  loss = np.sum((1 - cos) * mask) / max(mask.sum(), 1)
  angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))[mask]
  return loss, angle


@pytest.mark.parametrize('make_task', NORMALS_TASKS, ids=['NormalsTask', 'DfvNormalsTask'])
def test_no_holes_gives_the_former_results(make_task):
  # Unit normals everywhere and depth in (0.5, 120): sky-like pixels beyond max_depth but no
  # hole, as in the synthetic world. Loss and metrics must be exactly the former ones.
  rng = np.random.default_rng(0)
  unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
  gt = tf.constant(unit(rng.normal(size=(2, 4, 5, 3))), tf.float32)
  pred = tf.constant(unit(rng.normal(size=(2, 4, 5, 3))), tf.float32)
  depth = tf.constant(rng.uniform(0.5, 120.0, (2, 4, 5, 1)), tf.float32)
  batch, outputs = {'normals': gt, 'depth': depth}, {'normals': pred}
  task = make_task()
  former_loss, angle = _former_normals(batch, outputs, task.max_depth)
  loss, metrics = task.supervised_loss(batch, outputs)
  assert float(loss) == pytest.approx(former_loss, rel=1e-5)
  assert float(metrics['mean_angle']) == pytest.approx(angle.mean(), rel=1e-4)
  evaluator = task.new_metrics()
  evaluator.update(batch, outputs)
  result = evaluator.result()
  assert result['num_pixels'] == angle.size
  assert result['mean_angle'] == pytest.approx(angle.mean(), rel=1e-6)  # float32 vs float64
  assert result['within_22_5'] == pytest.approx(100 * np.mean(angle < 22.5))
  # Without depth in the batch every pixel counts, as before.
  loss, _ = task.supervised_loss({'normals': gt}, outputs)
  assert float(loss) == pytest.approx(float(tf.reduce_mean(1 - tf.reduce_sum(gt * pred, -1))))


def test_depth_without_holes_matches_the_unmasked_formulas():
  # Depth in (0.5, 60) < max_depth 80: every pixel counts; Abs Rel and RMSE are plain means.
  rng = np.random.default_rng(1)
  gt = rng.uniform(0.5, 60.0, (2, 4, 5, 1)).astype(np.float32)
  pred = rng.uniform(0.5, 60.0, (2, 4, 5, 1)).astype(np.float32)
  loss, _ = DfvDepthTask(4, 5).supervised_loss({'depth': tf.constant(gt)}, {'depth': pred})
  assert float(loss) == pytest.approx(np.mean(np.abs(np.log(pred) - np.log(gt))), rel=1e-5)
  metrics = DepthMetrics()
  metrics.update(gt, pred)
  g, p = gt.astype(np.float64), pred.astype(np.float64)
  assert metrics.result()['abs_rel'] == pytest.approx(np.mean(np.abs(g - p) / g))
  assert metrics.result()['rmse'] == pytest.approx(np.sqrt(np.mean((g - p) ** 2)))


def test_synthetic_world_has_no_holes(tiny_world):
  # The synthetic world never renders depth 0 or a zero normal, so the hole mask there is the
  # former `depth < max_depth` and its results cannot change.
  from taskology_tf.datasets.loader import load_synthetic_world  # pylint: disable=g-import-not-at-top

  clips = load_synthetic_world(
      domain='real', split='test', data_dir=tiny_world, height=16, width=24
  )
  task = NormalsTask(16, 24)
  for clip in clips.take(2):
    assert float(tf.reduce_min(clip['depth'])) > 0.0
    mask = task.valid_mask({'normals': clip['normals'], 'depth': clip['depth']})
    np.testing.assert_array_equal(
        mask.numpy(), tf.cast(clip['depth'] < task.max_depth, tf.float32).numpy()
    )
