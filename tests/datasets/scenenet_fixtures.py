"""A tiny SceneNet RGB-D raw layout, written file by file in the published formats.

`write_scenenet_fixture(root)` writes train/0/<traj>/ and val/0/<traj>/ trajectory folders
(photo/<f>.jpg, depth/<f>.png uint16 mm ray length, instance/<f>.png uint16) and real serialized
`scenenet.Trajectories` protobufs (scenenet_rgbd_train_0.pb, scenenet_rgbd_val.pb).
`build_scenenet(tmp_dir)` also builds it with the real builder (gin smoke tests use it).

The scene is one wall, the world plane x = WALL_X, seen by a camera that moves along the world
z axis while turning slightly, so every depth map is analytic: the ray through pixel (u, v)
with camera-frame direction r = K^-1 (u, v, 1) (r_z = 1) and world direction d = R^T r, from
the camera centre c, meets the wall at t = (WALL_X - c_x) / d_x; t is the z-depth (r_z = 1)
and t |r| the ray length the depth PNG stores. The wall's normal facing the camera is
(-1, 0, 0) in the world, R (-1, 0, 0) in the camera frame. Views are 25 render frames apart.
"""

import os
import zlib

import numpy as np
from PIL import Image

RAW_H, RAW_W = 24, 32
WALL_X = 5.0
NUM_VIEWS = 7
# Camera pixels whose depth is 0 (no surface, as through a window) in every view: a 3x3 block.
HOLE = (slice(2, 5), slice(2, 5))


def view_camera(index: int, offset: float = 0.0):
  """(camera centre, lookat) of view `index` of a trajectory (offset: another trajectory)."""
  c = np.array([0.3 * offset, 1.5, 0.1 * index + offset])
  lookat = c + np.array([1.0, 0.05 * np.sin(index), 0.2 + 0.03 * index])
  return c, lookat


def wall_depth(world_from_camera: np.ndarray, k: np.ndarray, height: int, width: int):
  """(z-depth, ray length) [H, W] of the wall x = WALL_X (module docstring)."""
  u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
  rays = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1)
  d = rays @ world_from_camera[:3, :3].T
  z = (WALL_X - world_from_camera[0, 3]) / d[..., 0]
  return z, z * np.linalg.norm(rays, axis=-1)


def _set_position(position, xyz):
  position.x, position.y, position.z = (float(a) for a in xyz)


def write_png(path: str, array: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def write_trajectory(split_root: str, trajectories, render_path: str, offset: float, rng,
                     num_views: int = NUM_VIEWS):  # fmt: skip
  """Adds one trajectory to `trajectories` (a scenenet.Trajectories) and writes its frames."""
  from taskology_tf.datasets.scenenet import camera  # pylint: disable=g-import-not-at-top

  k = camera.intrinsics(RAW_H, RAW_W)
  trajectory = trajectories.trajectories.add()
  trajectory.render_path = render_path
  trajectory.layout.layout_type = 5  # OFFICE
  trajectory.layout.model = 'office/office1_layout.obj'
  for i, (kind, name) in enumerate(((1, ''), (2, 'wall'), (4, 'chair'))):
    instance = trajectory.instances.add()
    instance.instance_id = i
    instance.instance_type = kind
    instance.semantic_english = name
  base = os.path.join(split_root, render_path)
  for i in range(num_views):
    frame = 25 * i
    c, lookat = view_camera(i, offset)
    view = trajectory.views.add()
    view.frame_num = frame
    # Open and close symmetric about the pose, so their midpoint is (c, lookat).
    delta = np.array([0.002, -0.001, 0.003])
    _set_position(view.shutter_open.camera, c - delta)
    _set_position(view.shutter_close.camera, c + delta)
    _set_position(view.shutter_open.lookat, lookat + 2 * delta)
    _set_position(view.shutter_close.lookat, lookat - 2 * delta)
    view.shutter_open.timestamp = float(i)
    view.shutter_close.timestamp = float(i) + 1.0 / 60.0
    _, ray = wall_depth(camera.world_from_camera(c, lookat), k, RAW_H, RAW_W)
    depth_mm = np.round(ray * camera.DEPTH_UNITS_PER_METRE).astype(np.uint16)
    depth_mm[HOLE] = 0
    photo = rng.integers(0, 256, (RAW_H, RAW_W, 3), dtype=np.uint8)
    os.makedirs(os.path.join(base, 'photo'), exist_ok=True)
    Image.fromarray(photo).save(os.path.join(base, 'photo', f'{frame}.jpg'), quality=95)
    write_png(os.path.join(base, 'depth', f'{frame}.png'), depth_mm)
    instance = np.full((RAW_H, RAW_W), 1, np.uint16)
    instance[:, RAW_W // 2 :] = 2
    write_png(os.path.join(base, 'instance', f'{frame}.png'), instance)
  return trajectory


def write_protobuf(path: str, trajectories) -> str:
  with open(path, 'wb') as f:
    f.write(trajectories.SerializeToString())
  return path


def split_render_paths(num_train: int = 2, num_test: int = 1, test_every: int = 20):
  """Render paths '0/<n>' of train part 0: the first `num_train` the builder keeps in train and
  the first `num_test` it holds out for test (its crc32 rule), so the fixture has both."""
  train, test = [], []
  n = 0
  while len(train) < num_train or len(test) < num_test:
    path = f'0/{n}'
    held = zlib.crc32(f'train/{path}'.encode()) % test_every == 0
    if held and len(test) < num_test:
      test.append(path)
    elif not held and len(train) < num_train:
      train.append(path)
    n += 1
  return train, test


def write_scenenet_fixture(root: str, seed: int = 0, num_views: int = NUM_VIEWS) -> dict:
  """Writes the SceneNet layout under `root` (see the module docstring).

  Train part 0 has 2 train trajectories and 1 that the default rule (test_every = 20) holds
  out for test; val has 1. With `num_views` = 7 views and the default sampling (view_stride 1,
  clip_stride 3), each trajectory gives 2 triplets (views 0-2 and 3-5).

  Returns:
    {'root', 'train_pb', 'val_pb', 'train' (scenenet.Trajectories), 'val', 'train_paths',
    'test_paths', 'val_paths', 'num_views'}.
  """
  from taskology_tf.datasets.scenenet import proto  # pylint: disable=g-import-not-at-top

  pb2 = proto.load_module()
  rng = np.random.default_rng(seed)
  os.makedirs(root, exist_ok=True)
  train_paths, test_paths = split_render_paths()
  train = pb2.Trajectories()
  for n, path in enumerate(train_paths + test_paths):
    write_trajectory(os.path.join(root, 'train'), train, path, 0.5 * n, rng, num_views)
  val = pb2.Trajectories()
  val_paths = ['0/223']
  write_trajectory(os.path.join(root, 'val'), val, val_paths[0], 2.0, rng, num_views)
  return {
      'root': root,
      'train_pb': write_protobuf(os.path.join(root, 'scenenet_rgbd_train_0.pb'), train),
      'val_pb': write_protobuf(os.path.join(root, 'scenenet_rgbd_val.pb'), val),
      'train': train,
      'val': val,
      'train_paths': train_paths,
      'test_paths': test_paths,
      'val_paths': val_paths,
      'num_views': num_views,
  }


def build_scenenet(tmp_dir: str, height: int = RAW_H, width: int = RAW_W, **config_kwargs):
  """Writes the fixture under tmp_dir/raw and builds it into tmp_dir/tfds.

  Returns:
    (data_dir, config, builder, fixture dict).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets.scenenet import builder as sn  # pylint: disable=g-import-not-at-top

  fixture = write_scenenet_fixture(os.path.join(tmp_dir, 'raw'))
  config = sn.make_config(height, width, **config_kwargs)
  data_dir = os.path.join(tmp_dir, 'tfds')
  ds_builder = sn.SceneNet(config=config, data_dir=data_dir)
  ds_builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=fixture['root'])
  )
  return data_dir, config, ds_builder, fixture
