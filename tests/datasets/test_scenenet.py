"""SceneNet RGB-D: protobuf generation, camera model goldens, the builder on a format-true fixture
(tests/datasets/scenenet_fixtures.py) and its bad-input cases."""

import os
import shutil

import numpy as np
import pytest

from taskology_tf.datasets import raw_io
from taskology_tf.datasets.scenenet import builder as sn
from taskology_tf.datasets.scenenet import camera
from taskology_tf.datasets.scenenet import proto
from tests.datasets import scenenet_fixtures as fx

# ---------------------------------------------------------------------------------------------
# Protobuf module generation.


def test_generate_caches_by_hash_and_round_trips(tmp_path):
  path = proto.generate(proto.PROTO_PATH, str(tmp_path))
  assert path == os.path.join(
      str(tmp_path), 'scenenet_proto', proto.cache_key(proto.PROTO_PATH), 'scenenet_pb2.py'
  )
  mtime = os.stat(path).st_mtime_ns
  assert proto.generate(proto.PROTO_PATH, str(tmp_path)) == path  # Reused, not regenerated.
  assert os.stat(path).st_mtime_ns == mtime
  # Only the final directory is left: the temporary one was renamed.
  assert os.listdir(os.path.dirname(os.path.dirname(path))) == [
      os.path.basename(os.path.dirname(path))
  ]
  # Another schema, another key.
  other = tmp_path / 'scenenet.proto'
  other.write_text(open(proto.PROTO_PATH).read() + '\nmessage Extra { optional int32 a = 1; }\n')
  assert proto.cache_key(str(other)) != proto.cache_key(proto.PROTO_PATH)

  pb2 = proto.load_module()
  trajectories = pb2.Trajectories()
  t = trajectories.trajectories.add()
  t.render_path = '0/223'
  t.layout.layout_type = pb2.SceneLayout.KITCHEN
  inst = t.instances.add()
  inst.instance_id = 9
  inst.instance_type = pb2.Instance.RANDOM_OBJECT
  inst.object_info.object_pose.rotation_mat11 = 1.0
  view = t.views.add()
  view.frame_num = 7475
  view.shutter_close.lookat.y = 1.8188899755477905
  view.shutter_close.timestamp = 0.016666699200868607
  blob = tmp_path / 'scenenet_rgbd_val.pb'
  blob.write_bytes(trajectories.SerializeToString())
  back = sn.read_trajectories(str(blob))
  assert back == trajectories
  assert back.trajectories[0].views[0].frame_num == 7475
  # Published field numbers: View.frame_num = 1 (varint), so the view's bytes start 0x08.
  assert t.views[0].SerializeToString()[:1] == b'\x08'


def test_generate_failure_names_the_proto_and_protoc_stderr(tmp_path):
  bad = tmp_path / 'broken.proto'
  bad.write_text('syntax = "proto2";\nmessage Broken { optional nosuchtype a = 1; }\n')
  with pytest.raises(proto.ProtoGenerationError) as e:
    proto.generate(str(bad), str(tmp_path / 'cache'))
  assert str(bad) in str(e.value)
  assert 'nosuchtype' in str(e.value)  # protoc's own diagnostic.
  # Nothing half-written is left for a later run to import.
  assert not any(f.endswith('_pb2.py') for _, _, fs in os.walk(tmp_path / 'cache') for f in fs)


# ---------------------------------------------------------------------------------------------
# Camera model goldens.


def test_intrinsics_golden():
  # fx = 160 / tan(30 deg) = 160 sqrt(3); fy = 120 / tan(22.5 deg) = 120 (sqrt(2) + 1); the
  # published ray of pixel index i passes through (i + 0.5) / W * 2 - 1, i.e. pixel centre
  # i = W / 2 - 0.5 is on the axis: cx = 159.5, cy = 119.5.
  k = camera.intrinsics()
  np.testing.assert_allclose(
      k, [[160 * 3**0.5, 0, 159.5], [0, 120 * (2**0.5 + 1), 119.5], [0, 0, 1]], rtol=1e-12
  )
  # Scaled to 120 x 160 (sx = sy = 1/2): fx' = fx / 2, cx' = (159.5 + 0.5) / 2 - 0.5 = 79.5.
  k2 = raw_io.scale_intrinsics(k, 0.5, 0.5)
  np.testing.assert_allclose(k2[0], [80 * 3**0.5, 0, 79.5], rtol=1e-12)
  np.testing.assert_allclose(k2[1], [0, 60 * (2**0.5 + 1), 59.5], rtol=1e-12)


def test_pose_of_a_camera_looking_down_plus_x():
  # Camera at c = (1, 2, 3) looking at c + (1, 0, 0), up (0, 1, 0):
  #   z = (1, 0, 0); x = z x up = (1,0,0) x (0,1,0) = (0, 0, 1); y = z x x = (0, -1, 0).
  # So camera_from_world's rotation has rows x, y, z, and t = -R c = (-3, 2, -1).
  m = camera.camera_from_world((1, 2, 3), (2, 2, 3))
  r = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], float)
  np.testing.assert_allclose(m[:3, :3], r, atol=1e-12)
  np.testing.assert_allclose(m[:3, 3], [-3, 2, -1], atol=1e-12)
  # A world point 2 m ahead, 0.5 m higher and 1 m along world +z: camera (1, -0.5, 2):
  # right (x), up is -y (y points down), ahead (z).
  np.testing.assert_allclose(m @ [3, 2.5, 4, 1], [1, -0.5, 2, 1], atol=1e-12)
  assert np.isclose(np.linalg.det(m[:3, :3]), 1.0)
  pose = camera.world_from_camera((1, 2, 3), (2, 2, 3))
  np.testing.assert_allclose(pose, np.linalg.inv(m), atol=1e-12)


def test_view_pose_averages_shutter_open_and_close():
  pb2 = proto.load_module()
  view = pb2.View()
  for pose, cam, look in ((view.shutter_open, (0, 1, 0), (1, 1.2, 0)),
                          (view.shutter_close, (0.2, 1, 0), (1.2, 0.8, 0))):  # fmt: skip
    pose.camera.x, pose.camera.y, pose.camera.z = cam
    pose.lookat.x, pose.lookat.y, pose.lookat.z = look
  # Midpoints: camera (0.1, 1, 0), lookat (1.1, 1, 0): looking down +x from (0.1, 1, 0).
  np.testing.assert_allclose(
      camera.view_pose(view), camera.world_from_camera((0.1, 1, 0), (1.1, 1, 0)), atol=1e-7
  )
  view.shutter_open.camera.x = float('nan')
  assert camera.view_pose(view) is None
  assert camera.camera_from_world((0, 0, 0), (0, 5, 0)) is None  # Looking straight up.
  assert camera.camera_from_world((1, 1, 1), (1, 1, 1)) is None


def test_ray_length_to_z_depth_golden():
  # A fronto-parallel plane Z = 2 seen at 320 x 240: ray length at pixel (u, v) is
  # r = 2 sqrt(1 + ((u - cx)/fx)^2 + ((v - cy)/fy)^2), and the conversion must give 2 back.
  # At the corner pixel (0, 0): x = -159.5 / 277.1281 = -0.575546, y = -119.5 / 289.7056 =
  # -0.412488, so r = 2 sqrt(1 + 0.331253 + 0.170146) = 2 sqrt(1.501399) = 2.450632.
  k = camera.intrinsics()
  u, v = np.meshgrid(np.arange(320.0), np.arange(240.0))
  ray = 2.0 * np.sqrt(1 + ((u - 159.5) / k[0, 0]) ** 2 + ((v - 119.5) / k[1, 1]) ** 2)
  assert ray[0, 0] == pytest.approx(2.450632, abs=2e-6)
  z = camera.ray_depth_to_z(ray, k)
  np.testing.assert_allclose(z, 2.0, rtol=1e-6)
  assert camera.ray_depth_to_z(np.zeros((240, 320)), k).max() == 0.0  # 0 = no surface stays.
  np.testing.assert_allclose(camera.z_to_ray_depth(z, k), ray, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The builder on the fixture.


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """The fixture built at its raw size (24 x 32), so pixels map one to one."""
  data_dir, config, builder, fixture = fx.build_scenenet(str(tmp_path_factory.mktemp('sn')))
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  examples = {
      split: list(tfds.as_numpy(builder.as_dataset(split=split)))
      for split in ('train', 'validation', 'test')
  }
  return data_dir, config, builder, fixture, examples


def test_fixture_build_clip_counts_and_format(built):
  _, config, builder, fixture, examples = built
  # 7 views, triplets starting every 3 views: views (0, 1, 2) and (3, 4, 5) per trajectory.
  assert {s: len(e) for s, e in examples.items()} == {'train': 4, 'validation': 2, 'test': 2}
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {
      'train': 4, 'validation': 2, 'test': 2}  # fmt: skip
  assert dict(builder.info.metadata['skipped']) == {}
  ex = examples['train'][0]
  t, h, w = 3, config.height, config.width
  for key, shape in (('image', (t, h, w, 3)), ('depth', (t, h, w, 1)), ('normals', (t, h, w, 3)),
                     ('instance', (t, h, w)), ('pose', (t, 4, 4)), ('egomotion', (t - 1, 4, 4)),
                     ('intrinsics', (3, 3)), ('frame_indices', (t,))):  # fmt: skip
    assert ex[key].shape == shape, key
  np.testing.assert_array_equal(ex['frame_indices'], [0, 25, 50])
  assert examples['train'][1]['frame_indices'].tolist() == [75, 100, 125]
  assert ex['trajectory'].decode() == 'train/' + fixture['train_paths'][0]
  assert {e['trajectory'].decode() for e in examples['test']} == {
      'train/' + p for p in fixture['test_paths']}  # fmt: skip
  assert examples['validation'][0]['trajectory'].decode() == 'val/0/223'
  ids = [e['scene_seed'] for s in examples.values() for e in s]
  assert len(set(ids)) == len(ids)
  np.testing.assert_allclose(ex['intrinsics'], camera.intrinsics(fx.RAW_H, fx.RAW_W), rtol=1e-6)
  # Instance ids kept: 1 on the left half, 2 on the right.
  assert set(np.unique(ex['instance'][:, :, : w // 2])) == {1}
  assert set(np.unique(ex['instance'][:, :, w // 2 :])) == {2}


def test_poses_depth_and_egomotion(built):
  *_, examples = built
  k = camera.intrinsics(fx.RAW_H, fx.RAW_W)
  for ex in examples['train'][:2]:
    for i, frame in enumerate(ex['frame_indices']):
      c, lookat = fx.view_camera(frame // 25)
      np.testing.assert_allclose(ex['pose'][i], camera.world_from_camera(c, lookat), atol=1e-5)
      # z-depth of the wall (from the ray length in mm): equal to the analytic z within
      # the 0.5 mm rounding scaled by |r| >= 1.
      z, _ = fx.wall_depth(camera.world_from_camera(c, lookat), k, fx.RAW_H, fx.RAW_W)
      depth = ex['depth'][i, ..., 0]
      valid = np.ones_like(depth, bool)
      valid[fx.HOLE] = False
      np.testing.assert_allclose(depth[valid], z[valid], atol=6e-4)
      assert np.all(depth[fx.HOLE] == 0)
    # Egomotion composes back to the poses: world_from_cam_{i+1} cam_{i+1}_from_cam_i =
    # world_from_cam_i.
    for i in range(2):
      np.testing.assert_allclose(ex['pose'][i + 1] @ ex['egomotion'][i], ex['pose'][i], atol=1e-5)


def test_normals_of_the_wall_equal_its_analytic_normal(built):
  *_, examples = built
  ex = examples['validation'][0]
  for i in range(3):
    # The wall x = 5 faces the camera with world normal (-1, 0, 0); in the camera frame
    # n = R (-1, 0, 0) with R = camera_from_world's rotation = pose's rotation transposed.
    expected = ex['pose'][i][:3, :3].T @ np.array([-1.0, 0.0, 0.0])
    normals = ex['normals'][i]
    invalid = np.zeros(normals.shape[:2], bool)
    invalid[1:6, 1:6] = True  # The 3x3 hole and its 4-neighbours (used by the differences).
    invalid[1, 1] = invalid[1, 5] = invalid[5, 1] = invalid[5, 5] = False  # Diagonals: valid.
    assert np.all(normals[invalid] == 0), 'hole or next to it: invalid (all-zero) normal'
    good = normals[~invalid]
    np.testing.assert_allclose(np.linalg.norm(good, axis=-1), 1.0, atol=1e-5)
    angle = np.degrees(np.arccos(np.clip(good @ expected, -1, 1)))
    assert angle.max() < 0.5, angle.max()


def test_resized_build_scales_intrinsics(tmp_path):
  # Planning only: the output size changes intrinsics and array sizes, not which clips exist.
  fixture = fx.write_scenenet_fixture(str(tmp_path / 'raw'))
  config = sn.make_config(12, 16)
  plans = sn.plan_parts(fixture['root'], config, raw_io.SkipCounter())
  ex = sn.make_example(fixture['root'], plans['train'][0], config)
  # sx = sy = 1/2: fx' = fx / 2, cx' = (15.5 + 0.5) / 2 - 0.5 = 7.5, cy' = (11.5 + 0.5) / 2 - 0.5.
  k = camera.intrinsics(fx.RAW_H, fx.RAW_W)
  np.testing.assert_allclose(
      ex['intrinsics'], [[k[0, 0] / 2, 0, 7.5], [0, k[1, 1] / 2, 5.5], [0, 0, 1]], rtol=1e-6
  )
  assert ex['depth'].shape == (3, 12, 16, 1) and ex['instance'].shape == (3, 12, 16)
  # Nearest neighbour: output pixel (r, c) takes raw pixel (2r + 1, 2c + 1).
  full = sn.make_example(fixture['root'], plans['train'][0], sn.make_config(fx.RAW_H, fx.RAW_W))
  np.testing.assert_array_equal(ex['depth'], full['depth'][:, 1::2, 1::2])
  np.testing.assert_array_equal(ex['normals'], full['normals'][:, 1::2, 1::2])


# ---------------------------------------------------------------------------------------------
# Bad input.


def _plan(root, **kwargs):
  skips = raw_io.SkipCounter()
  plans = sn.plan_parts(root, sn.make_config(fx.RAW_H, fx.RAW_W, **kwargs), skips)
  return {s: len(c) for s, c in plans.items()}, dict(skips.items())


def test_missing_or_corrupt_protobuf_is_an_error_naming_it(tmp_path):
  fixture = fx.write_scenenet_fixture(str(tmp_path))
  os.remove(fixture['train_pb'])
  with pytest.raises(raw_io.RawDataError, match='scenenet_rgbd_train_0.pb does not exist'):
    _plan(fixture['root'])
  blob = fixture['train'].SerializeToString()
  with open(fixture['train_pb'], 'wb') as f:
    f.write(blob[: len(blob) // 2 + 1])  # Cut inside a trajectory message.
  with pytest.raises(raw_io.RawDataError, match='scenenet_rgbd_train_0.pb does not parse'):
    _plan(fixture['root'])
  open(fixture['train_pb'], 'wb').close()
  with pytest.raises(raw_io.RawDataError, match='scenenet_rgbd_train_0.pb holds no trajectory'):
    _plan(fixture['root'])
  # A protobuf in a sub-folder (train_protobufs/) is found too.
  os.makedirs(tmp_path / 'train_protobufs')
  fx.write_protobuf(
      str(tmp_path / 'train_protobufs' / 'scenenet_rgbd_train_0.pb'), fixture['train']
  )
  os.remove(fixture['train_pb'])
  assert _plan(fixture['root'])[0] == {'train': 4, 'validation': 2, 'test': 2}
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(raw_io.RawDataError, match='no SceneNet RGB-D data under .*empty'):
    _plan(str(tmp_path / 'empty'))


def test_bad_views_and_trajectories_are_counted_skips(tmp_path):
  fixture = fx.write_scenenet_fixture(str(tmp_path))
  root = fixture['root']
  first = fixture['train_paths'][0]
  # 1. A missing photo (view 4 of the first train trajectory): triplet 3-5 is lost.
  os.remove(os.path.join(root, 'train', first, 'photo', '100.jpg'))
  # 2. A missing depth map in validation (view 1): triplet 0-2 is lost.
  os.remove(os.path.join(root, 'val', '0/223', 'depth', '25.png'))
  # 3. A NaN in a pose (view 0 of the second train trajectory): triplet 0-2 is lost.
  train = fixture['train']
  train.trajectories[1].views[0].shutter_open.lookat.y = float('nan')
  # 4. A trajectory whose render_path folder does not exist.
  ghost = train.trajectories.add()
  ghost.CopyFrom(train.trajectories[0])
  ghost.render_path = '0/99999'
  fx.write_protobuf(fixture['train_pb'], train)
  counts, skipped = _plan(root)
  assert counts == {'train': 2, 'validation': 1, 'test': 2}
  assert skipped == {
      ('train', 'missing frame (photo, depth or instance file absent)'): 1,
      ('train', 'invalid pose (non-finite or degenerate camera/lookat)'): 1,
      ('train', 'trajectory folder missing'): 1,
      ('train', 'triplet across a skipped view'): 2,
      ('validation', 'missing frame (photo, depth or instance file absent)'): 1,
      ('validation', 'triplet across a skipped view'): 1,
  }


def test_build_tool_reports_skips(tmp_path):
  from taskology_tf_tools import build_dataset  # pylint: disable=g-import-not-at-top

  fixture = fx.write_scenenet_fixture(str(tmp_path / 'raw'), num_views=3)
  shutil.rmtree(os.path.join(fixture['root'], 'train', fixture['test_paths'][0]))
  os.remove(os.path.join(fixture['root'], 'val', '0/223', 'instance', '50.png'))
  _, lines = build_dataset.build_video_dataset(
      'scenenet', fixture['root'], fx.RAW_H // 2, fx.RAW_W // 2, str(tmp_path / 'tfds')
  )
  text = '\n'.join(lines)
  assert '  train: 2 examples' in text  # 3 views: one triplet per trajectory.
  assert 'validation' not in text.split('skipped')[0]  # Its only triplet was lost.
  assert 'test: trajectory folder missing: 1' in text  # The held-out trajectory.
  assert 'validation: missing frame (photo, depth or instance file absent): 1' in text
  # A corrupt protobuf: the tool's error names the file.
  with open(fixture['val_pb'], 'wb') as f:
    f.write(b'\xff\xff\xff')
  with pytest.raises(ValueError, match='scenenet_rgbd_val.pb'):
    build_dataset.build_video_dataset('scenenet', fixture['root'], 8, 8, str(tmp_path / 'tfds2'))


def test_loader_and_clip_source(built):
  data_dir, config, *_ = built
  import gin  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets import clips  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import experiment  # pylint: disable=g-import-not-at-top

  ds = clips.scenenet_clips('train', data_dir, config.height, config.width)
  ex = next(iter(ds))
  assert ex['depth'].dtype.name == 'float32' and ex['normals'].shape[-1] == 3
  # A registered gin configurable (training/experiment.py's list).
  assert experiment.video_clips.scenenet_clips is clips.scenenet_clips
  gin.parse_config(f"""
      scenenet_clips.data_dir = '{data_dir}'
      scenenet_clips.height = {config.height}
      scenenet_clips.width = {config.width}
  """)
  try:
    assert gin.query_parameter('scenenet_clips.height') == config.height
  finally:
    gin.clear_config()
  with pytest.raises(FileNotFoundError, match='build_dataset.py --dataset=scenenet'):
    clips.scenenet_clips('train', data_dir, 8, 8)
