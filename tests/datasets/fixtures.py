"""Tiny raw KITTI-raw and Cityscapes layouts, written file by file in the datasets' real formats.

Reusable by gin smoke tests: `build_kitti_raw(tmp)` / `build_cityscapes(tmp)` write a raw
folder and build it with the real builders, returning (data_dir, config).
"""

import json
import os

import numpy as np
from PIL import Image

# KITTI: a tiny "day" whose rectified images are KITTI_W x KITTI_H. The camera numbers are
# 2011_09_26's P_rect_02, R_rect_00 and velo_to_cam scaled to this width (so the geometry is
# real KITTI geometry at 1/16 of the resolution: 1242 / 16 = 77.625 -> 78 columns).
KITTI_H, KITTI_W = 24, 78
KITTI_DAY = '2011_09_26'
# Drive 0002 frame 69 is an Eigen test frame, drive 0001 frames are in no list; the fixture's
# own split lists name them (the builder also runs on the shipped lists, see the tests).
KITTI_TRAIN_DRIVE = '2011_09_26/2011_09_26_drive_0001_sync'
KITTI_TEST_DRIVE = '2011_09_26/2011_09_26_drive_0002_sync'
KITTI_P_RECT_02 = np.array(
    [
        [721.5377 / 16, 0.0, 609.5593 / 16, 44.85728 / 16],
        [0.0, 721.5377 / 16, 172.854 / 16, 0.2163791 / 16],
        [0.0, 0.0, 1.0, 2.745884e-03],
    ]
)
KITTI_R_RECT_00 = np.array(
    [
        [9.999239e-01, 9.837760e-03, -7.445048e-03],
        [-9.869795e-03, 9.999421e-01, -4.278459e-03],
        [7.402527e-03, 4.351614e-03, 9.999631e-01],
    ]
)
KITTI_VELO_R = np.array(
    [
        [7.533745e-03, -9.999714e-01, -6.166020e-04],
        [1.480249e-02, 7.280733e-04, -9.998902e-01],
        [9.998621e-01, 7.523790e-03, 1.480755e-02],
    ]
)
KITTI_VELO_T = np.array([-4.069766e-03, -7.631618e-02, -2.717806e-01])


def _fmt(values) -> str:
  return ' '.join(f'{v:.6e}' for v in np.ravel(values))


def write_png(path: str, array: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def random_image(rng, height, width) -> np.ndarray:
  return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_kitti_calibration(
    day_dir: str, p_rect=KITTI_P_RECT_02, size=(KITTI_W, KITTI_H), velo_r=KITTI_VELO_R,
    velo_t=KITTI_VELO_T, r_rect=KITTI_R_RECT_00,
) -> None:  # fmt: skip
  """Writes calib_cam_to_cam.txt and calib_velo_to_cam.txt as the KITTI raw zips hold them."""
  os.makedirs(day_dir, exist_ok=True)
  with open(os.path.join(day_dir, 'calib_cam_to_cam.txt'), 'w') as f:
    f.write('calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n')
    for cam in range(4):
      f.write(f'S_0{cam}: {_fmt([1392, 512])}\n')
      f.write(f'R_rect_0{cam}: {_fmt(r_rect if cam == 0 else np.eye(3))}\n')
      f.write(f'S_rect_0{cam}: {_fmt(size)}\n')
      f.write(f'P_rect_0{cam}: {_fmt(p_rect if cam == 2 else np.eye(3, 4))}\n')
  with open(os.path.join(day_dir, 'calib_velo_to_cam.txt'), 'w') as f:
    f.write('calib_time: 15-Mar-2012 11:37:16\n')
    f.write(f'R: {_fmt(velo_r)}\nT: {_fmt(velo_t)}\n')
    f.write('delta_f: 0.000000e+00 0.000000e+00\ndelta_c: 0.000000e+00 0.000000e+00\n')


def plane_scan(distance: float, num: int = 4000, seed: int = 0) -> np.ndarray:
  """A velodyne scan of the wall x = distance (velodyne frame): [num, 4] float32."""
  rng = np.random.default_rng(seed)
  y = rng.uniform(-distance, distance, num)
  z = rng.uniform(-distance / 3, distance / 3, num)
  return np.stack([np.full(num, distance), y, z, rng.uniform(0, 1, num)], 1).astype(np.float32)


# Frames of the fixture drives: drive 0001's frames 0-4 (the shipped Eigen train list names
# 1-4 and more), drive 0002's frames 68-70 (frame 69 is an Eigen test frame).
KITTI_TRAIN_FRAMES = tuple(range(5))
KITTI_TEST_FRAMES = (68, 69, 70)


def write_kitti_raw(root: str, seed: int = 0) -> dict:
  """Writes a KITTI raw layout: one day, a train drive and a test drive with a wall scan.

  The fixture's own split lists name every train frame (so 0 and 4 lack a neighbour), a
  right-camera line and an absent drive (both ignored or skipped), and test frames 69 and 70
  (70 is the drive's last frame: the centre frame is repeated).

  Returns:
    {'root', 'train_list', 'test_list', 'wall'}: wall = the velodyne-frame distance (m) of
    the plane every test scan sees.
  """
  rng = np.random.default_rng(seed)
  write_kitti_calibration(os.path.join(root, KITTI_DAY))
  for drive, frames in (
      (KITTI_TRAIN_DRIVE, KITTI_TRAIN_FRAMES),
      (KITTI_TEST_DRIVE, KITTI_TEST_FRAMES),
  ):
    for i in frames:
      write_png(
          os.path.join(root, drive, 'image_02', 'data', f'{i:010d}.png'),
          random_image(rng, KITTI_H, KITTI_W),
      )
  wall = 10.0
  velo_dir = os.path.join(root, KITTI_TEST_DRIVE, 'velodyne_points', 'data')
  os.makedirs(velo_dir, exist_ok=True)
  for i in KITTI_TEST_FRAMES:
    plane_scan(wall, seed=i).tofile(os.path.join(velo_dir, f'{i:010d}.bin'))
  lists = {}
  for split, lines in (
      ('train', [f'{KITTI_TRAIN_DRIVE} {i} l' for i in KITTI_TRAIN_FRAMES]),
      ('test', [f'{KITTI_TEST_DRIVE} {i:010d} l' for i in (69, 70)]),
  ):
    path = os.path.join(root, f'{split}_files.txt')
    with open(path, 'w') as f:
      f.write('\n'.join(lines + [f'{KITTI_TRAIN_DRIVE} 1 r', '2011_09_28/absent_drive_sync 5 l']))
      f.write('\n')
    lists[split] = path
  return {'root': root, 'train_list': lists['train'], 'test_list': lists['test'], 'wall': wall}


def build_kitti_raw(tmp_dir: str, height: int = 16, width: int = 48):
  """Writes the KITTI fixture under tmp_dir/raw and builds it into tmp_dir/tfds.

  Returns:
    (data_dir, config, builder, fixture dict).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets.kitti_raw import builder as kitti  # pylint: disable=g-import-not-at-top

  fixture = write_kitti_raw(os.path.join(tmp_dir, 'raw'))
  config = kitti.make_config(
      height,
      width,
      split_files={'train': fixture['train_list'], 'test': fixture['test_list']},
  )
  data_dir = os.path.join(tmp_dir, 'tfds')
  ds_builder = kitti.KittiRaw(config=config, data_dir=data_dir)
  ds_builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=fixture['root'])
  )
  return data_dir, config, ds_builder, fixture


# Cityscapes: raw frames of CITY_W x CITY_H (a 1/8 scale of 2048 x 1024), one snippet per split
# of CITY_FRAMES frames whose frame CITY_LABELLED (the 20th of a real snippet) has a camera
# JSON, gtFine labels and a disparity map.
CITY_H, CITY_W = 128, 256
CITY_FIRST, CITY_FRAMES, CITY_LABELLED = 275, 6, 278
CITY_CAMERA = {
    'extrinsic': {'baseline': 0.209313, 'pitch': 0.038, 'roll': 0.0, 'x': 1.7, 'y': 0.1,
                  'yaw': -0.0195, 'z': 1.22},
    'intrinsic': {'fx': 2262.52 / 8, 'fy': 2265.3017905988554 / 8, 'u0': 1096.98 / 8,
                  'v0': 513.137 / 8},
}  # fmt: skip


def write_cityscapes(root: str, seed: int = 0, splits=('train', 'val')) -> dict:
  """Writes a Cityscapes layout (leftImg8bit_sequence, camera, gtFine, disparity).

  Labels of the labelled frame: the top half labelId 23 (sky), the bottom half 26 (car).
  Disparity: constant p = 1 + 256 * 8 (d = 8 px), so depth = baseline fx / 8 everywhere.
  """
  rng = np.random.default_rng(seed)
  city, seq = 'aachen', '000000'
  for split in splits:
    base = os.path.join(root, 'leftImg8bit_sequence', split, city)
    for f in range(CITY_FIRST, CITY_FIRST + CITY_FRAMES):
      write_png(
          os.path.join(base, f'{city}_{seq}_{f:06d}_leftImg8bit.png'),
          random_image(rng, CITY_H, CITY_W),
      )
    stem = f'{city}_{seq}_{CITY_LABELLED:06d}'
    cam_dir = os.path.join(root, 'camera', split, city)
    os.makedirs(cam_dir, exist_ok=True)
    with open(os.path.join(cam_dir, f'{stem}_camera.json'), 'w') as fh:
      json.dump(CITY_CAMERA, fh, indent=2)
    labels = np.full((CITY_H, CITY_W), 26, np.uint8)
    labels[: CITY_H // 2] = 23
    write_png(os.path.join(root, 'gtFine', split, city, f'{stem}_gtFine_labelIds.png'), labels)
    disparity = np.full((CITY_H, CITY_W), 1 + 256 * 8, np.uint16)
    write_png(os.path.join(root, 'disparity', split, city, f'{stem}_disparity.png'), disparity)
  return {'root': root, 'city': city, 'seq': seq}


def build_cityscapes(tmp_dir: str, height: int = 16, width: int = 52):
  """Writes the Cityscapes fixture under tmp_dir/raw and builds it into tmp_dir/tfds.

  Returns:
    (data_dir, config, builder, fixture dict).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets.cityscapes import builder as cs  # pylint: disable=g-import-not-at-top

  fixture = write_cityscapes(os.path.join(tmp_dir, 'raw'))
  config = cs.make_config(height, width, raw_size=(CITY_H, CITY_W))
  data_dir = os.path.join(tmp_dir, 'tfds')
  ds_builder = cs.Cityscapes(config=config, data_dir=data_dir)
  ds_builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=fixture['root'])
  )
  return data_dir, config, ds_builder, fixture
