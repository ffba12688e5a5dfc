"""3D boxes in the vehicle frame: corners, points in boxes, rotated BEV / 3D IoU, rotated NMS.

Convention (ARCHITECTURE.md): vehicle frame x forward, y left, z up, metres. A box is
`(x, y, z, l, w, h, heading)`: centre (x, y, z), length l along the box's own x axis, width w
along its y axis, height h along z, and heading the yaw of the box x axis about z in radians,
counter-clockwise seen from above (0 = facing +x).

Everything here is pure TF with static shapes, so it runs in tf.data, in eager mode and inside
XLA-compiled steps. The exact rotated intersection of two boxes' footprints is the convex polygon
whose vertices are (a) the corners of each rectangle inside the other and (b) the crossings of
their edges: at most 4 + 4 + 16 = 24 candidates, kept with a validity mask, sorted by angle about
their mean and summed with the shoelace formula. Invalid slots repeat the first valid vertex,
which adds zero-length edges and hence zero area, so no data-dependent shape is needed.
"""

from typing import Tuple

import numpy as np
import tensorflow as tf

# Box vector layout.
X, Y, Z, L, W, H, HEADING = range(7)
BOX_SIZE = 7

# Corner sign pattern of the BEV footprint, counter-clockwise: front-left, rear-left,
# rear-right, front-right in box coordinates (x forward, y left).
_BEV_SIGNS = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], np.float32)
_EPS = 1e-9


def wrap_angle(angle: tf.Tensor) -> tf.Tensor:
  """Wraps radians to [-pi, pi)."""
  return tf.math.floormod(angle + np.pi, 2.0 * np.pi) - np.pi


def bev_corners(boxes: tf.Tensor) -> tf.Tensor:
  """Footprint corners, counter-clockwise.

  Args:
    boxes: [..., 7] float32 (x, y, z, l, w, h, heading), metres / radians, vehicle frame.

  Returns:
    [..., 4, 2] float32 (x, y) corners in metres, vehicle frame, counter-clockwise.
  """
  boxes = tf.convert_to_tensor(boxes, tf.float32)
  half = 0.5 * tf.stack([boxes[..., L], boxes[..., W]], -1)  # [..., 2]
  local = half[..., tf.newaxis, :] * _BEV_SIGNS  # [..., 4, 2]
  c, s = tf.cos(boxes[..., HEADING]), tf.sin(boxes[..., HEADING])
  c, s = c[..., tf.newaxis], s[..., tf.newaxis]
  x = local[..., 0] * c - local[..., 1] * s + boxes[..., tf.newaxis, X]
  y = local[..., 0] * s + local[..., 1] * c + boxes[..., tf.newaxis, Y]
  return tf.stack([x, y], -1)


def corners(boxes: tf.Tensor) -> tf.Tensor:
  """The 8 corners of 3D boxes: the 4 footprint corners at the bottom, then at the top.

  Args:
    boxes: [..., 7] float32, vehicle frame.

  Returns:
    [..., 8, 3] float32 corners in metres, vehicle frame.
  """
  boxes = tf.convert_to_tensor(boxes, tf.float32)
  xy = bev_corners(boxes)
  zb = boxes[..., Z] - 0.5 * boxes[..., H]
  zt = boxes[..., Z] + 0.5 * boxes[..., H]
  bottom = tf.concat([xy, tf.repeat(zb[..., tf.newaxis, tf.newaxis], 4, -2)], -1)
  top = tf.concat([xy, tf.repeat(zt[..., tf.newaxis, tf.newaxis], 4, -2)], -1)
  return tf.concat([bottom, top], -2)


def points_in_boxes(points: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
  """Which points lie inside which boxes (closed boxes).

  Args:
    points: [N, >=3] float32, (x, y, z, ...) metres, vehicle frame.
    boxes: [M, 7] float32, vehicle frame.

  Returns:
    [N, M] bool.
  """
  points = tf.convert_to_tensor(points, tf.float32)
  boxes = tf.convert_to_tensor(boxes, tf.float32)
  d = points[:, tf.newaxis, :3] - boxes[tf.newaxis, :, :3]  # [N, M, 3]
  c, s = tf.cos(boxes[:, HEADING]), tf.sin(boxes[:, HEADING])
  # Rotate into the box frame by -heading.
  lx = d[..., 0] * c + d[..., 1] * s
  ly = -d[..., 0] * s + d[..., 1] * c
  return (
      (tf.abs(lx) <= 0.5 * boxes[:, L])
      & (tf.abs(ly) <= 0.5 * boxes[:, W])
      & (tf.abs(d[..., 2]) <= 0.5 * boxes[:, H])
  )


def _cross(a, b):
  return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _inside_convex(p, poly):
  """p: [..., P, 2]; poly: [..., 4, 2] counter-clockwise -> [..., P] bool (closed)."""
  edges = tf.roll(poly, -1, axis=-2) - poly  # [..., 4, 2]
  rel = p[..., :, tf.newaxis, :] - poly[..., tf.newaxis, :, :]  # [..., P, 4, 2]
  cross = _cross(edges[..., tf.newaxis, :, :], rel)
  return tf.reduce_all(cross >= -1e-6, axis=-1)


def _edge_intersections(pa, pb):
  """Crossings of the 4 edges of pa with the 4 edges of pb.

  Args:
    pa, pb: [..., 4, 2].

  Returns:
    points [..., 16, 2] and valid [..., 16] bool.
  """
  a0 = pa[..., :, tf.newaxis, :]
  a1 = tf.roll(pa, -1, axis=-2)[..., :, tf.newaxis, :]
  b0 = pb[..., tf.newaxis, :, :]
  b1 = tf.roll(pb, -1, axis=-2)[..., tf.newaxis, :, :]
  da, db = a1 - a0, b1 - b0
  denom = _cross(da, db)  # [..., 4, 4]
  ok = tf.abs(denom) > _EPS
  safe = tf.where(ok, denom, tf.ones_like(denom))
  t = _cross(b0 - a0, db) / safe
  u = _cross(b0 - a0, da) / safe
  valid = ok & (t >= 0.0) & (t <= 1.0) & (u >= 0.0) & (u <= 1.0)
  pts = a0 + t[..., tf.newaxis] * da
  shape = tf.concat([tf.shape(pts)[:-3], [16, 2]], 0)
  return tf.reshape(pts, shape), tf.reshape(valid, shape[:-1])


def _polygon_area(points, valid):
  """Area of the convex hull of the valid points [..., P, 2] (already convex position)."""
  validf = tf.cast(valid, tf.float32)
  count = tf.reduce_sum(validf, -1, keepdims=True)
  centre = tf.reduce_sum(points * validf[..., tf.newaxis], -2) / tf.maximum(count, 1.0)
  rel = points - centre[..., tf.newaxis, :]
  angle = tf.atan2(rel[..., 1], rel[..., 0])
  angle = tf.where(valid, angle, tf.fill(tf.shape(angle), 10.0))  # Invalid slots sort last.
  order = tf.argsort(angle, axis=-1, stable=True)
  sorted_pts = tf.gather(rel, order, batch_dims=len(rel.shape) - 2)
  sorted_valid = tf.gather(valid, order, batch_dims=len(valid.shape) - 1)
  first = sorted_pts[..., :1, :]
  sorted_pts = tf.where(sorted_valid[..., tf.newaxis], sorted_pts, first)
  nxt = tf.roll(sorted_pts, -1, axis=-2)
  area = 0.5 * tf.reduce_sum(_cross(sorted_pts, nxt), -1)
  # Fewer than 3 vertices: no area.
  return tf.where(count[..., 0] >= 3.0, tf.abs(area), tf.zeros_like(area))


def bev_intersection(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
  """Exact footprint intersection areas of broadcast pairs of rotated boxes.

  Args:
    boxes_a: [..., 7] float32, vehicle frame.
    boxes_b: [..., 7] float32, vehicle frame (broadcastable against boxes_a).

  Returns:
    [...] float32 intersection areas in square metres.
  """
  boxes_a = tf.convert_to_tensor(boxes_a, tf.float32)
  boxes_b = tf.convert_to_tensor(boxes_b, tf.float32)
  shape = tf.broadcast_dynamic_shape(tf.shape(boxes_a), tf.shape(boxes_b))
  boxes_a = tf.broadcast_to(boxes_a, shape)
  boxes_b = tf.broadcast_to(boxes_b, shape)
  pa, pb = bev_corners(boxes_a), bev_corners(boxes_b)
  in_b = _inside_convex(pa, pb)
  in_a = _inside_convex(pb, pa)
  crossings, crossing_valid = _edge_intersections(pa, pb)
  points = tf.concat([pa, pb, crossings], -2)
  valid = tf.concat([in_b, in_a, crossing_valid], -1)
  return _polygon_area(points, valid)


def _sparse_bev_intersection(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
  """bev_intersection of [N, 1, 7] x [1, M, 7], exact, computed only where it can be non-zero.

  Two footprints can only intersect when their circumscribed circles do: centre distance
  < (diagonal_a + diagonal_b) / 2. The exact polygon clipping (the costly part, ~100 floats
  per pair) runs on those pairs only and is scattered back; every other pair is exactly 0.
  """
  radius_a = 0.5 * tf.sqrt(tf.square(a[..., L]) + tf.square(a[..., W]))
  radius_b = 0.5 * tf.sqrt(tf.square(b[..., L]) + tf.square(b[..., W]))
  dist = tf.norm(a[..., X : Y + 1] - b[..., X : Y + 1], axis=-1)
  pairs = tf.where(dist < radius_a + radius_b)  # [P, 2] int64 (i, j)
  inter = bev_intersection(tf.gather(a[:, 0], pairs[:, 0]), tf.gather(b[0], pairs[:, 1]))
  shape = tf.stack([tf.shape(a, out_type=tf.int64)[0], tf.shape(b, out_type=tf.int64)[1]])
  return tf.scatter_nd(pairs, inter, shape)


def pairwise_iou(
    boxes_a: tf.Tensor, boxes_b: tf.Tensor, bev: bool = False, sparse: bool = False
) -> tf.Tensor:
  """Rotated IoU of every box in `boxes_a` with every box in `boxes_b`.

  3D IoU: V(a n b) / (V(a) + V(b) - V(a n b)), with V(a n b) the footprint intersection times the
  overlap of the z intervals (boxes rotate about z only). BEV IoU uses footprint areas.

  Args:
    boxes_a: [N, 7] float32, vehicle frame.
    boxes_b: [M, 7] float32, vehicle frame.
    bev: footprint IoU instead of 3D IoU.
    sparse: clip polygons only for pairs whose circumscribed circles overlap (the same values;
      far faster when most pairs are apart, as in NMS over a BEV grid and in evaluation). Its
      shapes are dynamic, so it does not compile under XLA: compiled code keeps the default.

  Returns:
    [N, M] float32 in [0, 1].
  """
  a = tf.convert_to_tensor(boxes_a, tf.float32)[:, tf.newaxis]
  b = tf.convert_to_tensor(boxes_b, tf.float32)[tf.newaxis]
  inter = _sparse_bev_intersection(a, b) if sparse else bev_intersection(a, b)
  area_a, area_b = a[..., L] * a[..., W], b[..., L] * b[..., W]
  if bev:
    union = area_a + area_b - inter
  else:
    top = tf.minimum(a[..., Z] + 0.5 * a[..., H], b[..., Z] + 0.5 * b[..., H])
    bottom = tf.maximum(a[..., Z] - 0.5 * a[..., H], b[..., Z] - 0.5 * b[..., H])
    inter = inter * tf.maximum(top - bottom, 0.0)
    union = area_a * a[..., H] + area_b * b[..., H] - inter
  return inter / tf.maximum(union, _EPS)


def nearest_bev_iou(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
  """IoU of axis-aligned footprints after snapping each heading to the nearest of 0 / 90 deg.

  This is the "nearest BEV" IoU that SECOND and PointPillars use to match anchors to ground truth
  (cheap, and rotation-aware enough for anchors at 0 and 90 degrees).

  Args:
    boxes_a: [N, 7] float32, vehicle frame.
    boxes_b: [M, 7] float32, vehicle frame.

  Returns:
    [N, M] float32 in [0, 1].
  """

  def aligned(boxes):
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    # |wrap(heading)| > pi/4 and < 3pi/4: closer to 90 degrees, so l and w swap.
    rot = tf.abs(wrap_angle(boxes[:, HEADING]))
    swap = (rot > np.pi / 4) & (rot < 3 * np.pi / 4)
    ex = tf.where(swap, boxes[:, W], boxes[:, L])
    ey = tf.where(swap, boxes[:, L], boxes[:, W])
    return tf.stack(
        [
            boxes[:, X] - 0.5 * ex,
            boxes[:, Y] - 0.5 * ey,
            boxes[:, X] + 0.5 * ex,
            boxes[:, Y] + 0.5 * ey,
        ],
        -1,
    )

  a = aligned(boxes_a)[:, tf.newaxis]
  b = aligned(boxes_b)[tf.newaxis]
  iw = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
  ih = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
  inter = iw * ih
  area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
  area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  return inter / tf.maximum(area_a + area_b - inter, _EPS)


def rotated_nms(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    iou_threshold: float,
    max_outputs: int,
    pre_nms_top_k: int,
    score_threshold: float = -np.inf,
    bev: bool = True,
    sparse: bool = False,
) -> Tuple[tf.Tensor, tf.Tensor]:
  """Greedy non-maximum suppression with rotated IoU, static shapes throughout.

  The `pre_nms_top_k` highest scores are kept, their pairwise IoU computed once, and a loop of
  static length suppresses every box overlapping a kept higher-scoring box by more than
  `iou_threshold`.

  Args:
    boxes: [N, 7] float32, vehicle frame.
    scores: [N] float32 (higher is better).
    iou_threshold: IoU above which a lower-scoring box is suppressed.
    max_outputs: number of output slots.
    pre_nms_top_k: candidates considered (clipped to N).
    score_threshold: candidates scoring below it are dropped.
    bev: suppress by footprint IoU (the default, as detectors do) or by 3D IoU.
    sparse: the same result with dynamic shapes (not under XLA), for evaluation: candidates
      below `score_threshold` are dropped before the top-k (a trained detector leaves few), and
      their IoU uses pairwise_iou's sparse mode.

  Returns:
    indices [max_outputs] int32 into `boxes` (-1 in unused slots), valid [max_outputs] bool.
  """
  boxes = tf.convert_to_tensor(boxes, tf.float32)
  scores = tf.convert_to_tensor(scores, tf.float32)
  if sparse:
    return _rotated_nms_dynamic(
        boxes, scores, iou_threshold, max_outputs, pre_nms_top_k, score_threshold, bev
    )
  n = boxes.shape[0]
  k = min(pre_nms_top_k, n) if n is not None else pre_nms_top_k
  top_scores, top = tf.math.top_k(scores, k=k)
  cand = tf.gather(boxes, top)
  iou = pairwise_iou(cand, cand, bev=bev, sparse=sparse)
  alive = top_scores >= score_threshold

  def body(i, alive, keep):
    kept_i = alive[i]
    keep = tf.tensor_scatter_nd_update(keep, [[i]], [kept_i])
    later = tf.range(k) > i
    suppress = kept_i & later & (iou[i] > iou_threshold)
    return i + 1, alive & ~suppress, keep

  _, _, keep = tf.while_loop(
      lambda i, *_: i < k,
      body,
      (tf.constant(0), alive, tf.zeros([k], tf.bool)),
      maximum_iterations=k,
  )
  # Kept candidates in score order, padded with -1.
  rank = tf.where(keep, tf.range(k), k + tf.range(k))
  order = tf.argsort(rank, stable=True)
  order = order[:max_outputs] if k >= max_outputs else tf.pad(order, [[0, max_outputs - k]])
  slot_valid = tf.gather(tf.pad(keep, [[0, max(max_outputs - k, 0)]]), order)
  if k < max_outputs:
    slot_valid &= tf.range(max_outputs) < k
  indices = tf.where(slot_valid, tf.gather(top, tf.minimum(order, k - 1)), -1)
  return indices, slot_valid


def _rotated_nms_dynamic(boxes, scores, iou_threshold, max_outputs, pre_nms_top_k, threshold, bev):
  """rotated_nms(sparse=True): the static version's result, computed on the boxes that count.

  The static version keeps the top k of all scores and marks those below the threshold dead;
  dead boxes are never kept and suppress nothing, so the top k of the boxes above the threshold
  give the same kept set, in the same (score) order.
  """
  above = tf.cast(tf.where(scores >= threshold)[:, 0], tf.int32)
  k = tf.minimum(pre_nms_top_k, tf.size(above))
  _, local = tf.math.top_k(tf.gather(scores, above), k=k)
  top = tf.gather(above, local)
  iou = pairwise_iou(tf.gather(boxes, top), tf.gather(boxes, top), bev=bev, sparse=True)

  def body(i, alive):
    suppress = alive[i] & (tf.range(k) > i) & (iou[i] > iou_threshold)
    return i + 1, alive & ~suppress

  _, keep = tf.while_loop(lambda i, _: i < k, body, (tf.constant(0), tf.ones([k], tf.bool)))
  kept = tf.boolean_mask(top, keep)[:max_outputs]
  num = tf.size(kept)
  indices = tf.pad(kept, [[0, max_outputs - num]], constant_values=-1)
  indices = tf.ensure_shape(indices, [max_outputs])
  return indices, tf.range(max_outputs) < num
