"""Waymo reader: generated Frames with range images (tests/datasets/taskology_tf/datasets/waymo/generated.py), the
real sample Frame (calibration, pose, boxes; no range images), and bad input."""

import os

import numpy as np
import pytest
from waymo_open_dataset import dataset_pb2

from taskology_tf.datasets.waymo import generated as wf
from taskology_tf.datasets.waymo import reader

L = dataset_pb2.LaserName
REAL = os.path.join(
    os.path.dirname(__file__), '..', '..', '..', 'shared', 'data', 'real', 'waymo',
    'pvps_data_one_frame.tfrecord',
)  # fmt: skip


def test_known_returns_land_at_their_vehicle_frame_positions():
  # Four returns on four lidars (TOP with explicit beam inclinations and its per-pixel poses,
  # the others with an inclination range; one second return), at a pose with yaw and
  # translation. Each must come back at (*) of waymo/generated.py, with its intensity.
  pose = wf.yaw_pose(0.7, (30.0, -20.0, 1.0))
  returns = [
      (L.FRONT, 0, 1, 2, 10.0, 0.5),
      (L.TOP, 1, 3, 6, 7.0, 1.5),
      (L.REAR, 0, 0, 0, 5.0, 0.1),
      (L.SIDE_LEFT, 0, 2, 7, 4.0, 0.2),
  ]
  points = reader.frame_points(wf.make_frame('seg', 1, pose, returns), 'generated')
  assert points.shape == (4, 4)
  for laser, _, row, col, rng, intensity in returns:
    want = np.array([*wf.expected_point(laser, row, col, rng), intensity])
    dist = np.abs(points - want).max(axis=1)
    assert dist.min() < 1e-4, (laser, points, want)
  # Hand check of (*) for the FRONT return: row 1 of a uniform [-0.6, 0.2] range over 4 rows
  # has inclination -0.6 + (4 - 1 - 1 + 0.5) / 4 * 0.8 = -0.1; column 2 of 8 has azimuth
  # ((8 - 2 - 0.5) / 8 * 2 - 1) pi = 0.375 pi; range 10 from (4, 0, 0.8):
  # (4 + 10 cos(-0.1) cos(0.375 pi), 10 cos(-0.1) sin(0.375 pi), 0.8 + 10 sin(-0.1)).
  front = np.array(
      [
          4 + 10 * np.cos(0.1) * np.cos(0.375 * np.pi),
          10 * np.cos(0.1) * np.sin(0.375 * np.pi),
          0.8 - 10 * np.sin(0.1),
      ]
  )
  assert np.abs(points[:, :3] - front).max(axis=1).min() < 1e-4


def test_earlier_frame_moves_into_the_current_vehicle_frame():
  # Two frames 0.5 s apart, the ego 5 m further along world x in the current one, no turn:
  # a point p in the earlier vehicle frame is at p - (5, 0, 0) in the current one, and a
  # box's centre likewise (heading unchanged).
  ret = (L.FRONT, 0, 1, 2, 10.0, 0.5)
  box = (12.0, 1.0, 0.9, 4.5, 2.0, 1.6, 0.3, 'car', 30, 0, wf.VEHICLE)
  earlier = wf.make_frame('seg', 1_000_000, wf.yaw_pose(0, (100, 0, 0)), [ret], [box])
  current = wf.make_frame('seg', 1_500_000, wf.yaw_pose(0, (105, 0, 0)), [], [box])
  frames = [reader.read_frame(f, 'generated') for f in (current, earlier)]
  seq = reader.build_sequence(frames, reader.SequenceConfig(num_frames=2))
  p = wf.expected_point(L.FRONT, 1, 2, 10.0)
  got = seq['points'][1][seq['points_valid'][1]]
  np.testing.assert_allclose(got[0, :3], p - [5, 0, 0], atol=1e-4)
  assert not seq['points_valid'][0].any()  # the current frame has no returns
  np.testing.assert_allclose(seq['gt_boxes'][1, 0], [7.0, 1.0, 0.9, 4.5, 2.0, 1.6, 0.3], atol=1e-5)
  np.testing.assert_allclose(seq['gt_boxes'][0, 0], box[:7], atol=1e-5)
  np.testing.assert_allclose(seq['current_from_frame'][1][:3, 3], [-5, 0, 0], atol=1e-6)


def test_segment_sequences_static_world_tracks_and_drops(tmp_path):
  # 6 frames at 10 Hz; sequences of 3 frames 0.2 s apart exist for frames 4 (4, 2, 0) and
  # 5 (5, 3, 1); frames 0..3 lack earlier frames (4 drops). The ego turns 0.05 rad per frame,
  # so moving boxes is exercised: parked cars land at one place in every frame of a sequence.
  frames, poses = wf.segment_frames('seg', 6)
  path = wf.write_segment(str(tmp_path / 'segment.tfrecord'), frames)
  drops = reader.DropCounter()
  config = reader.SequenceConfig(num_frames=3, time_step=0.2, max_boxes=4)
  seqs = list(reader.segment_sequences(path, config, drops))
  assert [k for k, _ in seqs] == ['segment.tfrecord/1400000', 'segment.tfrecord/1500000']
  assert dict(drops.counts) == {'frames without 2 earlier frames 0.2 s apart': 4}
  for _, seq in seqs:
    assert seq['points'].shape[0] == 3 and seq['gt_boxes'].shape == (3, 4, 7)
    # Vehicles only (the pedestrian is not kept), padded to max_boxes.
    assert seq['gt_valid'].sum(axis=1).tolist() == [2, 2, 2]
    for k in (1, 2):
      np.testing.assert_allclose(seq['gt_boxes'][k, :2], seq['gt_boxes'][0, :2], atol=1e-4)
    # Track ids: one int per object, equal across frames; padding -1.
    assert (
        seq['gt_track_ids'][:, :2].tolist() == [[0, 1]] * 3
        or seq['gt_track_ids'][:, :2].tolist() == [[1, 0]] * 3
    )
    assert (seq['gt_track_ids'][:, 2:] == -1).all()
    # Difficulty: car_a has 40 points (LEVEL_1), car_b 3 (LEVEL_2).
    assert sorted(seq['gt_difficulty'][0, :2].tolist()) == [1, 2]
    # Every lidar, both returns, 3 returns each (some may share a pixel): at most 30 points.
    assert 20 <= seq['points_valid'][0].sum() <= 30
  # The second sequence's frame 1 is segment frame 3: its points, moved by
  # inv(pose_5) pose_3, equal the frame's own reading moved the same way.
  own = reader.frame_points(frames[3], path)
  move = np.linalg.inv(poses[5]) @ poses[3]
  want = own[:, :3] @ move[:3, :3].T + move[:3, 3]
  got = seqs[1][1]['points'][1][seqs[1][1]['points_valid'][1]]
  np.testing.assert_allclose(got[:, :3], want, atol=1e-4)


def test_difficulty_levels_follow_the_official_rule():
  # (points, labellers' level) -> level: no point -> not evaluated; unmarked <= 5 points ->
  # LEVEL_2, else LEVEL_1; a marked level is kept.
  points = np.array([0, 0, 3, 5, 6, 100, 3])
  marked = np.array([0, 2, 0, 0, 0, 2, 1])
  assert reader.difficulty_levels(points, marked).tolist() == [0, 0, 2, 2, 1, 2, 1]


def test_frame_without_range_images_is_an_error_or_a_counted_drop(tmp_path):
  frames, _ = wf.segment_frames('seg', 3)
  empty = wf.make_frame('seg', 1_300_000, wf.yaw_pose(0, (0, 0, 0)), with_laser_data=False)
  with pytest.raises(reader.NoLaserDataError, match=r'file\.tfrecord: frame seg@1300000 has no'):
    reader.frame_points(empty, 'file.tfrecord')
  path = wf.write_segment(str(tmp_path / 's.tfrecord'), [*frames, empty])
  drops = reader.DropCounter()
  config = reader.SequenceConfig(num_frames=2, time_step=0.1)
  keys = [k for k, _ in reader.segment_sequences(path, config, drops)]
  assert keys == ['s.tfrecord/1100000', 's.tfrecord/1200000']
  assert dict(drops.counts) == {
      'frames without range images (no lidar points)': 1,
      'frames without 1 earlier frames 0.1 s apart': 1,
  }


def test_truncated_tfrecord_names_the_file_and_record(tmp_path):
  frames, _ = wf.segment_frames('seg', 2)
  path = wf.write_segment(str(tmp_path / 'cut.tfrecord'), frames)
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[: len(data) - 40])
  with pytest.raises(reader.WaymoDataError, match=r'cut\.tfrecord: record 1 is truncated'):
    list(reader.read_frames(path))
  with pytest.raises(reader.WaymoDataError, match='does not exist'):
    list(reader.read_frames(str(tmp_path / 'absent.tfrecord')))
  with open(path, 'wb') as f:  # a valid TFRecord whose record is not a Frame
    pass
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  with tf.io.TFRecordWriter(path) as w:
    w.write(b'\xff\xff not a proto')
  with pytest.raises(reader.WaymoDataError, match=r'record 0 is not a Waymo Frame'):
    list(reader.read_frames(path))


def test_real_frame_has_calibration_pose_and_boxes_but_no_points():
  if not os.path.isfile(REAL):
    pytest.skip(f'real Waymo sample absent: {REAL} (see ../shared/data/real/SOURCES.md)')
  frames = list(reader.read_frames(REAL))
  assert len(frames) == 1
  frame = frames[0]
  # Five calibrated lidars, but no range images: this sample has NO lidar points.
  assert len(frame.context.laser_calibrations) == 5
  assert not reader.has_laser_data(frame)
  with pytest.raises(reader.NoLaserDataError, match='pvps_data_one_frame.tfrecord.*no range'):
    reader.frame_points(frame, REAL)
  pose = reader.world_from_vehicle(frame)
  np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-6)
  assert abs(np.linalg.det(pose[:3, :3]) - 1) < 1e-6 and (pose[3] == [0, 0, 0, 1]).all()
  boxes = reader.frame_boxes(frame)
  # 75 laser boxes, 37 of them vehicles (context.stats.laser_object_counts says so too).
  assert len(frame.laser_labels) == 75 and len(boxes['boxes']) == 37
  assert boxes['boxes'].shape == (37, 7) and (boxes['boxes'][:, 3:6] > 0).all()
  assert len(set(boxes['ids'])) == 37
  levels = boxes['difficulty']
  want = reader.difficulty_levels(
      boxes['num_points'],
      [l.detection_difficulty_level for l in frame.laser_labels if l.type == wf.VEHICLE],
  )
  assert levels.tolist() == want.tolist() and set(levels.tolist()) <= {0, 1, 2}
  # Its one frame has no laser data: counted, no sequence.
  drops = reader.DropCounter()
  assert not list(reader.segment_sequences(REAL, reader.SequenceConfig(num_frames=1), drops))
  assert dict(drops.counts) == {'frames without range images (no lidar points)': 1}


def test_official_levels_replace_point_count_levels_in_the_metrics():
  # Two vehicles with 100 points each (LEVEL_1 by count), the second marked LEVEL_2 by the
  # labellers; only the first is detected, exactly. With the marked levels, LEVEL_1 ignores the
  # missed box: AP 1; LEVEL_2 has recall 1/2 at precision 1: AP 0.5. From the counts alone,
  # LEVEL_1 AP would be 0.5 as well.
  from taskology_tf.metrics import detection3d  # pylint: disable=g-import-not-at-top

  gt = np.array([[10, 0, 1, 4.5, 2, 1.6, 0], [20, 5, 1, 4.5, 2, 1.6, 0]], np.float32)
  frame = dict(pred_boxes=gt[:1], pred_scores=np.array([0.9]), gt_boxes=gt,
               gt_num_points=np.array([100, 100]))  # fmt: skip
  by_count = detection3d.average_precision([frame])
  marked = detection3d.average_precision([{**frame, 'gt_difficulty': np.array([1, 2])}])
  assert by_count['LEVEL_1/AP'] == pytest.approx(0.5)
  assert marked['LEVEL_1/AP'] == pytest.approx(1.0)
  assert marked['LEVEL_2/AP'] == pytest.approx(0.5)
