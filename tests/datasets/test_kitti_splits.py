"""KITTI Eigen splits from the MIT-licensed SfMLearner lists: test list and Zhou et al.'s rule."""

import os
import zlib

from taskology_tf.datasets.kitti_raw import builder as kitti


def test_shipped_lists_are_the_eigen_split():
  test = kitti.read_split_file(kitti.EIGEN_TEST_FILES)
  assert len(test) == 697
  scenes = set(kitti._read_lines(kitti.EIGEN_TEST_SCENES))
  assert len(scenes) == 28
  # Every test frame lies in one of the 28 test drives, and every test drive has test frames.
  assert {drive.split('/')[1][: -len('_sync')] for drive, _ in test} == scenes
  static = kitti._read_lines(kitti.STATIC_FRAMES)
  assert len(static) == 8044 and static[0] == '2011_09_26 2011_09_26_drive_0009_sync 0000000386'


def _touch_drive(root, drive, frames):
  image_dir = os.path.join(root, drive, 'image_02', 'data')
  os.makedirs(image_dir, exist_ok=True)
  for f in frames:
    open(os.path.join(image_dir, f'{f:010d}.png'), 'wb').close()


def test_zhou_rule_drops_test_drives_and_static_frames_and_holds_out_a_tenth(tmp_path):
  root = str(tmp_path)
  moving = '2011_09_26/2011_09_26_drive_0001_sync'  # No static frames listed.
  parked = '2011_09_28/2011_09_28_drive_0001_sync'  # static_frames.txt lists its frames 0-14.
  tested = '2011_09_26/2011_09_26_drive_0002_sync'  # An Eigen test drive.
  _touch_drive(root, moving, range(60))
  _touch_drive(root, parked, range(20))
  _touch_drive(root, tested, range(10))
  os.makedirs(os.path.join(root, '2011_09_26', 'not_a_drive'))
  open(os.path.join(root, '2011_09_26', 'calib_cam_to_cam.txt'), 'w').close()
  train = kitti.zhou_split(root, 'train')
  validation = kitti.zhou_split(root, 'validation')
  expected = {(moving, f) for f in range(60)} | {(parked, f) for f in range(15, 20)}
  assert set(train) | set(validation) == expected
  assert not set(train) & set(validation) and len(train) == len(set(train))
  # Validation is exactly the frames whose crc32('<drive> <frame:010d>') is 0 mod 10, in order.
  held_out = sorted(e for e in expected if zlib.crc32(f'{e[0]} {e[1]:010d}'.encode()) % 10 == 0)
  assert validation == held_out and 0 < len(validation) < len(train)
  assert train != sorted(train)  # Shuffled, deterministically:
  assert kitti.zhou_split(root, 'train') == train
