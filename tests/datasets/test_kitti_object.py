"""KITTI object reader on the real frame in ../shared/data/real/kitti_object/ and on bad input."""

import os

import numpy as np
import pytest

from taskology_tf.datasets.kitti_object import reader
from tests.conftest import REPO_ROOT

REAL = os.path.join(REPO_ROOT, '..', 'shared', 'data', 'real', 'kitti_object')


@pytest.mark.skipif(not os.path.isdir(REAL), reason=f'real KITTI object sample not at {REAL}')
def test_real_frame_boxes_land_among_points():
  seq = reader.read_frame(REAL, '000001')
  boxes = seq['gt_boxes'][0][seq['gt_valid'][0]]
  assert len(boxes) == 1  # one Car in 000001 (a Truck and a Cyclist are not vehicles here)
  # label: h 1.67 w 1.87 l 3.69 at camera (-16.53, 2.39, 58.49): ~58 m ahead, ~16.5 m left.
  x, y, z, l, w, h, _ = boxes[0]
  assert 57 < x < 60 and 15 < y < 18 and -1.5 < z < 0.0
  np.testing.assert_allclose([l, w, h], [3.69, 1.87, 1.67], atol=1e-5)
  # Its centre lands among the scan's points: lidar returns (sparse at 58 m) fall inside the box,
  # while the same box moved 3 m right (towards the road) or 3 m further away holds none (3 m to
  # the left is kerb-side structure, so that shift is not a test).
  n = seq['gt_num_points'][0, 0]
  pts = seq['points'][0]
  for dx, dy in ((0.0, -3.0), (3.0, 0.0)):
    moved = boxes[0] + np.array([dx, dy, 0, 0, 0, 0, 0], np.float32)
    assert _count(pts, moved) == 0
  assert n >= 5
  # All three labelled objects have points inside their boxes.
  rect = reader.velo_from_rect(os.path.join(REAL, 'calib', '000001.txt'))
  all_boxes = reader.read_labels(
      os.path.join(REAL, 'label_2', '000001.txt'), rect, ('Car', 'Truck', 'Cyclist')
  )
  assert len(all_boxes) == 3
  counts = [_count(seq['points'][0], b) for b in all_boxes]
  assert min(counts) >= 5 and counts[0] > 50, counts  # the truck 69 m ahead has 72


def _count(points, box):
  d = points[:, :3] - box[:3]
  c, s = np.cos(box[6]), np.sin(box[6])
  return int(
      np.sum(
          (np.abs(d[:, 0] * c + d[:, 1] * s) <= box[3] / 2)
          & (np.abs(-d[:, 0] * s + d[:, 1] * c) <= box[4] / 2)
          & (np.abs(d[:, 2]) <= box[5] / 2)
      )
  )


def test_bad_input_names_the_file(tmp_path):
  (tmp_path / 'label_2').mkdir()
  bad = tmp_path / 'label_2' / '000000.txt'
  bad.write_text('Car 0 0\n')
  with pytest.raises(ValueError, match='000000.txt:1'):
    reader.read_labels(str(bad), np.eye(4))
  (tmp_path / 'calib').mkdir()
  (tmp_path / 'calib' / '000000.txt').write_text('P0: 1 2 3\n')
  with pytest.raises(ValueError, match='R0_rect'):
    reader.velo_from_rect(str(tmp_path / 'calib' / '000000.txt'))
