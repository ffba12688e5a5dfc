"""Loading built datasets as `tf.data` pipelines.

Datasets are built ahead of time with `tools/build_dataset.py`; loading
never builds, so a missing dataset fails fast with the command to build it.
"""

import dataclasses
import os
from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from taskology_tf.datasets.synthetic_world import builder as sw_builder

DEFAULT_DATA_DIR = os.path.join('data', 'tensorflow_datasets')


def synthetic_world_build_command(domain: str, height: int, width: int, data_dir: str) -> str:
  """The shell command (run from the repository root) that builds a config."""
  return (
      'python tools/build_dataset.py --dataset=synthetic_world '
      f'--domain={domain} --height={int(height)} --width={int(width)} '
      f'--data_dir={data_dir}'
  )


def load_synthetic_world(
    domain: str,
    split: str,
    data_dir: str = DEFAULT_DATA_DIR,
    height: int = 64,
    width: int = 96,
    shuffle_files: bool = False,
    read_config=None,
) -> tf.data.Dataset:
  """Loads a built synthetic-world split.

  Args:
    domain: 'sim' or 'real'.
    split: a TFDS split: 'train', 'validation', 'test' or a slice such as
      'train[:10%]'.
    data_dir: the TFDS data directory the dataset was built into.
    height: image rows of the built config.
    width: image columns of the built config.
    shuffle_files: whether to shuffle the order of the record files. The
      dataset is written in generation order (its examples are independent
      random scenes already), so TFDS's ordering guard is turned off when
      this is True; shuffle examples with `Dataset.shuffle` as usual.
    read_config: optional `tfds.ReadConfig`.

  Returns:
    A `tf.data.Dataset` of dicts, one per video triplet (T = 3 frames,
    L lidar returns, K = MAX_OBJECTS):
      'image' [T, H, W, 3] uint8; 'depth' [T, H, W, 1] float32 metres;
      'normals' [T, H, W, 3] float32 unit camera frame; 'semantics'
      [T, H, W] uint8; 'intrinsics' [3, 3] float32; 'egomotion'
      [T-1, 4, 4] float32 (cam_{i+1}_from_cam_i); 'object_motion'
      [T-1, H, W, 3] float32 metres (camera i+1 axes); 'camera_to_vehicle'
      [4, 4] float32; 'lidar_points' [T, L, 4] float32 (x, y, z, intensity)
      vehicle frame; 'lidar_valid' [T, L] bool; 'lidar_classes' [T, L]
      uint8; 'lidar_track_ids' [T, L] int32; 'boxes' [T, K, 7] float32
      vehicle frame; 'box_classes' [T, K] int32; 'track_ids' [T, K] int32;
      'num_boxes' [T] int32; 'domain' string; 'scene_seed' int64.

  Raises:
    FileNotFoundError: the config was not built into `data_dir`; the message
      names the directory looked in and the command that builds it.
  """
  config = sw_builder.make_config(domain, height, width)
  builder = sw_builder.SyntheticWorld(config=config, data_dir=data_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(
        f'Synthetic world {config.name!r} is not built: no prepared dataset '
        f'in {os.fspath(builder.data_path)}. Build it (from the repository '
        'root) with:\n  ' + synthetic_world_build_command(domain, height, width, data_dir)
    )
  if shuffle_files:
    read_config = dataclasses.replace(read_config or tfds.ReadConfig(), enable_ordering_guard=False)
  return builder.as_dataset(
      split=split, shuffle_files=shuffle_files, as_supervised=False, read_config=read_config
  )


def video_dataset_build_command(dataset: str, data_dir: str) -> str:
  """The shell command (run from the repository root) that builds a raw video dataset."""
  return (
      f'python tools/build_dataset.py --dataset={dataset} --manual_dir=RAW_{dataset.upper()} '
      f'--data_dir={data_dir}'
  )


def _load_built(builder, dataset: str, split: str, data_dir: str, input_context=None):
  """as_dataset of a prepared builder (this input pipeline's even share of `split`)."""
  if not builder.is_prepared():
    raise FileNotFoundError(
        f'{dataset} {builder.builder_config.name!r} is not built: no prepared dataset in '
        f'{os.fspath(builder.data_path)}. Build it (from the repository root) with:\n  '
        + video_dataset_build_command(dataset, data_dir)
    )
  if input_context is not None and input_context.num_input_pipelines > 1:
    split = tfds.even_splits(split, input_context.num_input_pipelines)[
        input_context.input_pipeline_id
    ]
  return builder.as_dataset(split=split, shuffle_files=False, as_supervised=False)


def load_kitti_raw(
    split: str,
    data_dir: str = DEFAULT_DATA_DIR,
    height: int = 128,
    width: int = 416,
    input_context: Optional[tf.distribute.InputContext] = None,
) -> tf.data.Dataset:
  """Loads a built KITTI raw split (see taskology_tf/datasets/kitti_raw/builder.py).

  Args:
    split: 'train', 'validation', 'test' (the Eigen test frames) or a TFDS slice.
    data_dir: the TFDS data directory it was built into.
    height, width: output size of the built config.
    input_context: this input pipeline's context: returns only its even share of `split`.

  Returns:
    A dataset of clips (T = 3): 'image' [T, H, W, 3] uint8; 'intrinsics' [3, 3] float32
    (pixels, rectified camera 2 at H x W); 'depth' [T, H, W, 1] float32 metres (velodyne,
    middle frame of test clips, 0 = none); 'gt_depth' [GH, GW] float32 metres (full-resolution
    velodyne ground truth of the middle frame, zero-padded); 'gt_size' [2] int32 (its true
    rows, columns; 0 when none); 'has_gt' bool; 'original_size' [2] int32; 'frame_indices'
    [T] int32; 'drive' string; 'scene_seed' int64 (stable clip id).

  Raises:
    FileNotFoundError: not built; names the directory and the build command.
  """
  from taskology_tf.datasets.kitti_raw import builder as kitti  # pylint: disable=g-import-not-at-top

  config = kitti.make_config(height, width)
  builder = kitti.KittiRaw(config=config, data_dir=data_dir)
  return _load_built(builder, 'kitti_raw', split, data_dir, input_context)


def load_cityscapes(
    split: str,
    data_dir: str = DEFAULT_DATA_DIR,
    height: int = 128,
    width: int = 416,
    input_context: Optional[tf.distribute.InputContext] = None,
    frame_step: int = 1,
    centre_stride: int = 2,
) -> tf.data.Dataset:
  """Loads a built Cityscapes split (see taskology_tf/datasets/cityscapes/builder.py).

  `frame_step` (frames between a triplet's frames) and `centre_stride` (between triplet
  centres) name the build, as `--frame_step` / `--centre_stride` of tools/build_dataset.py.

  Returns:
    A dataset of clips (T = 3): 'image' [T, H, W, 3] uint8 (cropped as Gordon et al.);
    'intrinsics' [3, 3] float32 (pixels, of the crop at H x W); 'semantics' [T, H, W] uint8
    (project classes, 255 = ignore or unlabelled frame); 'cityscapes_label' [T, H, W] uint8
    (19 train ids, 255); 'has_labels' [T] bool; 'depth' [T, H, W, 1] float32 metres (from
    disparity, 0 = none); 'frame_indices' [T] int32; 'sequence' string; 'scene_seed' int64.

  Raises:
    FileNotFoundError: not built; names the directory and the build command.
  """
  from taskology_tf.datasets.cityscapes import builder as cs  # pylint: disable=g-import-not-at-top

  config = cs.make_config(height, width, frame_step, centre_stride)
  builder = cs.Cityscapes(config=config, data_dir=data_dir)
  return _load_built(builder, 'cityscapes', split, data_dir, input_context)


def load_coco_panoptic(
    split: str,
    data_dir: str = DEFAULT_DATA_DIR,
    height: int = 128,
    width: int = 416,
    input_context: Optional[tf.distribute.InputContext] = None,
    resize_mode: str = 'crop',
) -> tf.data.Dataset:
  """Loads a built COCO panoptic split (see taskology_tf/datasets/coco_panoptic/builder.py).

  Returns:
    A dataset of one-frame clips (T = 1): 'image' [1, H, W, 3] uint8; 'semantics' [1, H, W]
    uint8 (project classes, 255 = ignore); 'intrinsics' [3, 3] float32 (nominal: COCO has no
    calibration); 'image_id', 'scene_seed' int64 (the COCO image id); 'file_name' string.

  Raises:
    FileNotFoundError: not built; names the directory and the build command.
  """
  from taskology_tf.datasets.coco_panoptic import builder as coco  # pylint: disable=g-import-not-at-top

  config = coco.make_config(height, width, resize_mode)
  builder = coco.CocoPanoptic(config=config, data_dir=data_dir)
  return _load_built(builder, 'coco_panoptic', split, data_dir, input_context)


def _decode_scannet(clip: dict) -> dict:
  """Stored ScanNet features -> the clip format: depth in metres, float32 normals."""
  clip = dict(clip)
  clip['depth'] = tf.cast(clip.pop('depth_mm'), tf.float32) / 1000.0
  clip['normals'] = tf.cast(clip['normals'], tf.float32)
  return clip


def load_scannet(
    split: str,
    data_dir: str = DEFAULT_DATA_DIR,
    height: int = 240,
    width: int = 320,
    input_context: Optional[tf.distribute.InputContext] = None,
    frame_stride: int = 10,
    clip_stride: int = 30,
) -> tf.data.Dataset:
  """Loads a built ScanNet split (see taskology_tf/datasets/scannet/builder.py).

  `frame_stride` (frames between a triplet's frames) and `clip_stride` (between triplet
  starts) name the build, as `--frame_stride` / `--clip_stride` of tools/build_dataset.py.

  Returns:
    A dataset of clips (T = 3): 'image' [T, H, W, 3] uint8 (colour resized to the depth
    camera's output size); 'depth' [T, H, W, 1] float32 metres (z, 0 = invalid); 'normals'
    [T, H, W, 3] float32 unit, camera frame, facing the camera (from hole-filled depth; zero =
    invalid); 'intrinsics' [3, 3] float32 (depth camera at H x W); 'color_intrinsics' [3, 3];
    'egomotion' [T-1, 4, 4] float32 (cam_{i+1}_from_cam_i); 'pose' [T, 4, 4] float32
    (camera-to-world); 'frame_indices' [T] int32; 'color_size', 'depth_size' [2] int32 (native
    rows, columns); 'scene' string; 'scene_seed' int64 (stable clip id).

  Raises:
    FileNotFoundError: not built; names the directory and the build command.
  """
  from taskology_tf.datasets.scannet import builder as scannet  # pylint: disable=g-import-not-at-top

  config = scannet.make_config(height, width, frame_stride, clip_stride)
  builder = scannet.ScanNet(config=config, data_dir=data_dir)
  dataset = _load_built(builder, 'scannet', split, data_dir, input_context)
  return dataset.map(_decode_scannet, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def load_scenenet(
    split: str,
    data_dir: str = DEFAULT_DATA_DIR,
    height: int = 240,
    width: int = 320,
    input_context: Optional[tf.distribute.InputContext] = None,
    view_stride: int = 1,
    clip_stride: int = 3,
    test_every: int = 20,
) -> tf.data.Dataset:
  """Loads a built SceneNet RGB-D split (see taskology_tf/datasets/scenenet/builder.py).

  `view_stride` (views between a triplet's frames, 1 = 25 render frames), `clip_stride` (views
  between triplet starts) and `test_every` (the held-out test share) name the build, as
  `--view_stride` / `--view_clip_stride` / `--test_every` of tools/build_dataset.py.

  Returns:
    A dataset of clips (T = 3): 'image' [T, H, W, 3] uint8; 'depth' [T, H, W, 1] float32
    metres (z, converted from the rendered ray length; 0 = no surface); 'normals' [T, H, W, 3]
    float32 unit, camera frame, facing the camera (from depth; zero = invalid); 'instance'
    [T, H, W] int32 (SceneNet instance ids); 'intrinsics' [3, 3] float32 (at H x W);
    'egomotion' [T-1, 4, 4] float32 (cam_{i+1}_from_cam_i); 'pose' [T, 4, 4] float32
    (camera-to-world); 'frame_indices' [T] int32 (render frame numbers); 'trajectory' string
    ('train/<k>/<traj>' or 'val/0/<traj>'); 'scene_seed' int64 (stable clip id).

  Raises:
    FileNotFoundError: not built; names the directory and the build command.
  """
  from taskology_tf.datasets.scenenet import builder as scenenet  # pylint: disable=g-import-not-at-top

  config = scenenet.make_config(height, width, view_stride, clip_stride, test_every)
  builder = scenenet.SceneNet(config=config, data_dir=data_dir)
  return _load_built(builder, 'scenenet', split, data_dir, input_context)
