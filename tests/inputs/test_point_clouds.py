"""Synthetic lidar sequences and the pillar pipeline."""

import numpy as np
import pytest

from taskology_tf.geometry import boxes as boxes_lib
from taskology_tf.geometry import pillars as pillars_lib
from taskology_tf.inputs import point_clouds


def test_sequence_points_and_boxes_share_the_current_frame():
  seq = point_clouds.synthetic_sequence(7)
  assert seq['points'].shape[0] == 3 and seq['gt_valid'].any()
  for k in range(3):
    valid = seq['gt_valid'][k] & (seq['gt_num_points'][k] > 0)
    grown = seq['gt_boxes'][k][valid] + np.array([0, 0, 0, 0.05, 0.05, 0.05, 0], np.float32)
    pts = seq['points'][k][seq['points_valid'][k]]
    inside = boxes_lib.points_in_boxes(pts, grown).numpy().sum(0)
    # Each car's own returns (counted by track id in its own frame) fall inside its box after
    # both are moved into the current frame.
    assert (inside >= seq['gt_num_points'][k][valid]).all(), k


def test_mediator_has_no_labels_and_fractions_nest():
  clips = point_clouds.synthetic_point_cloud_clips('train', num_sequences=6)
  grid = pillars_lib.PillarGrid(
      rows=8, cols=8, cell_size=3.0, x_min=-12, y_min=-12, max_pillars=16, max_points=4
  )
  pipe = point_clouds.PointCloudPipeline(grid)
  mediator = next(iter(pipe.mediator_dataset(clips, 2)))
  assert not set(mediator) & set(point_clouds.LABEL_KEYS)
  assert mediator['pillars'].shape == (2, 3, 16, 4, 9) and mediator['image'].shape[1] == 3
  with pytest.raises(ValueError, match='label_fraction'):
    pipe.dedicated_dataset(clips, 1, label_fraction=1e-6)
  from taskology_tf.inputs import pipelines  # pylint: disable=g-import-not-at-top

  seeds = lambda f: {int(x['scene_seed']) for x in pipelines.label_fraction_subset(clips, f)}
  assert seeds(0.3) <= seeds(0.7) <= seeds(1.0)
  with pytest.raises(ValueError, match='split'):
    point_clouds.synthetic_point_cloud_clips('nope')
