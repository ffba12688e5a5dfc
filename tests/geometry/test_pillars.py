"""Tests of pillar assignment: features, caps and drop counts."""

import numpy as np
import tensorflow as tf

from taskology_tf.geometry import pillars as pillars_lib

GRID = pillars_lib.PillarGrid(
    rows=4,
    cols=4,
    cell_size=1.0,
    x_min=-2.0,
    y_min=-2.0,
    z_min=-1.0,
    z_max=3.0,
    max_pillars=2,
    max_points=2,
)


def test_pillar_features_caps_and_drops():
  points = np.array(
      [
          [0.2, 0.4, 0.0, 0.5],  # cell (2, 2), centre (0.5, 0.5)
          [0.6, 0.8, 1.0, 0.1],  # cell (2, 2)
          [0.9, 0.1, 2.0, 0.2],  # cell (2, 2): third point, over max_points
          [-1.5, -1.5, 0.0, 0.3],  # cell (0, 0), centre (-1.5, -1.5)
          [1.5, -0.5, 0.0, 0.3],  # cell (3, 1): 1 point, tie with (0, 0) -> third pillar, dropped
          [5.0, 0.0, 0.0, 0.3],  # outside the grid
          [0.0, 0.0, 9.0, 0.3],  # above z_max
          [0.0, 0.0, 0.0, 0.3],  # invalid row
      ],
      np.float32,
  )
  valid = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool)
  out = pillars_lib.pillarize(points, valid, GRID)
  assert int(out['dropped_outside']) == 2
  assert int(out['dropped_point_cap']) == 1
  assert int(out['dropped_pillar_cap']) == 1
  np.testing.assert_array_equal(out['pillar_indices'].numpy(), [[2, 2], [0, 0]])
  np.testing.assert_array_equal(out['pillar_mask'].numpy(), [1, 1])
  np.testing.assert_array_equal(out['point_mask'].numpy(), [[1, 1], [1, 0]])
  # Pillar 0 keeps the first two points; their mean is (0.4, 0.6, 0.5).
  f = out['pillars'].numpy()
  np.testing.assert_allclose(f[0, 0], [0.2, 0.4, 0.0, 0.5, -0.2, -0.2, -0.5, -0.3, -0.1], atol=1e-6)
  np.testing.assert_allclose(f[0, 1, 4:], [0.2, 0.2, 0.5, 0.1, 0.3], atol=1e-6)
  np.testing.assert_allclose(f[1, 0], [-1.5, -1.5, 0, 0.3, 0, 0, 0, 0, 0], atol=1e-6)
  np.testing.assert_array_equal(f[1, 1], 0.0)


def test_pillarize_frames_static_shapes():
  rng = np.random.default_rng(0)
  pts = rng.uniform(-2, 2, (3, 50, 4)).astype(np.float32)
  grid = pillars_lib.PillarGrid(
      rows=4, cols=4, cell_size=1.0, x_min=-2, y_min=-2, max_pillars=16, max_points=8
  )
  out = tf.function(lambda p, v: pillars_lib.pillarize_frames(p, v, grid))(
      pts, np.ones((3, 50), bool)
  )
  assert out['pillars'].shape == (3, 16, 8, 9)
  # Every valid in-range point is either kept or counted as dropped.
  inside = (np.abs(pts[..., :2]) < 2).all(-1) & (pts[..., 2] >= -2) & (pts[..., 2] < 5.0)
  kept = out['point_mask'].numpy().sum((1, 2))
  dropped = out['dropped_point_cap'].numpy() + out['dropped_pillar_cap'].numpy()
  np.testing.assert_array_equal(kept + dropped, inside.sum(-1))
