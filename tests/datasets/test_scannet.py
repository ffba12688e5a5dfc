"""ScanNet: the .sens format, both raw layouts, the builder's triplets, poses, intrinsics and
normals, bad inputs, and the real sample in ../shared/data/real/scannet/."""

import os
import shutil
import struct

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from taskology_tf.datasets import loader
from taskology_tf.datasets import raw_io
from taskology_tf.datasets.scannet import builder as scannet
from taskology_tf.datasets.scannet import reader
from taskology_tf.datasets.scannet import sens
from tests.conftest import REPO_ROOT
from tests.datasets import scannet_fixture as fx

REAL = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data', 'real', 'scannet')
H, W = 12, 16  # Half the fixture's 24 x 32 depth, as 240 x 320 is half of ScanNet's 480 x 640.


def _examples(data_dir, split, **kwargs):
  return list(tfds.as_numpy(loader.load_scannet(split, data_dir, H, W, **kwargs)))


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """The fixture's scans written once in both layouts and built from each (tools' build path)."""
  from taskology_tf_tools import build_dataset  # pylint: disable=g-import-not-at-top

  tmp = tmp_path_factory.mktemp('scannet')
  raw = fx.write_scannet_fixture(str(tmp / 'raw'))
  out = {'raw': raw}
  for layout in ('sens', 'exported'):
    data_dir = str(tmp / f'tfds_{layout}')
    _, lines = build_dataset.build_video_dataset('scannet', raw[f'{layout}_root'], H, W, data_dir)
    out[layout] = data_dir
    out[f'{layout}_lines'] = lines
  return out


# --- The .sens format.


def _random_frames(rng, n, header):
  frames = []
  for i in range(n):
    color = rng.integers(0, 256, header.color_size + (3,), dtype=np.uint8)
    depth = rng.integers(0, 5000, header.depth_size, dtype=np.uint16)
    pose = np.eye(4, dtype=np.float32)
    pose[:3, 3] = rng.normal(size=3)
    frames.append(
        sens.SensFrame(
            pose, 1000 * i, 1000 * i + 7, sens.encode_color(color, header.color_compression),
            sens.encode_depth(depth, header.depth_compression),
        )
    )  # fmt: skip
  return frames


def test_sens_writer_and_reader_round_trip_the_exact_bytes(tmp_path):
  rng = np.random.default_rng(3)
  header = fx.fixture_header()
  header = sens.SensHeader(**{**header.__dict__, 'color_compression': 'png'})  # Lossless.
  frames = _random_frames(rng, 3, header)
  path = str(tmp_path / 'x.sens')
  sens.write_sens(path, header, frames)
  # Layout by hand (sensorData.h): 4 (version) + 8 + 15 (name) + 4 * 64 (matrices) + 2 * 4
  # (compressions) + 4 * 4 (sizes) + 4 (depth shift) + 8 (frame count) = 319 header bytes, then
  # per frame 64 + 4 * 8 = 96 bytes and the payloads, then 8 bytes of IMU frame count (0).
  payload = sum(len(f.color_bytes) + len(f.depth_bytes) for f in frames)
  assert os.path.getsize(path) == 319 + 3 * 96 + payload + 8
  with open(path, 'rb') as f:
    data = f.read()
  assert struct.unpack_from('<IQ', data, 0) == (4, 15) and data[12:27] == b'StructureSensor'
  # intrinsic_depth is the third matrix (offset 27 + 128); fx is its first float.
  assert struct.unpack_from('<f', data, 27 + 128)[0] == np.float32(fx.DEPTH_K[0, 0])
  assert struct.unpack_from('<2i4IfQ', data, 27 + 256) == (
      1, 1, 48, 36, 32, 24, 1000.0, 3,
  )  # fmt: skip
  assert struct.unpack_from('<Q', data, len(data) - 8) == (0,)

  read = sens.SensFile(path)
  assert len(read) == 3 and read.header.sensor_name == b'StructureSensor'
  assert read.header.color_size == fx.COLOR_SIZE and read.header.depth_size == fx.DEPTH_SIZE
  np.testing.assert_array_equal(read.header.intrinsic_depth[:3, :3], fx.DEPTH_K.astype(np.float32))
  for i, frame in enumerate(frames):
    got = read.raw_frame(i)
    assert got.color_bytes == frame.color_bytes and got.depth_bytes == frame.depth_bytes
    assert (got.timestamp_color, got.timestamp_depth) == (1000 * i, 1000 * i + 7)
    np.testing.assert_array_equal(got.camera_to_world, frame.camera_to_world)
    # PNG colour and zlib depth decode to exactly what was encoded.
    png = sens.encode_color(read.color(i), 'png')
    assert png == frame.color_bytes
    assert sens.encode_depth(read.depth(i)) == frame.depth_bytes


def test_a_truncated_sens_file_is_an_error_naming_the_file_and_frame(tmp_path):
  rng = np.random.default_rng(0)
  header = fx.fixture_header()
  frames = _random_frames(rng, 3, header)
  path = str(tmp_path / 'scene0191_00.sens')
  sens.write_sens(path, header, frames)
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    data = f.read()
  # Cut inside the last frame's payload (8 IMU bytes + a few payload bytes from the end).
  with open(path, 'wb') as f:
    f.write(data[: size - 8 - 5])
  with pytest.raises(sens.SensError, match=r'scene0191_00\.sens is truncated at frame 2 of 3'):
    sens.SensFile(path)
  with open(path, 'wb') as f:
    f.write(data[:100])  # Inside the header's matrices.
  with pytest.raises(sens.SensError, match=r'scene0191_00\.sens is truncated'):
    sens.SensFile(path)


def test_export_writes_the_sens_content_in_sensreaders_layout(tmp_path, built):
  raw = built['raw']
  name = fx.SCENES['train'][0]
  scan = sens.SensFile(os.path.join(raw['sens_root'], name, f'{name}.sens'))
  exported = reader.ExportedScene(os.path.join(raw['exported_root'], name))
  assert exported.frames == list(range(fx.NUM_FRAMES))
  assert sorted(os.listdir(os.path.join(exported.source, 'intrinsic'))) == [
      'extrinsic_color.txt', 'extrinsic_depth.txt', 'intrinsic_color.txt', 'intrinsic_depth.txt'
  ]  # fmt: skip
  for i in (0, 17, fx.NUM_FRAMES - 1):
    np.testing.assert_array_equal(exported.pose(i), scan.poses[i])  # '%.9g': float32 exact.
    np.testing.assert_array_equal(exported.depth(i), raw['depth'][name][i])
    np.testing.assert_array_equal(exported.color(i), scan.color(i))
    with open(os.path.join(exported.source, 'color', f'{i}.jpg'), 'rb') as f:
      assert f.read() == scan.raw_frame(i).color_bytes  # Not re-encoded.
  np.testing.assert_array_equal(exported.intrinsics('depth'), scan.header.intrinsic_depth[:3, :3])
  with pytest.raises(FileExistsError):
    sens.export_sens(scan.path, exported.source)


# --- The builder on the fixture.


def test_splits_summary_and_both_layouts_build_the_same_examples(built):
  # 62 frames per scan, triplets (s, s + 10, s + 20) every 30 frames: s = 0 and 30.
  for layout in ('sens', 'exported'):
    lines = '\n'.join(built[f'{layout}_lines'])
    assert 'train: 4 examples' in lines and 'validation: 2 examples' in lines, lines
    assert 'test: 2 examples' in lines and 'train: scene not in manual_dir: 1199' in lines, lines
  for split in ('train', 'validation', 'test'):
    a, b = _examples(built['sens'], split), _examples(built['exported'], split)
    assert len(a) == len(b) == len(fx.SCENES[split]) * 2
    for x, y in zip(a, b):
      assert x.keys() == y.keys()
      for key in x:
        np.testing.assert_array_equal(x[key], y[key], err_msg=key)
  first = _examples(built['sens'], 'train')[0]
  assert first['scene'] == b'scene0191_00' and first['frame_indices'].tolist() == [0, 10, 20]


def test_clip_format(built):
  ex = _examples(built['sens'], 'train')[0]
  shapes = {k: (v.shape, v.dtype) for k, v in ex.items() if hasattr(v, 'shape')}
  assert shapes['image'] == ((3, H, W, 3), np.uint8)
  assert shapes['depth'] == ((3, H, W, 1), np.float32)
  assert shapes['normals'] == ((3, H, W, 3), np.float32)
  assert shapes['intrinsics'] == ((3, 3), np.float32)
  assert shapes['egomotion'] == ((2, 4, 4), np.float32)
  assert shapes['pose'] == ((3, 4, 4), np.float32)
  assert shapes['frame_indices'] == ((3,), np.int32) and 'depth_mm' not in ex
  assert ex['color_size'].tolist() == list(fx.COLOR_SIZE)
  assert ex['depth_size'].tolist() == list(fx.DEPTH_SIZE)


def test_egomotion_composes_back_to_the_absolute_poses(built):
  for ex in _examples(built['sens'], 'train'):
    pose = ex['pose'].astype(np.float64)
    scene = ex['scene'].decode()
    for i, frame in enumerate(ex['frame_indices']):
      np.testing.assert_array_equal(
          ex['pose'][i], fx.camera_to_world(frame, built['raw']['index'][scene])
      )
    for i in range(2):
      # pose[i + 1] @ cam_{i+1}_from_cam_i = world_from_cam_i.
      np.testing.assert_allclose(pose[i + 1] @ ex['egomotion'][i], pose[i], atol=1e-6)
      # And it maps frame i's camera centre (the origin) to where frame i + 1 sees it.
      centre_i = pose[i][:3, 3]
      in_next = np.linalg.inv(pose[i + 1]) @ np.append(centre_i, 1.0)
      np.testing.assert_allclose(ex['egomotion'][i][:3, 3], in_next[:3], atol=1e-6)


def test_intrinsics_are_the_depth_camera_scaled_to_the_output():
  # Real ScanNet (scene0000_00's intrinsic_depth), 640x480 -> 320x240: sx = sy = 1/2 and with
  # pixel centres at integer coordinates u' = (u + 0.5) / 2 - 0.5, so fx' = 577.590698 / 2 =
  # 288.795349, cx' = 318.905426 / 2 - 0.25 = 159.202713, fy' = 578.729797 / 2 = 289.3648985,
  # cy' = 242.683609 / 2 - 0.25 = 121.0918045.
  k = np.array([[577.590698, 0, 318.905426], [0, 578.729797, 242.683609], [0, 0, 1]])
  np.testing.assert_allclose(
      raw_io.scale_intrinsics(k, 320 / 640, 240 / 480),
      [[288.795349, 0, 159.202713], [0, 289.3648985, 121.0918045], [0, 0, 1]],
      atol=1e-6,
  )


def test_built_intrinsics_golden(built):
  ex = _examples(built['sens'], 'train')[0]
  # Depth camera 32x24 -> 16x12 (sx = sy = 1/2): fx = 28.88 / 2 = 14.44, fy = 28.94 / 2 =
  # 14.47, cx = 15.7 / 2 - 0.25 = 7.6, cy = 11.9 / 2 - 0.25 = 5.7.
  np.testing.assert_allclose(
      ex['intrinsics'], [[14.44, 0, 7.6], [0, 14.47, 5.7], [0, 0, 1]], atol=1e-5
  )
  # Colour 48x36 -> 16x12 (sx = sy = 1/3): fx = 43.3 / 3, fy = 43.4 / 3,
  # cx = (24.0 + 0.5) / 3 - 0.5 = 7.6667, cy = (17.9 + 0.5) / 3 - 0.5 = 5.6333.
  np.testing.assert_allclose(
      ex['color_intrinsics'],
      [[43.3 / 3, 0, 24.5 / 3 - 0.5], [0, 43.4 / 3, 18.4 / 3 - 0.5], [0, 0, 1]],
      atol=1e-5,
  )


def test_depth_and_normals_of_the_fixture_wall(built):
  for ex in _examples(built['sens'], 'train')[:2]:
    scene = ex['scene'].decode()
    for i, frame in enumerate(ex['frame_indices']):
      pose = fx.camera_to_world(frame, built['raw']['index'][scene])
      depth, normals = ex['depth'][i, ..., 0], ex['normals'][i]
      # Nearest resize: output pixel (r, c) samples input pixel (2r + 1, 2c + 1) (floor of the
      # centre (r + 0.5) * 2), so depth is the stored millimetres there, in metres.
      stored = built['raw']['depth'][scene][frame]
      np.testing.assert_allclose(depth, stored[1::2, 1::2] / 1000.0, atol=1e-7)
      # The hole (input rows 5-7, columns 10-13) covers output rows 2, 3 (inputs 5, 7) and
      # columns 5, 6 (inputs 11, 13): depth 0 and the zero (invalid) normal exactly there.
      invalid = np.zeros((H, W), bool)
      invalid[2:4, 5:7] = True
      np.testing.assert_array_equal(depth == 0, invalid)
      np.testing.assert_array_equal(np.all(normals == 0, -1), invalid)
      np.testing.assert_allclose(np.linalg.norm(normals[~invalid], axis=-1), 1.0, atol=2e-3)
      # Away from the hole's rim (every 4-neighbour valid), the normal is close to the wall's
      # analytic normal. Not exact: the nearest sample (2r + 1, 2c + 1) sits a quarter output
      # pixel off the output pixel's centre (2r + 0.5, 2c + 0.5) that the intrinsics describe,
      # which bends the unprojected plane slightly (most at the corners, where the plane's
      # image-space depth gradient is largest), plus whole-mm depth (<= 0.15 deg here) and
      # float16 storage (< 0.1 deg). Measured: up to 1.6 deg; exactness of the method itself
      # is test_normals_method_is_exact_on_a_plane.
      rim = np.zeros_like(invalid)
      rim[1:] |= invalid[:-1]
      rim[:-1] |= invalid[1:]
      rim[:, 1:] |= invalid[:, :-1]
      rim[:, :-1] |= invalid[:, 1:]
      far = ~invalid & ~rim
      cos = normals[far] @ fx.plane_normal(pose)
      assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 2.5


def test_normals_method_is_exact_on_a_plane():
  # Unquantised wall depth at the output camera, with a hole: normals.py's central differences
  # of a plane's points give its normal exactly (its module docstring), so every pixel whose
  # neighbours are all original (not filled) gets the analytic normal to float32 precision;
  # the hole is invalid (zero), and its rim still gets a unit normal facing the camera.
  pose = fx.camera_to_world(7)
  k = raw_io.scale_intrinsics(fx.DEPTH_K, 0.5, 0.5)
  depth = fx.plane_depth(pose, k, (H, W)).astype(np.float32)
  depth[4:7, 8:11] = 0.0
  normals = scannet.normals_from_depth(depth[None], k)[0]
  invalid = depth == 0
  np.testing.assert_array_equal(np.all(normals == 0, -1), invalid)
  grown = invalid.copy()
  grown[3:8, 7:12] = True  # The hole and its 4-neighbour rim (corners too: harmless).
  expected = fx.plane_normal(pose)
  np.testing.assert_allclose(normals[~grown], np.broadcast_to(expected, normals[~grown].shape),
                             atol=2e-5)  # fmt: skip
  rays = np.stack([*np.meshgrid(np.arange(W), np.arange(H)), np.ones((H, W))], -1)
  rim = grown & ~invalid
  assert np.all(np.sum(normals[rim] * (rays[rim] @ np.linalg.inv(k).T), -1) < 0)


def test_fill_holes_takes_the_nearest_valid_value():
  # Pixel 1 is 1 from the 1.0 and 2 from the 4.0; pixel 2 is 1 from the 4.0.
  np.testing.assert_array_equal(scannet.fill_holes(np.array([[1.0, 0, 0, 4.0]])), [[1, 1, 4, 4]])
  np.testing.assert_array_equal(scannet.fill_holes(np.zeros((2, 2))), np.zeros((2, 2)))


def test_sharded_reading_and_the_gin_clip_source(built):
  from taskology_tf.datasets import clips  # pylint: disable=g-import-not-at-top

  whole = list(clips.scannet_clips('train', built['sens'], H, W))
  shards = [
      list(
          clips.scannet_clips(
              'train', built['sens'], H, W, tf.distribute.InputContext(2, i, 1)
          )
      )
      for i in range(2)
  ]  # fmt: skip
  assert len(shards[0]) == len(shards[1]) == 2
  assert sorted(int(c['scene_seed']) for s in shards for c in s) == sorted(
      int(c['scene_seed']) for c in whole
  )


def test_a_missing_build_names_the_command(tmp_path):
  with pytest.raises(FileNotFoundError, match='--dataset=scannet'):
    loader.load_scannet('train', str(tmp_path), H, W)


# --- Bad inputs.


def _one_scene(tmp_path, **kwargs):
  raw = fx.write_scannet_fixture(
      str(tmp_path / 'raw'), scenes={'train': ('scene0191_00',)}, **kwargs
  )
  return raw, os.path.join(raw['exported_root'], 'scene0191_00')


def test_invalid_poses_are_counted_skips_and_no_triplet_spans_them(tmp_path):
  from taskology_tf_tools import build_dataset  # pylint: disable=g-import-not-at-top

  # Frame 35 tracking failure (all -inf, as ScanNet marks it): the triplet (30, 40, 50) spans
  # it and is not formed; (0, 10, 20) is.
  # scene9999_00 is in no official list: a counted skip too.
  raw = fx.write_scannet_fixture(
      str(tmp_path / 'raw'), scenes={'train': ('scene0191_00',), 'none': ('scene9999_00',)},
      invalid_pose_frames=(35,),
  )  # fmt: skip
  builder, lines = build_dataset.build_video_dataset(
      'scannet', raw['sens_root'], H, W, str(tmp_path / 'tfds')
  )
  skipped = dict(builder.info.metadata['skipped'])
  assert skipped['train: invalid pose'] == 1
  assert skipped['train: triplet spans an invalid pose'] == 1
  assert skipped['unlisted: scene in no split list'] == 1
  assert builder.info.splits['train'].num_examples == 1
  assert any('train: invalid pose: 1' in line for line in lines), lines


@pytest.mark.parametrize(
    'text, problem',
    [
        ('1 0 0 0\n0 1 0 0\n0 0 1 nan\n0 0 0 1\n', 'non-finite'),
        ('1.1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n', 'not orthonormal'),
        ('1 0 0 0\n0 1 0 0\n0 0 -1 0\n0 0 0 1\n', 'determinant'),  # A reflection.
        ('1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 1 1\n', 'last row'),
    ],
)
def test_nan_and_non_rigid_pose_files_skip_the_frame(tmp_path, text, problem):
  _, scene_dir = _one_scene(tmp_path, num_frames=22)
  with open(os.path.join(scene_dir, 'pose', '3.txt'), 'w') as f:
    f.write(text)
  skips = raw_io.SkipCounter()
  config = scannet.make_config(H, W)
  items = scannet.plan_scene(reader.open_scene(scene_dir), scene_dir, config, 'train', skips)
  assert items == []  # The only triplet (0, 10, 20) spans frame 3.
  assert skips.counts[('train', scannet.INVALID_POSE)] == 1
  example = skips.examples[('train', scannet.INVALID_POSE)][0]
  assert example.startswith(os.path.join(scene_dir, 'pose', '3.txt')) and problem in example


def test_a_malformed_pose_file_is_an_error_naming_it(tmp_path):
  _, scene_dir = _one_scene(tmp_path, num_frames=22)
  path = os.path.join(scene_dir, 'pose', '4.txt')
  with open(path, 'w') as f:
    f.write('1 0 0 0\n0 1 0 0\n0 0 1 0\n')
  with pytest.raises(raw_io.RawDataError, match='4.txt: expected 4 rows of 4 numbers'):
    scannet.plan_scene(
        reader.open_scene(scene_dir), scene_dir, scannet.make_config(H, W), 'train',
        raw_io.SkipCounter(),
    )  # fmt: skip


def test_a_depth_colour_count_mismatch_is_an_error_naming_the_scene_folder(tmp_path):
  raw, scene_dir = _one_scene(tmp_path, num_frames=22)
  os.remove(os.path.join(scene_dir, 'depth', '7.png'))
  with pytest.raises(raw_io.RawDataError, match=r'scene0191_00: 22 color frames but 21 depth'):
    reader.open_scene(scene_dir)
  builder = scannet.ScanNet(config=scannet.make_config(H, W), data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(raw_io.RawDataError, match=r'scene0191_00: .*only in color/: \[7\]'):
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=raw['exported_root'])
    )


def test_missing_intrinsics_is_an_error_naming_the_file(tmp_path):
  _, scene_dir = _one_scene(tmp_path, num_frames=22)
  path = os.path.join(scene_dir, 'intrinsic', 'intrinsic_depth.txt')
  os.remove(path)
  with pytest.raises(raw_io.RawDataError, match=f'{path} does not exist'):
    scannet.plan_scene(
        reader.open_scene(scene_dir), scene_dir, scannet.make_config(H, W), 'train',
        raw_io.SkipCounter(),
    )  # fmt: skip


def test_a_sens_file_wins_over_exported_folders_in_one_scene(tmp_path):
  raw, scene_dir = _one_scene(tmp_path, num_frames=22)
  shutil.copy(os.path.join(raw['sens_root'], 'scene0191_00', 'scene0191_00.sens'), scene_dir)
  assert isinstance(reader.open_scene(scene_dir), reader.SensScene)


# --- The real sample (4 colour frames, intrinsic_depth.txt, poses; no depth maps).


def _real():
  if not os.path.isdir(REAL):
    pytest.skip(f'real ScanNet sample not found at {REAL} (see ../shared/data/real/SOURCES.md)')
  return reader.ExportedScene(REAL, require_depth=False)


def test_real_sample_intrinsics_equal_the_file():
  scene = _real()
  assert scene.frames == [48, 54, 60, 66]
  with open(os.path.join(REAL, 'intrinsic', 'intrinsic_depth.txt')) as f:
    numbers = [float(v) for v in f.read().split()]
  assert len(numbers) == 16
  np.testing.assert_array_equal(
      scene.intrinsics('depth'), np.float32(np.reshape(numbers, (4, 4))[:3, :3])
  )
  assert scene.intrinsics('depth')[0, 0] == np.float32(577.590698)
  assert scene.color(48).shape == (480, 640, 3)
  # The sample has no intrinsic_color.txt: asking for it names the missing file.
  with pytest.raises(raw_io.RawDataError, match='intrinsic_color.txt does not exist'):
    scene.intrinsics('color')
  # And no depth: the builder's reader refuses it, naming the folder.
  with pytest.raises(raw_io.RawDataError, match='4 color frames but 0 depth frames'):
    reader.ExportedScene(REAL)


def test_real_sample_relative_poses_compose_back_to_the_absolute_ones():
  scene = _real()
  poses = [scene.pose(f).astype(np.float64) for f in scene.frames]
  for pose in poses:
    assert reader.pose_problem(pose) is None  # Rigid within the 6-decimal rounding.
  for a, b in zip(poses[:-1], poses[1:]):
    b_from_a = reader.relative_pose(a, b)
    np.testing.assert_allclose(b @ b_from_a, a, atol=1e-5)
    # Six frames apart (1/5 s) a hand-held camera moves a few centimetres.
    assert 0.005 < np.linalg.norm(b_from_a[:3, 3]) < 0.2
  # Composing the steps gives frame 48 in frame 66's camera.
  chain = np.eye(4)
  for a, b in zip(poses[:-1], poses[1:]):
    chain = reader.relative_pose(a, b) @ chain
  np.testing.assert_allclose(poses[-1] @ chain, poses[0], atol=1e-5)


def test_the_export_tool_exports_a_download_and_resumes(tmp_path, built):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  out = tmp_path / 'exported'
  cmd = [sys.executable, '-m', 'taskology_tf_tools.export_scannet',
         f'--manual_dir={built["raw"]["sens_root"]}', f'--out_dir={out}', '--frame_skip=10']  # fmt: skip
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'exported 4 scenes, 0 already exported' in proc.stdout
  # Frames 0, 10, ..., 60 of 62, numbered as in the .sens file.
  assert sorted(os.listdir(out / 'scene0191_00' / 'pose')) == sorted(
      f'{i}.txt' for i in range(0, 62, 10)
  )
  scene = reader.ExportedScene(str(out / 'scene0568_00'))
  full = reader.ExportedScene(os.path.join(built['raw']['exported_root'], 'scene0568_00'))
  np.testing.assert_array_equal(scene.depth(40), full.depth(40))
  again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
  assert 'exported 0 scenes, 4 already exported (kept)' in again.stdout, again.stderr[-2000:]


def test_a_triplet_frame_absent_from_an_export_is_a_counted_skip(tmp_path):
  # An export without frame 10 (as --frame_skip would leave): (0, 10, 20) cannot be formed.
  _, scene_dir = _one_scene(tmp_path, num_frames=22)
  for sub, ext in (('color', 'jpg'), ('depth', 'png'), ('pose', 'txt')):
    os.remove(os.path.join(scene_dir, sub, f'10.{ext}'))
  skips = raw_io.SkipCounter()
  config = scannet.make_config(H, W)
  assert scannet.plan_scene(reader.open_scene(scene_dir), scene_dir, config, 'train', skips) == []
  assert skips.counts[('train', 'triplet frame missing from the scene')] == 1
  # Frame stride 5, a triplet (s, s + 5, s + 10) at every start s = 0 .. 11 (frames 0 .. 21):
  # those with s, s + 5 or s + 10 = 10 (s = 10, 5, 0) are skipped, the other nine remain.
  config = scannet.make_config(H, W, frame_stride=5, clip_stride=1)
  items = scannet.plan_scene(reader.open_scene(scene_dir), scene_dir, config, 'train', skips)
  assert [item.frames[0] for item in items] == [1, 2, 3, 4, 6, 7, 8, 9, 11]
