"""Rotated anchors on the BEV grid and the SECOND / PointPillars residual box coding.

Residuals of a box g against an anchor a (PointPillars Sec. 2.3, SECOND Eq. 1), with
d_a = sqrt(l_a^2 + w_a^2) the anchor's footprint diagonal:

  dx = (x_g - x_a) / d_a,  dy = (y_g - y_a) / d_a,  dz = (z_g - z_a) / h_a,
  dl = log(l_g / l_a),     dw = log(w_g / w_a),     dh = log(h_g / h_a),
  dtheta = theta_g - theta_a.

(The issue lists the sizes as (dw, dl, dh); we keep the box vector's (l, w, h) order.)
"""

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from taskology_tf.geometry import boxes as boxes_lib
from taskology_tf.geometry import pillars as pillars_lib


@dataclasses.dataclass(frozen=True)
class AnchorConfig:
  """One class's anchors at every cell centre.

  Defaults: Waymo vehicles (the mean vehicle size, l 4.73 w 2.08 h 1.77 m, centre 0.88 m above
  the vehicle frame's ground-level origin... for Waymo the origin is at the rear axle on the
  ground), headings 0 and 90 degrees (the paper's n_a = 2).

  Attributes:
    size: (l, w, h) metres.
    z: anchor centre height, metres, vehicle frame.
    headings: radians, one anchor per heading.
    positive_iou: nearest-BEV IoU at or above which an anchor is positive (PointPillars car 0.6).
    negative_iou: IoU below which an anchor is negative (0.45); in between: ignored.
  """

  size: Sequence[float] = (4.73, 2.08, 1.77)
  z: float = 0.885
  headings: Sequence[float] = (0.0, float(np.pi / 2))
  positive_iou: float = 0.6
  negative_iou: float = 0.45

  @property
  def num_anchors(self) -> int:
    return len(self.headings)


def make_anchors(grid: pillars_lib.PillarGrid, config: AnchorConfig) -> tf.Tensor:
  """[rows, cols, n_a, 7] float32 anchors at the cell centres, vehicle frame."""
  centres = grid.cell_centres()  # [rows, cols, 2]
  n = config.num_anchors
  xy = tf.repeat(centres[:, :, tf.newaxis], n, axis=2)
  rest = tf.constant([[config.z, *config.size, h] for h in config.headings], tf.float32)  # [n_a, 5]
  rest = tf.broadcast_to(rest, [grid.rows, grid.cols, n, 5])
  return tf.concat([xy, rest], -1)


def encode(boxes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
  """Residuals [..., 7] of boxes [..., 7] against anchors [..., 7] (module docstring)."""
  b = tf.convert_to_tensor(boxes, tf.float32)
  a = tf.convert_to_tensor(anchors, tf.float32)
  diag = tf.sqrt(a[..., 3] ** 2 + a[..., 4] ** 2)
  return tf.stack(
      [
          (b[..., 0] - a[..., 0]) / diag,
          (b[..., 1] - a[..., 1]) / diag,
          (b[..., 2] - a[..., 2]) / a[..., 5],
          tf.math.log(b[..., 3] / a[..., 3]),
          tf.math.log(b[..., 4] / a[..., 4]),
          tf.math.log(b[..., 5] / a[..., 5]),
          b[..., 6] - a[..., 6],
      ],
      -1,
  )


def decode(residuals: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
  """Boxes [..., 7] from residuals [..., 7] and anchors [..., 7]; inverse of `encode`."""
  r = tf.convert_to_tensor(residuals, tf.float32)
  a = tf.convert_to_tensor(anchors, tf.float32)
  diag = tf.sqrt(a[..., 3] ** 2 + a[..., 4] ** 2)
  return tf.stack(
      [
          a[..., 0] + r[..., 0] * diag,
          a[..., 1] + r[..., 1] * diag,
          a[..., 2] + r[..., 2] * a[..., 5],
          a[..., 3] * tf.exp(r[..., 3]),
          a[..., 4] * tf.exp(r[..., 4]),
          a[..., 5] * tf.exp(r[..., 5]),
          boxes_lib.wrap_angle(a[..., 6] + r[..., 6]),
      ],
      -1,
  )


def match_anchors(
    anchors: tf.Tensor, gt_boxes: tf.Tensor, gt_valid: tf.Tensor, config: AnchorConfig
) -> tf.Tensor:
  """Assigns ground truth to anchors by nearest-BEV IoU (SECOND's target assigner).

  An anchor is positive if its IoU with some box is >= positive_iou, or if it is that box's best
  anchor (so every box gets at least one positive); negative if its best IoU < negative_iou;
  ignored otherwise.

  Args:
    anchors: [A, 7] float32, vehicle frame.
    gt_boxes: [K, 7] float32, vehicle frame.
    gt_valid: [K] bool.
    config: the thresholds.

  Returns:
    [A] int32: index of the matched box (>= 0), -1 negative, -2 ignored.
  """
  iou = boxes_lib.nearest_bev_iou(anchors, gt_boxes)  # [A, K]
  iou = tf.where(gt_valid[tf.newaxis], iou, -1.0)
  best_box = tf.argmax(iou, axis=1, output_type=tf.int32)
  best_iou = tf.reduce_max(iou, axis=1)
  # Each valid box's best anchor (with positive overlap) is forced positive.
  best_anchor = tf.argmax(iou, axis=0, output_type=tf.int32)  # [K]
  forced_ok = gt_valid & (tf.reduce_max(iou, axis=0) > 0.0)
  num_anchors = tf.shape(anchors)[0]
  forced = tf.tensor_scatter_nd_max(
      tf.zeros([num_anchors], tf.int32),
      tf.boolean_mask(best_anchor, forced_ok)[:, tf.newaxis],
      tf.boolean_mask(tf.range(tf.shape(gt_boxes)[0]) + 1, forced_ok),
  )  # 1 + box index, 0 if not forced (two boxes sharing a best anchor: the later one wins).
  match = tf.where(
      best_iou >= config.positive_iou,
      best_box,
      tf.where(best_iou < config.negative_iou, -1, -2),
  )
  return tf.where(forced > 0, forced - 1, match)
