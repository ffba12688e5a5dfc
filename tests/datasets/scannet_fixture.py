"""A tiny ScanNet download in both raw layouts (`.sens` files and SensReader's exported folders).

`write_scannet_fixture(root)` writes the same scans twice: `<root>/sens/<scene>/<scene>.sens`
(sens.write_sens) and `<root>/exported/<scene>/{color,depth,pose,intrinsic}/` (sens.export_sens
of those files). `build_scannet(tmp)` writes it and builds it with the real builder, returning
(data_dir, config), for gin smoke tests.

Each scan looks at one tilted wall, the plane a . X = -PLANE_OFFSET in world coordinates
(a = PLANE_NORMAL), from a camera that translates and yaws a little per frame, so depth, and
the normal in every frame's camera, are known in closed form (`plane_depth`, `plane_normal`).
Depth is stored as uint16 millimetres as ScanNet stores it, with a rectangular hole (0) in
every frame.
"""

import os
from typing import Dict, Iterable, Optional, Sequence

import numpy as np

from taskology_tf.datasets.scannet import builder as scannet_builder
from taskology_tf.datasets.scannet import sens

# Scene ids from ScanNet's official v2 lists, so the shipped split files pick them up.
SCENES = {
    'train': ('scene0191_00', 'scene0191_01'),
    'validation': ('scene0568_00',),
    'test': ('scene0707_00',),
}
DEPTH_SIZE = (24, 32)  # (H, W), 1/20 of ScanNet's 480 x 640.
COLOR_SIZE = (36, 48)  # Another size than depth, as ScanNet's 968 x 1296.
# ScanNet scene0000_00's depth and colour intrinsics, scaled by about 1/20 and 1/27.
DEPTH_K = np.array([[28.88, 0.0, 15.7], [0.0, 28.94, 11.9], [0.0, 0.0, 1.0]])
COLOR_K = np.array([[43.3, 0.0, 24.0], [0.0, 43.4, 17.9], [0.0, 0.0, 1.0]])
PLANE_NORMAL = np.array([0.3, 0.1, -1.0])  # The wall 0.3 X + 0.1 Y - Z = -3 (world).
PLANE_OFFSET = 3.0
HOLE = (slice(5, 8), slice(10, 14))  # Invalid depth rows / columns of every frame.
NUM_FRAMES = 62  # With the default strides (10, 30): triplets at frames 0 and 30.


def _k4(k: np.ndarray) -> np.ndarray:
  out = np.eye(4, dtype=np.float32)
  out[:3, :3] = k
  return out


def camera_to_world(frame: int, scene_index: int = 0) -> np.ndarray:
  """World_from_camera of a frame: yaw 0.01 rad per frame about y, a small drift in x, y."""
  angle = 0.01 * frame + 0.1 * scene_index
  c, s = np.cos(angle), np.sin(angle)
  pose = np.eye(4)
  pose[:3, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
  pose[:3, 3] = [0.02 * frame, 0.01 * frame - 0.1 * scene_index, 0.005 * frame]
  return pose.astype(np.float32)


def plane_depth(pose: np.ndarray, k: np.ndarray, size) -> np.ndarray:
  """Depth (z, metres) of the wall at every pixel of a camera: [H, W] float64.

  A pixel's ray r = K^-1 (u, v, 1) (r_z = 1) meets the wall at X = t + z R r, and
  a . X = -c gives z = (-c - a . t) / (a . R r).
  """
  h, w = size
  u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
  rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(k).T
  pose = np.asarray(pose, np.float64)
  world_rays = rays @ pose[:3, :3].T
  return (-PLANE_OFFSET - PLANE_NORMAL @ pose[:3, 3]) / (world_rays @ PLANE_NORMAL)


def plane_normal(pose: np.ndarray) -> np.ndarray:
  """The wall's unit normal in a camera's frame, facing the camera: [3].

  n_cam = R^T a / |a|; it faces the camera because a . (R r) < 0 for the rays that see
  the wall (z > 0 with -c - a . t < 0), i.e. n_cam . r < 0.
  """
  n = np.asarray(pose, np.float64)[:3, :3].T @ PLANE_NORMAL
  return n / np.linalg.norm(n)


def _color(rng, frame: int) -> np.ndarray:
  h, w = COLOR_SIZE
  yy, xx = np.mgrid[0:h, 0:w]
  base = np.stack([(xx * 5 + frame) % 256, (yy * 7) % 256, ((xx + yy) * 3) % 256], -1)
  return np.clip(base + rng.integers(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def scene_frames(
    scene_index: int, num_frames: int = NUM_FRAMES, invalid_pose_frames: Iterable[int] = (),
    seed: int = 0,
):  # fmt: skip
  """The frames of one fixture scan: [sens.SensFrame], uncompressed depth [N, H, W] uint16."""
  rng = np.random.default_rng(seed + scene_index)
  frames, depths = [], []
  invalid = set(invalid_pose_frames)
  for i in range(num_frames):
    pose = camera_to_world(i, scene_index)
    depth = np.round(plane_depth(pose, DEPTH_K, DEPTH_SIZE) * 1000.0).astype(np.uint16)
    depth[HOLE] = 0
    depths.append(depth)
    stored_pose = np.full((4, 4), -np.inf, np.float32) if i in invalid else pose
    frames.append(
        sens.SensFrame(
            camera_to_world=stored_pose,
            timestamp_color=33333 * i,
            timestamp_depth=33333 * i + 10,
            color_bytes=sens.encode_color(_color(rng, i), 'jpeg'),
            depth_bytes=sens.encode_depth(depth, 'zlib_ushort'),
        )
    )
  return frames, np.stack(depths)


def fixture_header() -> sens.SensHeader:
  return sens.SensHeader(
      sensor_name=b'StructureSensor',
      intrinsic_color=_k4(COLOR_K),
      extrinsic_color=np.eye(4, dtype=np.float32),
      intrinsic_depth=_k4(DEPTH_K),
      extrinsic_depth=np.eye(4, dtype=np.float32),
      color_compression='jpeg',
      depth_compression='zlib_ushort',
      color_size=COLOR_SIZE,
      depth_size=DEPTH_SIZE,
      depth_shift=1000.0,
  )


def write_scannet_fixture(
    root: str,
    scenes: Optional[Dict[str, Sequence[str]]] = None,
    num_frames: int = NUM_FRAMES,
    invalid_pose_frames: Iterable[int] = (),
    seed: int = 0,
) -> dict:
  """Writes tiny ScanNet scans in both raw layouts.

  Args:
    root: folder to write into (created).
    scenes: split -> scene ids (default SCENES: 2 train, 1 validation, 1 test scan).
    num_frames: frames per scan.
    invalid_pose_frames: frame numbers whose pose is stored as all -inf (in every scan).
    seed: colour noise seed.

  Returns:
    {'sens_root': <root>/sens (a manual_dir of .sens files), 'exported_root':
    <root>/exported (the same scans exported), 'scenes': split -> ids, 'depth': scene ->
    [N, H, W] uint16 as written, 'index': scene -> its index in camera_to_world}.
  """
  scenes = SCENES if scenes is None else scenes
  sens_root = os.path.join(root, 'sens')
  exported_root = os.path.join(root, 'exported')
  depth, index = {}, {}
  all_scenes = [name for names in scenes.values() for name in names]
  for i, name in enumerate(all_scenes):
    frames, depth[name] = scene_frames(i, num_frames, invalid_pose_frames, seed)
    index[name] = i
    folder = os.path.join(sens_root, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f'{name}.sens')
    sens.write_sens(path, fixture_header(), frames)
    os.makedirs(exported_root, exist_ok=True)
    sens.export_sens(path, os.path.join(exported_root, name))
  return {
      'sens_root': sens_root,
      'exported_root': exported_root,
      'scenes': {k: tuple(v) for k, v in scenes.items()},
      'depth': depth,
      'index': index,
  }


def build_scannet(
    tmp_dir: str, height: int = 12, width: int = 16, layout: str = 'sens',
    frame_stride: int = scannet_builder.DEFAULT_FRAME_STRIDE,
    clip_stride: int = scannet_builder.DEFAULT_CLIP_STRIDE, **fixture_kwargs,
):  # fmt: skip
  """Writes the fixture under tmp_dir/raw and builds it into tmp_dir/tfds.

  Args:
    tmp_dir: a fresh folder.
    height, width: output size (12 x 16: half the fixture's depth size).
    layout: 'sens' or 'exported': which of the two raw copies to build from.
    frame_stride, clip_stride: the build's triplet sampling.
    **fixture_kwargs: passed to write_scannet_fixture.

  Returns:
    (data_dir, config): load with loader.load_scannet(split, data_dir, height, width,
    frame_stride=..., clip_stride=...) (default strides: 2 train clips per scan).
  """
  raw = write_scannet_fixture(os.path.join(tmp_dir, 'raw'), **fixture_kwargs)
  data_dir = os.path.join(tmp_dir, 'tfds')
  config = scannet_builder.make_config(height, width, frame_stride, clip_stride)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = scannet_builder.ScanNet(config=config, data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=raw[f'{layout}_root'])
  )
  return data_dir, config
