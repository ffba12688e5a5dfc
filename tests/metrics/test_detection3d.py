"""Waymo-style AP/APH on hand-computed cases (derivations in the comments)."""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.metrics import detection3d as metrics

CAR = [4.0, 2.0, 1.5]


def _box(x, y, heading=0.0):
  return [x, y, 0.75, *CAR, heading]


def _frame(preds, scores, gts, points=None):
  return dict(
      pred_boxes=np.array(preds, np.float32).reshape(-1, 7),
      pred_scores=np.array(scores, np.float32),
      gt_boxes=np.array(gts, np.float32).reshape(-1, 7),
      gt_num_points=np.array(points if points is not None else [100] * len(gts)),
  )


def test_perfect_detections():
  gts = [_box(0, 0), _box(10, 5, 1.0)]
  out = metrics.average_precision([_frame(gts, [0.9, 0.8], gts), _frame([], [], [_box(3, 3)])])
  # Frame 2's box is missed: precision 1 up to recall 2/3 (the highest recall; nothing is
  # added above it), filled down to r = 0 at precision 1: trapezoids sum to 2/3.
  assert out['LEVEL_1/AP'] == pytest.approx(2 / 3)
  out = metrics.average_precision([_frame(gts, [0.9, 0.8], gts)])
  for v in out.values():
    assert v == pytest.approx(1.0)


def test_false_positive_ranked_first():
  # Cutoffs <= 0.7: TP 2 FP 1 (p 2/3, r 1); (0.7, 0.8]: TP 1 FP 1 (p 1/2, r 1/2); above: p 0 at
  # r 0 (precision 1 there, as the official ops set it). The envelope is 2/3 at r = 1/2 and
  # r = 1 and the filled points between; r = 0 takes its neighbour's 2/3: AP = 2/3.
  gts = [_box(0, 0), _box(10, 0)]
  f = _frame([_box(-10, 0), gts[0], gts[1]], [0.9, 0.8, 0.7], gts)
  assert metrics.average_precision([f])['LEVEL_1/AP'] == pytest.approx(2 / 3)


def test_duplicates_are_false_positives():
  # Preds A 0.9, A' 0.8, B 0.7 for boxes A, B. Cutoffs <= 0.7: TP 2 FP 1 (p 2/3, r 1);
  # (0.7, 0.8]: TP 1 FP 1 (p 1/2, r 1/2); (0.8, 0.9]: TP 1 FP 0 (p 1, r 1/2).
  # Envelope 2/3 from r = 1 down to the filled point 0.55, then 1 from r = 1/2 to 0:
  # 0.45 * 2/3 + 0.05 * (2/3 + 1) / 2 + 1/2 * 1 = 0.3 + 1/24 + 0.5.
  a, b = _box(0, 0), _box(10, 0)
  dup = _box(0.05, 0.0)
  f = _frame([a, dup, b], [0.9, 0.8, 0.7], [a, b])
  assert metrics.average_precision([f])['LEVEL_1/AP'] == pytest.approx(0.3 + 1 / 24 + 0.5)


def test_heading_off_by_pi_is_a_true_positive_with_aph_zero():
  gt = _box(0, 0, 0.3)
  flipped = _box(0, 0, 0.3 + np.pi)
  out = metrics.average_precision([_frame([flipped], [0.9], [gt])])
  assert out['LEVEL_1/AP'] == pytest.approx(1.0)
  assert out['LEVEL_1/APH'] == pytest.approx(0.0)
  # A quarter turn off: weight 1 - (pi/2)/pi = 1/2 (and a 90-degree turn of a 4x2 box still
  # overlaps 2x2 / (8 + 8 - 4) = 1/3 < 0.7, so use a small error instead: 0.1 pi -> 0.9).
  # The weight enters the precision (0.9 / 1); the recall stays 1 (the official ops' APH recall
  # counts true positives): precision 0.9 at every recall, APH = 0.9.
  tilted = _box(0, 0, 0.3 + 0.1 * np.pi)
  assert metrics.heading_accuracy(0.3 + 0.5 * np.pi, 0.3) == pytest.approx(0.5)
  out = metrics.average_precision([_frame([tilted], [0.9], [gt])], iou_threshold=0.5)
  assert out['LEVEL_1/APH'] == pytest.approx(0.9, abs=1e-5)


def test_difficulty_levels():
  # Box B has 3 points (LEVEL_2). Detected A only: LEVEL_1 AP 1; LEVEL_2 recall 1/2 at precision
  # 1: AP 1/2. Detecting B as well is ignored at LEVEL_1 (no false positive) and counts at L2.
  a, b = _box(0, 0), _box(10, 0)
  only_a = _frame([a], [0.9], [a, b], points=[50, 3])
  both = _frame([a, b], [0.9, 0.8], [a, b], points=[50, 3])
  out = metrics.average_precision([only_a])
  assert out['LEVEL_1/AP'] == pytest.approx(1.0) and out['LEVEL_2/AP'] == pytest.approx(0.5)
  out = metrics.average_precision([both])
  assert out['LEVEL_1/AP'] == pytest.approx(1.0) and out['LEVEL_2/AP'] == pytest.approx(1.0)
  np.testing.assert_array_equal(metrics.difficulty([0, 1, 5, 6]), [0, 2, 2, 1])


def test_bev_iou_ignores_height():
  gt = _box(0, 0)
  high = list(gt)
  high[2] += 1.0  # 1 m higher: 3D IoU 0.5 / 1.5 * ... < 0.7, BEV IoU 1
  f = _frame([high], [0.9], [gt])
  assert metrics.average_precision([f], bev=True)['LEVEL_1/AP'] == pytest.approx(1.0)
  assert metrics.average_precision([f], bev=False)['LEVEL_1/AP'] == pytest.approx(0.0)


def test_level_1_counts_a_match_to_a_level_2_box_but_not_its_miss():
  # As the official ops (the rule tools/compare_waymo_metrics.py found): box A (LEVEL_1, missed),
  # box B (3 points: LEVEL_2, hit exactly at score 0.9). LEVEL_1: TP 1 (the match to B counts),
  # FN 1 (A), FP 0 -> precision 1 up to recall 1/2: AP 1/2. LEVEL_2 the same counts: AP 1/2.
  gt = np.array([[10, 0, 1, 4.5, 2, 1.6, 0], [20, 5, 1, 4.5, 2, 1.6, 0]], np.float32)
  f = dict(pred_boxes=gt[1:], pred_scores=np.array([0.9]), gt_boxes=gt,
           gt_num_points=np.array([100, 3]))  # fmt: skip
  out = metrics.average_precision([f])
  assert out['LEVEL_1/AP'] == pytest.approx(0.5) and out['LEVEL_2/AP'] == pytest.approx(0.5)


def _exact_two_car_scene(task_class=None):
  """A small detection task, and a batch with detector outputs that encode two of its three
  ground-truth cars exactly (the third lies outside the BEV grid).

  Returns:
    (task, batch, outputs, cars [3, 7]).
  """
  from taskology_tf.geometry import box_coder
  from taskology_tf.geometry import pillars as pillars_lib
  from taskology_tf.tasks import detection3d as task_lib

  task_class = task_class or task_lib.Detection3DTask
  grid = pillars_lib.PillarGrid(rows=8, cols=8, cell_size=3.0, x_min=-12.0, y_min=-12.0,
                                max_pillars=32, max_points=4)  # fmt: skip
  anchors = box_coder.AnchorConfig(size=(4.3, 1.85, 1.55), z=0.78)
  task = task_class(grid, anchors, num_frames=1, pre_nms_top_k=50)
  anchor_grid = task.anchors.numpy()  # [8, 8, 2, 7]
  # Two cars at anchor (row 1, col 2, heading 0) and (row 5, col 6, heading 90 deg), offset from
  # the anchors so the residuals are not zero; a third car at x = 30 m, outside [-12, 12).
  cars = np.array([[anchor_grid[1, 2, 0, 0] + 0.4, anchor_grid[1, 2, 0, 1] - 0.3, 0.8, 4.5,
                    1.9, 1.5, 0.1],
                   [anchor_grid[5, 6, 1, 0] - 0.2, anchor_grid[5, 6, 1, 1] + 0.5, 0.7, 4.0,
                    1.8, 1.6, np.pi / 2 - 0.2],
                   [30.0, 0.0, 0.8, 4.2, 1.8, 1.5, 0.0]], np.float32)  # fmt: skip
  logits = np.full([1, 8, 8, 1, 2], -10.0, np.float32)
  residuals = np.zeros([1, 8, 8, 1, 2, 7], np.float32)
  for (r, c, a), car in zip(((1, 2, 0), (5, 6, 1)), cars[:2]):
    logits[0, r, c, 0, a] = 5.0
    residuals[0, r, c, 0, a] = box_coder.encode(car[None], anchor_grid[r, c, a][None]).numpy()[0]
  batch = {
      'gt_boxes': tf.constant(cars[None, None]),
      'gt_valid': tf.ones([1, 1, 3], tf.bool),
      'gt_num_points': tf.constant([[[50, 50, 50]]], tf.int32),
  }
  return task, batch, {'logits': tf.constant(logits), 'residuals': tf.constant(residuals)}, cars


def test_evaluator_round_trip_and_range():
  """Detector outputs that encode the ground truth exactly score AP = APH = 1 through the whole
  evaluation path (decode -> rotated NMS -> matching); a box outside the BEV grid is outside
  the detector's range and is not scored, so it does not halve the recall."""
  task, batch, outputs, cars = _exact_two_car_scene()
  evaluator = metrics.DetectionEvaluator(task)
  evaluator.update(batch, outputs)
  assert len(evaluator.frames[0]['gt_boxes']) == 2  # the out-of-range car is not scored
  np.testing.assert_allclose(np.sort(evaluator.frames[0]['pred_boxes'][:, 0]),
                             np.sort(cars[:2, 0]), atol=1e-4)  # fmt: skip
  result = evaluator.result()
  for key in ('3d_LEVEL_1_AP', '3d_LEVEL_1_APH', 'bev_LEVEL_2_AP', 'bev_LEVEL_2_APH',
              '3d_LEVEL_1_AP_iou50', 'bev_LEVEL_2_APH_iou50'):  # fmt: skip
    assert result[key] == pytest.approx(1.0, abs=1e-4), key


def test_evaluator_traces_detect_once_per_task_across_passes():
  """The trainer makes a new evaluator every evaluation pass (Task.new_metrics); they share the
  task's traced `detect`, so a second pass over the same batch shape does not retrace it. The
  counter is Python code inside the traced function: it runs when the function is traced, not
  when the graph runs. The scores are those of the round-trip test (AP = APH = 1) in both
  passes, and the detections equal eager `detect`'s."""
  from taskology_tf.tasks import detection3d as task_lib

  class CountingDetection3DTask(task_lib.Detection3DTask):
    traces = 0

    def detect(self, outputs, frame=0, sparse=True):
      self.traces += 1
      return super().detect(outputs, frame=frame, sparse=sparse)

  task, batch, outputs, _ = _exact_two_car_scene(CountingDetection3DTask)
  results = []
  for _ in range(2):
    evaluator = task.new_metrics()
    evaluator.update(batch, outputs)
    results.append(evaluator.result())
  assert task.traces == 1
  assert results[0] == results[1]
  assert results[0]['3d_LEVEL_1_APH'] == pytest.approx(1.0, abs=1e-4)
  traced = evaluator.frames[0]
  boxes, scores, valid = (t.numpy() for t in task.detect(outputs, frame=0))
  assert task.traces == 2  # the eager call above runs the Python once more
  np.testing.assert_allclose(traced['pred_boxes'], boxes[0][valid[0]], atol=1e-5)
  np.testing.assert_allclose(traced['pred_scores'], scores[0][valid[0]], atol=1e-6)


def test_sparse_curve_is_filled_conservatively():
  # Official integration (metrics_utils.cc, 1.6.7): between two recalls more than 0.05 apart,
  # points every 0.05 below the higher recall take its envelope. Points (r 1, p 1/2) and
  # (r 1/10, p 1): fill 0.95 .. 0.15 at 1/2, trapezoid (0.15, 1/2) -> (0.1, 1) = 0.05 * 3/4,
  # then 0.1 at 1 down to r = 0: AP = 0.85 * 1/2 + 0.0375 + 0.1. The plain envelope sum would
  # give 0.1 * 1 + 0.9 * 1/2 = 0.55.
  ap = metrics._ap(np.array([0.5, 1.0]), np.array([1.0, 0.1]))  # pylint: disable=protected-access
  assert ap == pytest.approx(0.85 * 0.5 + 0.0375 + 0.1)
