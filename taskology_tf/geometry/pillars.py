"""Pillar assignment of lidar points (PointPillars, Lang et al. 2019, Sec. 2.1).

The bird's-eye-view grid covers x in [x_min, x_min + rows * cell) and y in
[y_min, y_min + cols * cell) of the vehicle frame (x forward, y left, z up); cell (i, j) is
row i along x and column j along y, centred at (x_min + (i + 0.5) cell, y_min + (j + 0.5) cell).
Points outside it (or outside [z_min, z_max)) are dropped.

Each non-empty cell is a pillar of at most `max_points` points, each with the 9 PointPillars
features (x, y, z, intensity, x_c, y_c, z_c, x_p, y_p): c = offset to the arithmetic mean of the
pillar's points, p = offset to the pillar's centre in x and y. At most `max_pillars` pillars are
kept (the ones with the most points; ties by first occurrence), so the output has static shape and
the network runs under XLA. Everything dropped is counted and returned, so callers can warn and
log it instead of silently training on a truncated cloud.

Pillarisation runs in the input pipeline (tf.data), not in the training step: it sorts and uses
`tf.unique`, whose shapes depend on the data.
"""

import dataclasses
from typing import Dict

import tensorflow as tf

NUM_POINT_FEATURES = 9


@dataclasses.dataclass(frozen=True)
class PillarGrid:
  """The BEV grid and the pillar caps.

  Attributes:
    rows: cells along x.
    cols: cells along y.
    cell_size: metres per cell (square cells).
    x_min: metres, vehicle frame, lower x edge of row 0.
    y_min: metres, vehicle frame, lower y edge of column 0.
    z_min: metres, points below are dropped.
    z_max: metres, points at or above are dropped.
    max_pillars: pillars kept per frame.
    max_points: points kept per pillar.
  """

  rows: int = 468
  cols: int = 468
  cell_size: float = 0.32
  x_min: float = -74.88
  y_min: float = -74.88
  z_min: float = -3.0
  z_max: float = 5.0
  max_pillars: int = 24000
  max_points: int = 20

  def __post_init__(self):
    for name in ('rows', 'cols', 'max_pillars', 'max_points'):
      if getattr(self, name) < 1:
        raise ValueError(f'PillarGrid.{name} must be >= 1, got {getattr(self, name)}')
    if self.cell_size <= 0 or self.z_max <= self.z_min:
      raise ValueError(
          f'PillarGrid: need cell_size > 0 and z_max > z_min, got cell_size={self.cell_size}, '
          f'z_min={self.z_min}, z_max={self.z_max}'
      )

  def cell_centres(self) -> tf.Tensor:
    """[rows, cols, 2] float32 (x, y) cell centres, metres, vehicle frame."""
    x = self.x_min + (tf.range(self.rows, dtype=tf.float32) + 0.5) * self.cell_size
    y = self.y_min + (tf.range(self.cols, dtype=tf.float32) + 0.5) * self.cell_size
    xx, yy = tf.meshgrid(x, y, indexing='ij')
    return tf.stack([xx, yy], -1)


def pillarize(points: tf.Tensor, valid: tf.Tensor, grid: PillarGrid) -> Dict[str, tf.Tensor]:
  """Groups one frame's points into pillars.

  Args:
    points: [P, 4] float32 (x, y, z, intensity), metres, vehicle frame.
    valid: [P] bool, which rows of `points` are real returns.
    grid: the grid and caps.

  Returns:
    'pillars': [max_pillars, max_points, 9] float32 point features (zero padding).
    'point_mask': [max_pillars, max_points] float32, 1 for real points.
    'pillar_indices': [max_pillars, 2] int32 (row, col); (0, 0) in unused slots.
    'pillar_mask': [max_pillars] float32, 1 for used slots.
    'dropped_outside': int32 scalar, valid points outside the grid or z range.
    'dropped_point_cap': int32 scalar, points beyond max_points in their pillar.
    'dropped_pillar_cap': int32 scalar, points in pillars beyond max_pillars.
  """
  points = tf.convert_to_tensor(points, tf.float32)
  valid = tf.convert_to_tensor(valid, tf.bool)
  if points.shape.rank != 2 or (points.shape[-1] is not None and points.shape[-1] != 4):
    raise ValueError(f'pillarize: points must be [P, 4] (x, y, z, intensity), got {points.shape}')
  ix = tf.cast(tf.floor((points[:, 0] - grid.x_min) / grid.cell_size), tf.int32)
  iy = tf.cast(tf.floor((points[:, 1] - grid.y_min) / grid.cell_size), tf.int32)
  inside = (
      (ix >= 0)
      & (ix < grid.rows)
      & (iy >= 0)
      & (iy < grid.cols)
      & (points[:, 2] >= grid.z_min)
      & (points[:, 2] < grid.z_max)
  )
  keep = valid & inside
  dropped_outside = tf.reduce_sum(tf.cast(valid & ~inside, tf.int32))
  pts = tf.boolean_mask(points, keep)
  cell = tf.boolean_mask(ix * grid.cols + iy, keep)
  cells, point_pillar, counts = tf.unique_with_counts(cell)
  # Pillars by decreasing point count (stable: ties keep first occurrence).
  by_count = tf.argsort(-counts, stable=True)
  pillar_rank = tf.math.invert_permutation(by_count)
  slot = tf.gather(pillar_rank, point_pillar)  # [Q] pillar slot of each point
  # Rank of each point within its pillar, in input order.
  order = tf.argsort(slot, stable=True)
  sorted_slot = tf.gather(slot, order)
  first = tf.searchsorted(sorted_slot, sorted_slot, side='left')
  rank_sorted = tf.range(tf.shape(sorted_slot)[0]) - first
  rank = tf.scatter_nd(order[:, tf.newaxis], rank_sorted, tf.shape(slot))
  in_pillar_cap = slot < grid.max_pillars
  in_point_cap = rank < grid.max_points
  dropped_pillar_cap = tf.reduce_sum(tf.cast(~in_pillar_cap, tf.int32))
  dropped_point_cap = tf.reduce_sum(tf.cast(in_pillar_cap & ~in_point_cap, tf.int32))
  use = in_pillar_cap & in_point_cap
  pts = tf.boolean_mask(pts, use)
  slot = tf.boolean_mask(slot, use)
  rank = tf.boolean_mask(rank, use)
  # Mean of the kept points of each pillar.
  sums = tf.math.unsorted_segment_sum(pts[:, :3], slot, grid.max_pillars)
  n = tf.math.unsorted_segment_sum(tf.ones_like(pts[:, 0]), slot, grid.max_pillars)
  mean = sums / tf.maximum(n, 1.0)[:, tf.newaxis]
  cell_of_slot = tf.scatter_nd(
      tf.boolean_mask(pillar_rank, pillar_rank < grid.max_pillars)[:, tf.newaxis],
      tf.boolean_mask(cells, pillar_rank < grid.max_pillars),
      [grid.max_pillars],
  )
  rows, cols = cell_of_slot // grid.cols, cell_of_slot % grid.cols
  centre_x = grid.x_min + (tf.cast(rows, tf.float32) + 0.5) * grid.cell_size
  centre_y = grid.y_min + (tf.cast(cols, tf.float32) + 0.5) * grid.cell_size
  features = tf.concat(
      [
          pts,
          pts[:, :3] - tf.gather(mean, slot),
          pts[:, :1] - tf.gather(centre_x, slot)[:, tf.newaxis],
          pts[:, 1:2] - tf.gather(centre_y, slot)[:, tf.newaxis],
      ],
      -1,
  )
  index = tf.stack([slot, rank], -1)
  shape = [grid.max_pillars, grid.max_points]
  pillar_mask = tf.cast(n > 0, tf.float32)
  return {
      'pillars': tf.scatter_nd(index, features, shape + [NUM_POINT_FEATURES]),
      'point_mask': tf.scatter_nd(index, tf.ones_like(features[:, 0]), shape),
      'pillar_indices': tf.stack([rows, cols], -1) * tf.cast(pillar_mask[:, None], tf.int32),
      'pillar_mask': pillar_mask,
      'dropped_outside': dropped_outside,
      'dropped_point_cap': dropped_point_cap,
      'dropped_pillar_cap': dropped_pillar_cap,
  }


def pillarize_frames(points: tf.Tensor, valid: tf.Tensor, grid: PillarGrid) -> Dict[str, tf.Tensor]:
  """`pillarize` over a leading frame axis: [F, P, 4], [F, P] -> outputs with a leading F."""
  return tf.map_fn(
      lambda args: pillarize(args[0], args[1], grid),
      (points, valid),
      fn_output_signature={
          'pillars': tf.TensorSpec(
              [grid.max_pillars, grid.max_points, NUM_POINT_FEATURES], tf.float32
          ),
          'point_mask': tf.TensorSpec([grid.max_pillars, grid.max_points], tf.float32),
          'pillar_indices': tf.TensorSpec([grid.max_pillars, 2], tf.int32),
          'pillar_mask': tf.TensorSpec([grid.max_pillars], tf.float32),
          'dropped_outside': tf.TensorSpec([], tf.int32),
          'dropped_point_cap': tf.TensorSpec([], tf.int32),
          'dropped_pillar_cap': tf.TensorSpec([], tf.int32),
      },
  )
