"""Tests of 3D boxes: corners, points in boxes, rotated IoU against brute-force clipping, NMS."""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.geometry import boxes as boxes_lib


def _clip(subject, clipper):
  """Sutherland-Hodgman: convex polygon `subject` clipped by convex ccw polygon `clipper`."""
  out = list(subject)
  for i in range(len(clipper)):
    a, b = clipper[i], clipper[(i + 1) % len(clipper)]
    inp, out = out, []
    if not inp:
      break

    def side(p, a=a, b=b):
      return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])

    for j in range(len(inp)):
      p, q = inp[j], inp[(j + 1) % len(inp)]
      sp, sq = side(p), side(q)
      if sp >= 0:
        out.append(p)
      if (sp >= 0) != (sq >= 0):
        t = sp / (sp - sq)
        out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
  return out


def _area(poly):
  if len(poly) < 3:
    return 0.0
  s = 0.0
  for i in range(len(poly)):
    s += poly[i][0] * poly[(i + 1) % len(poly)][1] - poly[(i + 1) % len(poly)][0] * poly[i][1]
  return abs(s) / 2


def _brute_iou(a, b, ca, cb, bev):
  inter = _area(_clip([tuple(p) for p in ca], [tuple(p) for p in cb]))
  if bev:
    return inter / (a[3] * a[4] + b[3] * b[4] - inter)
  dz = max(0.0, min(a[2] + a[5] / 2, b[2] + b[5] / 2) - max(a[2] - a[5] / 2, b[2] - b[5] / 2))
  inter *= dz
  return inter / (a[3] * a[4] * a[5] + b[3] * b[4] * b[5] - inter)


def _random_boxes(rng, n):
  return np.stack(
      [
          rng.uniform(-3, 3, n),
          rng.uniform(-3, 3, n),
          rng.uniform(-0.5, 0.5, n),
          rng.uniform(1, 5, n),
          rng.uniform(0.5, 3, n),
          rng.uniform(0.5, 2, n),
          rng.uniform(-np.pi, np.pi, n),
      ],
      -1,
  ).astype(np.float32)


def test_corners_of_axis_aligned_box():
  # A 4 x 2 x 1 box at (1, 2, 3) facing +x: footprint x in [-1, 3], y in [1, 3], ccw from
  # front-left (3, 3); z in [2.5, 3.5].
  box = np.array([[1, 2, 3, 4, 2, 1, 0]], np.float32)
  c = boxes_lib.corners(box).numpy()[0]
  np.testing.assert_allclose(c[:4, :2], [[3, 3], [-1, 3], [-1, 1], [3, 1]], atol=1e-6)
  np.testing.assert_allclose(c[:4, 2], 2.5)
  np.testing.assert_allclose(c[4:, 2], 3.5)
  # Heading pi/2: the length now runs along y; front-left corner is at (x - w/2, y + l/2).
  box90 = np.array([[0, 0, 0, 4, 2, 1, np.pi / 2]], np.float32)
  np.testing.assert_allclose(boxes_lib.bev_corners(box90).numpy()[0, 0], [-1, 2], atol=1e-6)


def test_points_in_boxes():
  # A 4 x 2 x 2 box rotated by 90 degrees spans x in [-1, 1], y in [-2, 2], z in [-1, 1].
  box = np.array([[0, 0, 0, 4, 2, 2, np.pi / 2]], np.float32)
  pts = np.array(
      [[0.9, 1.9, 0.0], [1.5, 0.0, 0.0], [0.0, 0.0, 1.5], [-0.5, -1.5, -0.9]], np.float32
  )
  np.testing.assert_array_equal(boxes_lib.points_in_boxes(pts, box).numpy()[:, 0], [1, 0, 0, 1])


def test_rotated_iou_matches_brute_force_clipping():
  rng = np.random.default_rng(0)
  a, b = _random_boxes(rng, 40), _random_boxes(rng, 30)
  for bev in (True, False):
    got = boxes_lib.pairwise_iou(a, b, bev=bev).numpy()
    ca, cb = boxes_lib.bev_corners(a).numpy(), boxes_lib.bev_corners(b).numpy()
    want = np.array(
        [[_brute_iou(x, y, cx, cy, bev) for y, cy in zip(b, cb)] for x, cx in zip(a, ca)]
    )
    np.testing.assert_allclose(got, want, atol=2e-5)
  assert (want > 0.05).mean() > 0.2  # The random scenes do overlap.


def test_iou_analytic_cases():
  a = np.array([[0, 0, 0, 2, 2, 2, 0]], np.float32)
  # Identical boxes: 1. A square rotated by 45 degrees about the same centre: the octagon of
  # area 8 (sqrt 2 - 1) * ... ; for a unit-half-side square, intersection = 8 (sqrt(2) - 1) =
  # 3.3137 of area 4 each, IoU = 3.3137 / (8 - 3.3137).
  rot = np.array([[0, 0, 0, 2, 2, 2, np.pi / 4]], np.float32)
  shifted = np.array([[1, 0, 0.5, 2, 2, 2, 0]], np.float32)  # half the footprint, 3/4 of z
  got = boxes_lib.pairwise_iou(a, np.concatenate([a, rot, shifted]), bev=False).numpy()[0]
  octagon = 8 * (np.sqrt(2) - 1)
  # Shifted: intersection 2 (footprint) * 1.5 (z) = 3; union 8 + 8 - 3 = 13.
  np.testing.assert_allclose(got, [1.0, octagon / (8 - octagon), 3 / 13], atol=1e-5)
  # A heading change of pi is the same footprint.
  flipped = a.copy()
  flipped[0, 6] = np.pi
  np.testing.assert_allclose(boxes_lib.pairwise_iou(a, flipped).numpy(), [[1.0]], atol=1e-5)


def test_nearest_bev_iou_snaps_headings():
  a = np.array([[0, 0, 0, 4, 2, 1, 0]], np.float32)
  b = np.array([[0, 0, 0, 4, 2, 1, np.pi / 2 - 0.1]], np.float32)  # snaps to 90: 2x4 vs 4x2
  # Axis-aligned 4x2 and 2x4 about the same centre: intersection 2x2 = 4, union 12.
  np.testing.assert_allclose(boxes_lib.nearest_bev_iou(a, b).numpy(), [[4 / 12]], atol=1e-6)


def test_rotated_nms_and_xla():
  boxes = np.array(
      [
          [0, 0, 0, 4, 2, 1, 0.0],
          [0.2, 0, 0, 4, 2, 1, 0.05],  # overlaps box 0
          [10, 0, 0, 4, 2, 1, 1.0],
          [10, 0.1, 0, 4, 2, 1, 1.0],  # overlaps box 2
          [-10, 0, 0, 4, 2, 1, 0.0],
      ],
      np.float32,
  )
  scores = np.array([0.9, 0.95, 0.3, 0.1, 0.5], np.float32)
  idx, valid = boxes_lib.rotated_nms(boxes, scores, 0.5, max_outputs=6, pre_nms_top_k=5)
  np.testing.assert_array_equal(idx.numpy(), [1, 4, 2, -1, -1, -1])
  np.testing.assert_array_equal(valid.numpy(), [1, 1, 1, 0, 0, 0])
  f = tf.function(
      lambda b, s: boxes_lib.rotated_nms(b, s, 0.5, max_outputs=2, pre_nms_top_k=4),
      jit_compile=True,
  )
  idx2, valid2 = f(boxes, scores)
  np.testing.assert_array_equal(idx2.numpy(), [1, 4])
  assert valid2.numpy().all()


def test_iou_gradients_finite():
  a = tf.Variable(_random_boxes(np.random.default_rng(1), 5))
  b = _random_boxes(np.random.default_rng(2), 5)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(boxes_lib.pairwise_iou(a, b, bev=False))
  assert np.isfinite(tape.gradient(loss, a).numpy()).all()


@pytest.mark.parametrize('angle', [0.0, 0.3, np.pi])
def test_wrap_angle(angle):
  got = boxes_lib.wrap_angle(tf.constant(angle + 4 * np.pi)).numpy()
  assert -np.pi <= got < np.pi and abs(np.sin(got - angle)) < 1e-5


@pytest.mark.parametrize('bev', [False, True])
def test_sparse_pairwise_iou_equals_dense(bev):
  # Random boxes spread over 20 m (many pairs apart, some overlapping) plus two boxes that only
  # touch corner to corner: the circle test must keep every pair whose footprints can meet.
  rng = np.random.default_rng(5)
  a = _random_boxes(rng, 40) * [4, 4, 1, 1, 1, 1, 1]
  b = np.concatenate(
      [_random_boxes(rng, 30) * [4, 4, 1, 1, 1, 1, 1], a[:5] + [0.3, -0.2, 0.1, 0, 0, 0, 0.4]]
  ).astype(np.float32)
  a = a.astype(np.float32)
  corner = np.array([[0, 0, 0, 2, 2, 1, 0.0], [2, 2, 0, 2, 2, 1, 0.0]], np.float32)
  for x, y in ((a, b), (corner, corner), (a[:0], b)):
    dense = boxes_lib.pairwise_iou(x, y, bev=bev).numpy()
    sparse = boxes_lib.pairwise_iou(x, y, bev=bev, sparse=True).numpy()
    assert sparse.shape == dense.shape
    np.testing.assert_allclose(sparse, dense, atol=1e-6)
  # The random case has both kinds of pairs, so the test exercises the scatter and the zeros.
  dense = boxes_lib.pairwise_iou(a, b, bev=bev).numpy()
  assert 0 < (dense > 0).sum() < dense.size


def test_sparse_rotated_nms_equals_dense():
  rng = np.random.default_rng(6)
  boxes = _random_boxes(rng, 60) * [4, 4, 1, 1, 1, 1, 1]
  near_duplicates = boxes + [0.2, 0.1, 0, 0, 0, 0, 0.05]
  boxes = np.concatenate([boxes, near_duplicates]).astype(np.float32)
  scores = rng.uniform(size=len(boxes)).astype(np.float32)
  # Every regime of the dynamic version: no threshold; a threshold leaving fewer than top-k
  # candidates; more candidates than top-k; fewer kept than output slots; none above it.
  for threshold, top_k, outputs in ((-np.inf, 100, 50), (0.5, 100, 50), (0.2, 30, 8),
                                    (0.9, 120, 40), (2.0, 100, 5)):  # fmt: skip
    dense = boxes_lib.rotated_nms(boxes, scores, 0.5, outputs, top_k, threshold)
    sparse = boxes_lib.rotated_nms(boxes, scores, 0.5, outputs, top_k, threshold, sparse=True)
    np.testing.assert_array_equal(sparse[0].numpy(), dense[0].numpy())
    np.testing.assert_array_equal(sparse[1].numpy(), dense[1].numpy())
    if threshold == -np.inf:
      # Near-duplicates overlap more than 0.5, so at most one of each pair survives.
      assert 0 < dense[1].numpy().sum() < len(boxes)
    if threshold == 2.0:
      assert not sparse[1].numpy().any()
