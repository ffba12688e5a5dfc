"""KITTI raw builder: calibration parsing, velodyne ground truth, triplets, splits, bad input."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from taskology_tf.datasets import loader
from taskology_tf.datasets import raw_io
from taskology_tf.datasets.kitti_raw import builder as kitti
from taskology_tf.datasets.kitti_raw import calibration
from taskology_tf.geometry import camera
from taskology_tf.inputs import pipelines
from tests.datasets import fixtures

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAL = os.path.join(REPO_ROOT, '..', 'shared', 'data', 'real')
REAL_CALIB = os.path.join(REAL, 'kitti_raw_calib', '2011_09_26_calib', '2011_09_26')
REAL_OBJECT = os.path.join(REAL, 'kitti_object')
REAL_SEQUENCE = os.path.join(REAL, 'kitti_sequence')


def _needs(path):
  return pytest.mark.skipif(
      not os.path.isdir(path), reason=f'real KITTI sample {path} is absent (../shared/data/real)'
  )


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """The fixture layout, built once: (data_dir, config, builder, fixture)."""
  return fixtures.build_kitti_raw(str(tmp_path_factory.mktemp('kitti')))


def _examples(ds_builder, split):
  return list(tfds.as_numpy(ds_builder.as_dataset(split=split)))


# ---------------------------------------------------------------------------------------------
# Calibration and velodyne projection on the real files.


@_needs(REAL_CALIB)
def test_real_calibration_parses_to_the_numbers_in_the_files():
  calib = calibration.load_calibration(REAL_CALIB)
  # calib_cam_to_cam.txt, P_rect_02: 7.215377e+02 0 6.095593e+02 4.485728e+01 / 0 7.215377e+02
  # 1.728540e+02 2.163791e-01 / 0 0 1 2.745884e-03; S_rect_02: 1242 375.
  np.testing.assert_array_equal(
      calib.p_rect,
      [
          [7.215377e02, 0.0, 6.095593e02, 4.485728e01],
          [0.0, 7.215377e02, 1.728540e02, 2.163791e-01],
          [0.0, 0.0, 1.0, 2.745884e-03],
      ],
  )
  np.testing.assert_array_equal(calib.r_rect[0], [9.999239e-01, 9.837760e-03, -7.445048e-03])
  assert calib.image_size == (375, 1242)
  # calib_velo_to_cam.txt: R row 0 and T.
  np.testing.assert_array_equal(
      calib.velo_to_cam[0, :3], [7.533745e-03, -9.999714e-01, -6.166020e-04]
  )
  np.testing.assert_array_equal(
      calib.velo_to_cam[:3, 3], [-4.069766e-03, -7.631618e-02, -2.717806e-01]
  )
  np.testing.assert_array_equal(calib.velo_to_cam[3], [0, 0, 0, 1])
  np.testing.assert_array_equal(calib.intrinsics, calib.p_rect[:, :3])


@_needs(REAL_CALIB)
def test_a_point_20m_ahead_of_the_velodyne_lands_where_the_real_calibration_puts_it():
  # X_velo = (20, 0, 0). Camera 0: X0 = R X + T = (7.5337e-3 * 20 - 0.00407,
  # 1.4802e-2 * 20 - 0.07632, 0.99986 * 20 - 0.27178) = (0.14660, 0.21973, 19.72546).
  # Rectified: R_rect_00 X0 = (0.00189, 0.13386, 19.72677). P_rect_02 (Eq. 1):
  # z = 19.72677 + 2.745884e-3 = 19.72952; u = (721.5377 * 0.00189 + 609.5593 * 19.72677
  # + 44.85728) / z = 611.82; v = (721.5377 * 0.13386 + 172.854 * 19.72677 + 0.21638) / z
  # = 177.74. Devkit indices: column round(611.82) - 1 = 611, row round(177.74) - 1 = 177.
  calib = calibration.load_calibration(REAL_CALIB)
  depth = calibration.project_velodyne(np.array([[20.0, 0.0, 0.0, 0.5]], np.float32), calib)
  rows, cols = np.nonzero(depth)
  assert (rows.tolist(), cols.tolist()) == ([177], [611])
  assert depth[177, 611] == pytest.approx(19.7295, abs=2e-4)


@_needs(REAL_CALIB)
def test_a_synthetic_wall_scan_lands_inside_the_image_at_its_distance():
  # A wall x = 20 m (velodyne) spanning |y| < 20, |z| < 6.7: camera z = 0.99986 x + 0.0075 y
  # + 0.0148 z - 0.27 (+ rectification, ~1e-3), so every depth is 19.73 +- 0.15 + 0.1 m.
  # Points behind the velodyne (x < 0) are dropped.
  calib = calibration.load_calibration(REAL_CALIB)
  scan = fixtures.plane_scan(20.0, num=20000)
  behind = scan.copy()
  behind[:, 0] = -20.0
  depth = calibration.project_velodyne(np.concatenate([scan, behind]), calib)
  hit = depth > 0
  assert hit.sum() > 5000  # Most of the wall is in view (the image sees ~+-17 m at 20 m).
  assert depth[hit].min() > 19.45 and depth[hit].max() < 20.0
  # The nearest point per pixel is kept. Camera 2's centre C (the null vector of the 3x4
  # projection of Eq. 1) and X project to the same pixel as every C + s (X - C), at depth
  # s z(X) (z is linear along the ray and 0 at C). Adding each point again at s = 0.9 puts a
  # nearer point in every hit pixel: the map becomes 0.9 times the old one.
  _, _, vt = np.linalg.svd(calib.velo_to_image)
  centre = vt[-1, :3] / vt[-1, 3]
  nearer = scan.copy()
  nearer[:, :3] = centre + 0.9 * (scan[:, :3] - centre)
  near = calibration.project_velodyne(np.concatenate([scan, nearer]), calib)
  same = np.isclose(near[hit], 0.9 * depth[hit], rtol=1e-5)
  assert same.mean() > 0.99  # (a few points on a pixel's rounding edge may flip pixel)


@_needs(REAL_OBJECT)
def test_a_real_velodyne_scan_gives_plausible_metres(tmp_path):
  # KITTI object frame 000001's scan with its own calibration (P2, R0_rect, Tr_velo_to_cam),
  # written in the raw release's two-file format.
  values = {}
  for line in open(os.path.join(REAL_OBJECT, 'calib', '000001.txt')):
    if ':' in line:
      key, rest = line.split(':', 1)
      values[key] = np.array([float(v) for v in rest.split()])
  tr = values['Tr_velo_to_cam'].reshape(3, 4)
  fixtures.write_kitti_calibration(
      str(tmp_path),
      p_rect=values['P2'].reshape(3, 4),
      size=(1242, 375),
      velo_r=tr[:, :3],
      velo_t=tr[:, 3],
      r_rect=values['R0_rect'].reshape(3, 3),
  )
  calib = calibration.load_calibration(str(tmp_path))
  scan = calibration.read_velodyne(os.path.join(REAL_OBJECT, 'velodyne', '000001.bin'))
  depth = calibration.project_velodyne(scan, calib)
  hit = depth > 0
  # A 64-beam scan covers ~20k pixels of the 375 x 1242 image, from ~4 m (road in front of
  # the bonnet) to ~80 m, nearly all in the lower part of the image (the beams look down).
  assert 10000 < hit.sum() < 40000
  assert 2.0 < depth[hit].min() < 6.0 and 40.0 < depth[hit].max() < 120.0
  assert 5.0 < np.median(depth[hit]) < 40.0
  rows = np.nonzero(hit)[0]
  assert rows.min() > 100 and np.mean(rows > 150) > 0.9


# ---------------------------------------------------------------------------------------------
# The builder on the fixture layout.


def test_splits_and_skips(built):
  _, _, ds_builder, _ = built
  # Train lists frames 0-4 of a 5-frame drive: 0 and 4 lack a neighbour (skipped), 1-3 built;
  # test lists 69 and 70 (70 is the drive's last frame: kept, centre repeated).
  assert {k: v.num_examples for k, v in ds_builder.info.splits.items()} == {'train': 3, 'test': 2}
  skipped = dict(ds_builder.info.metadata['skipped'])
  assert skipped == {
      'test: drive not in manual_dir': 1,
      'train: drive not in manual_dir': 1,
      'train: neighbour frame missing (start or end of a drive)': 2,
  }
  frames = sorted(tuple(e['frame_indices']) for e in _examples(ds_builder, 'train'))
  assert frames == [(0, 1, 2), (1, 2, 3), (2, 3, 4)]
  assert sorted(tuple(e['frame_indices']) for e in _examples(ds_builder, 'test')) == [
      (68, 69, 70),
      (69, 70, 70),
  ]


def test_images_are_the_resized_frames_and_intrinsics_scale_p_rect_02(built):
  _, config, ds_builder, fixture = built
  ex = [e for e in _examples(ds_builder, 'train') if e['frame_indices'][1] == 2][0]
  for t, frame in enumerate((1, 2, 3)):
    raw = raw_io.read_image(kitti.frame_path(fixture['root'], fixtures.KITTI_TRAIN_DRIVE, frame))
    np.testing.assert_array_equal(ex['image'][t], raw_io.resize_image(raw, 16, 48))
  # P_rect_02 of the fixture: fx = fy = 721.5377 / 16 = 45.0961, cx = 609.5593 / 16 = 38.0975,
  # cy = 172.854 / 16 = 10.8034 at 78 x 24. Resized to 48 x 16 (sx = 48 / 78, sy = 16 / 24):
  # fx' = 45.0961 * 0.61538 = 27.7515, cx' = (38.0975 + 0.5) * 0.61538 - 0.5 = 23.2523,
  # fy' = 45.0961 * 0.66667 = 30.0641, cy' = (10.8034 + 0.5) * 0.66667 - 0.5 = 7.0356.
  np.testing.assert_allclose(
      ex['intrinsics'], [[27.7515, 0, 23.2523], [0, 30.0641, 7.0356], [0, 0, 1]], atol=1e-3
  )
  # The same as the project's TF convention (geometry.camera.scale_intrinsics).
  k = fixtures.KITTI_P_RECT_02[:, :3]
  np.testing.assert_allclose(
      ex['intrinsics'], camera.scale_intrinsics(k, 48 / 78, 16 / 24).numpy(), rtol=1e-6
  )
  assert not ex['has_gt'] and ex['gt_size'].tolist() == [0, 0] and not ex['depth'].any()
  assert ex['original_size'].tolist() == [24, 78]


def test_test_clips_carry_the_velodyne_ground_truth(built):
  _, _, ds_builder, fixture = built
  for ex in _examples(ds_builder, 'test'):
    assert ex['has_gt'] and ex['gt_size'].tolist() == [fixtures.KITTI_H, fixtures.KITTI_W]
    gt = ex['gt_depth']
    assert gt.shape == kitti.DEFAULT_GT_SIZE  # Zero-padded beyond gt_size.
    assert not gt[fixtures.KITTI_H :].any() and not gt[:, fixtures.KITTI_W :].any()
    hit = gt > 0
    # The wall 10 m ahead of the velodyne: camera z = 0.99986 * 10 - 0.27 (+- 0.0075 |y| +
    # 0.0148 |z| with |y| < 10, |z| < 3.3) = 9.73 +- 0.13 m.
    assert hit.sum() > 300 and gt[hit].min() > 9.55 and gt[hit].max() < 9.9
    # The output-size map is the nearest value per output pixel of the full one.
    np.testing.assert_array_equal(
        ex['depth'][1, :, :, 0], raw_io.downsample_sparse_depth(gt[:24, :78], 16, 48)
    )
    assert not ex['depth'][0].any() and not ex['depth'][2].any()
    scan = calibration.read_velodyne(
        kitti.velodyne_path(fixture['root'], fixtures.KITTI_TEST_DRIVE, ex['frame_indices'][1])
    )
    calib = calibration.load_calibration(os.path.join(fixture['root'], fixtures.KITTI_DAY))
    np.testing.assert_array_equal(gt[:24, :78], calibration.project_velodyne(scan, calib))


def test_loader_and_gin_clip_source_read_the_build(built):
  data_dir, _, _, _ = built
  ds = loader.load_kitti_raw('test', data_dir=data_dir, height=16, width=48)
  assert ds.element_spec['image'] == tf.TensorSpec([3, 16, 48, 3], tf.uint8)
  assert ds.element_spec['intrinsics'] == tf.TensorSpec([3, 3], tf.float32)
  assert ds.element_spec['depth'] == tf.TensorSpec([3, 16, 48, 1], tf.float32)
  from taskology_tf.datasets import clips

  ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
  shard = list(clips.kitti_raw_clips('train', data_dir, 16, 48, input_context=ctx))
  assert len(shard) in (1, 2)
  with pytest.raises(FileNotFoundError, match='build_dataset.py --dataset=kitti_raw'):
    loader.load_kitti_raw('test', data_dir=data_dir, height=32, width=96)
  # The project's pipelines consume the clips unchanged: mediator batches (labels dropped)
  # and evaluation frames (depth labels kept, 0 where there is no velodyne return).
  mediator = next(iter(pipelines.mediator_dataset(ds, batch_size=2)))
  assert set(mediator) == {'image', 'intrinsics'} and mediator['image'].shape == (2, 3, 16, 48, 3)
  frames = next(iter(pipelines.evaluation_dataset(ds, batch_size=3, frames=(1,))))
  assert frames['depth'].shape == (2, 16, 48, 1) and float(tf.reduce_max(frames['depth'])) > 9


# ---------------------------------------------------------------------------------------------
# Real frames.


@_needs(REAL_SEQUENCE)
def test_real_kitti_frames_build(tmp_path):
  # The five real frames (1088 x 192 crops) as a drive, with a calibration whose P_rect_02
  # holds intrinsics.txt's fx fy cx cy and S_rect_02 their size.
  fx, fy, cx, cy = np.loadtxt(os.path.join(REAL_SEQUENCE, 'intrinsics.txt'))
  root = tmp_path / 'raw'
  drive = '2011_09_26/2011_09_26_drive_0009_sync'
  fixtures.write_kitti_calibration(
      str(root / '2011_09_26'),
      p_rect=np.array([[fx, 0, cx, 0], [0, fy, cy, 0], [0, 0, 1, 0]]),
      size=(1088, 192),
  )
  data = root / drive / 'image_02' / 'data'
  data.mkdir(parents=True)
  for i in range(5):
    shutil.copy(os.path.join(REAL_SEQUENCE, f'{i:03d}.png'), data / f'{i:010d}.png')
  (tmp_path / 'train.txt').write_text(f'{drive} 2 l\n')
  config = kitti.make_config(64, 208, split_files={'train': str(tmp_path / 'train.txt')})
  ds_builder = kitti.KittiRaw(config=config, data_dir=str(tmp_path / 'tfds'))
  ds_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  (ex,) = _examples(ds_builder, 'train')
  # 1088 x 192 -> 208 x 64: sx = 208 / 1088, sy = 64 / 192 = 1/3.
  sx, sy = 208 / 1088, 1 / 3
  np.testing.assert_allclose(
      ex['intrinsics'],
      [[fx * sx, 0, (cx + 0.5) * sx - 0.5], [0, fy * sy, (cy + 0.5) * sy - 0.5], [0, 0, 1]],
      rtol=1e-5,
  )
  real = raw_io.read_image(os.path.join(REAL_SEQUENCE, '002.png'))
  np.testing.assert_array_equal(ex['image'][1], raw_io.resize_image(real, 64, 208))
  assert ex['image'].std() > 20  # Real texture, not a blank decode.


# ---------------------------------------------------------------------------------------------
# Bad input.


def _build(root, tmp_path, name='tfds', split_files=None):
  config = kitti.make_config(
      16,
      48,
      split_files=split_files
      or {
          'train': os.path.join(root, 'train_files.txt'),
          'test': os.path.join(root, 'test_files.txt'),
      },
  )
  ds_builder = kitti.KittiRaw(config=config, data_dir=str(tmp_path / name))
  ds_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  return ds_builder


@pytest.fixture
def raw(tmp_path):
  return fixtures.write_kitti_raw(str(tmp_path / 'raw'))['root']


def test_truncated_png_fails_the_build_atomically_and_a_fixed_build_succeeds(raw, tmp_path):
  path = kitti.frame_path(raw, fixtures.KITTI_TRAIN_DRIVE, 3)
  good = open(path, 'rb').read()
  open(path, 'wb').write(good[: len(good) // 2])
  with pytest.raises(raw_io.RawDataError, match='0000000003.png.*could not be decoded'):
    _build(raw, tmp_path)
  # Nothing a later run reads as complete: not prepared, the loader refuses, no version dir.
  config = kitti.make_config(16, 48)
  assert not kitti.KittiRaw(config=config, data_dir=str(tmp_path / 'tfds')).is_prepared()
  with pytest.raises(FileNotFoundError, match='not built'):
    loader.load_kitti_raw('train', data_dir=str(tmp_path / 'tfds'), height=16, width=48)
  version_dir = tmp_path / 'tfds' / 'kitti_raw' / '16x48'
  assert not (version_dir / '1.0.0').exists()
  open(path, 'wb').write(good)
  assert _build(raw, tmp_path).info.splits['train'].num_examples == 3


def test_interrupted_build_leaves_nothing_complete(raw, tmp_path, monkeypatch):
  calls = []
  real_make = kitti.make_example

  def interrupted(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt  # Ctrl-C in the middle of the train split.
    return real_make(*args, **kwargs)

  monkeypatch.setattr(kitti, 'make_example', interrupted)
  with pytest.raises(KeyboardInterrupt):
    _build(raw, tmp_path)
  assert not kitti.KittiRaw(
      config=kitti.make_config(16, 48), data_dir=str(tmp_path / 'tfds')
  ).is_prepared()
  assert not (tmp_path / 'tfds' / 'kitti_raw' / '16x48' / '1.0.0').exists()


def test_malformed_calibration_names_file_and_entry(raw, tmp_path):
  path = os.path.join(raw, fixtures.KITTI_DAY, 'calib_cam_to_cam.txt')
  text = open(path).read()
  lines = [
      l if not l.startswith('P_rect_02') else ' '.join(l.split()[:-1]) for l in text.splitlines()
  ]
  open(path, 'w').write('\n'.join(lines) + '\n')
  with pytest.raises(
      calibration.CalibrationError,
      match=r"calib_cam_to_cam.txt: entry 'P_rect_02' has 11 values, expected 12",
  ):
    _build(raw, tmp_path)
  open(path, 'w').write(text.replace('S_rect_02', 'Srect02'))
  with pytest.raises(calibration.CalibrationError, match="no numeric entry 'S_rect_02'"):
    _build(raw, tmp_path)
  open(path, 'w').write(text + 'garbage line without colon\n')
  with pytest.raises(
      calibration.CalibrationError, match=r'calib_cam_to_cam.txt:\d+: expected "key: numbers"'
  ):
    _build(raw, tmp_path)
  os.remove(path)
  with pytest.raises(calibration.CalibrationError, match='calib_cam_to_cam.txt does not exist'):
    _build(raw, tmp_path)


def test_truncated_velodyne_and_mismatched_image_size_are_errors(raw, tmp_path):
  scan = kitti.velodyne_path(raw, fixtures.KITTI_TEST_DRIVE, 69)
  data = open(scan, 'rb').read()
  open(scan, 'wb').write(data[:-6])
  with pytest.raises(ValueError, match='0000000069.bin has .* bytes, expected a multiple of 16'):
    _build(raw, tmp_path)
  open(scan, 'wb').write(data)
  fixtures.write_png(
      kitti.frame_path(raw, fixtures.KITTI_TRAIN_DRIVE, 2), np.zeros((30, 78, 3), np.uint8)
  )
  with pytest.raises(raw_io.RawDataError, match='0000000002.png is 78x30, but .*S_rect_02 = 78x24'):
    _build(raw, tmp_path)


def test_missing_folders_are_errors_or_counted(raw, tmp_path):
  # TFDS itself refuses a missing manual_dir, naming it and giving the download instructions
  # (tools/build_dataset.py checks first and exits with an error naming the flag).
  with pytest.raises(AssertionError, match='(?s)nowhere does not exist.*calib_cam_to_cam.txt'):
    _build(
        str(tmp_path / 'nowhere'),
        tmp_path,
        split_files={'test': os.path.join(raw, 'test_files.txt')},
    )
  shutil.rmtree(os.path.join(raw, fixtures.KITTI_TEST_DRIVE, 'velodyne_points'))
  ds_builder = _build(raw, tmp_path)
  assert 'test' not in ds_builder.info.splits  # Both test frames lost their scans.
  assert dict(ds_builder.info.metadata['skipped'])['test: velodyne scan missing'] == 2
  shutil.rmtree(os.path.join(raw, fixtures.KITTI_TRAIN_DRIVE))
  shutil.rmtree(os.path.join(raw, fixtures.KITTI_TEST_DRIVE))
  with pytest.raises(raw_io.RawDataError, match='no frame of any split list was found'):
    _build(raw, tmp_path, name='tfds2')
  (tmp_path / 'bad.txt').write_text('2011_09_26/x_sync zero l\n')
  with pytest.raises(ValueError, match=r'bad.txt:1: expected'):
    kitti.read_split_file(str(tmp_path / 'bad.txt'))


def test_build_tool_with_the_shipped_eigen_lists_prints_the_summary(raw, tmp_path):
  # The fixture drives carry real Eigen frame numbers (drive 0002's 69 is in the Eigen test
  # list; drive 0001 is no test drive, so Zhou et al.'s rule puts its frames 0-4 in train, none
  # in validation by their hash, and 1-3 have both neighbours): the shipped lists build them and
  # count the hundreds of listed test frames that are not in this manual_dir. (In process: the tool's main
  # only parses flags around this function.)
  from taskology_tf_tools import build_dataset

  assert len(kitti.read_split_file(kitti.DEFAULT_SPLIT_FILES[2][1])) == 697
  _, lines = build_dataset.build_video_dataset('kitti_raw', raw, 16, 48, str(tmp_path / 'tfds'))
  out = '\n'.join(lines)
  assert '  test: 1 examples' in out and '  train: 3 examples' in out, out
  assert 'test: drive not in manual_dir: 672' in out, out  # The 27 absent drives' test frames.
  assert 'validation: split empty' in out, out
  _, again = build_dataset.build_video_dataset('kitti_raw', raw, 16, 48, str(tmp_path / 'tfds'))
  assert 'already built' in again[0] and again[1:] == lines[1:]  # Summary kept in metadata.
  with pytest.raises(FileNotFoundError, match='missing.*is not a directory'):
    build_dataset.build_video_dataset('kitti_raw', str(tmp_path / 'missing'), 16, 48, str(tmp_path))
