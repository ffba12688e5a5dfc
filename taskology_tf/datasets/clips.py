"""Clip sources of the built datasets, for gin (`@kitti_raw_clips`, `@cityscapes_clips`,
`@coco_panoptic_clips`, `@scannet_clips`, `@scenenet_clips`).

Registered in training/experiment.py. Importing this module does not import TFDS (the
loaders are imported when a source is called), so experiments that never read these datasets
do not pay for it. Each source takes an `input_context` and returns only that input
pipeline's even share of the split (read-time sharding, see inputs/pipelines.py).
"""

from typing import Optional

import tensorflow as tf

DEFAULT_DATA_DIR = 'data/tensorflow_datasets'


def kitti_raw_clips(
    split: str,
    data_dir: str = DEFAULT_DATA_DIR,
    height: int = 128,
    width: int = 416,
    input_context: Optional[tf.distribute.InputContext] = None,
) -> tf.data.Dataset:
  """KITTI raw Eigen-split clips: `loader.load_kitti_raw` (features documented there).

  Args:
    split: 'train', 'validation', 'test' (Eigen test frames, with velodyne ground truth).
    data_dir: TFDS data directory built by `tools/build_dataset.py --dataset=kitti_raw`.
    height, width: the built output size.
    input_context: this input pipeline's context (None: the whole split).
  """
  from taskology_tf.datasets import loader  # pylint: disable=g-import-not-at-top

  return loader.load_kitti_raw(split, data_dir, height, width, input_context)


def cityscapes_clips(
    split: str,
    data_dir: str = DEFAULT_DATA_DIR,
    height: int = 128,
    width: int = 416,
    input_context: Optional[tf.distribute.InputContext] = None,
    frame_step: int = 1,
    centre_stride: int = 2,
) -> tf.data.Dataset:
  """Cityscapes sequence clips: `loader.load_cityscapes` (features documented there).

  Args:
    split: 'train', 'validation' or 'test'.
    data_dir: TFDS data directory built by `tools/build_dataset.py --dataset=cityscapes`.
    height, width: the built output size.
    input_context: this input pipeline's context (None: the whole split).
    frame_step, centre_stride: the build's triplet sampling (its --frame_step, --centre_stride).
  """
  from taskology_tf.datasets import loader  # pylint: disable=g-import-not-at-top

  return loader.load_cityscapes(
      split, data_dir, height, width, input_context, frame_step, centre_stride
  )


def coco_panoptic_clips(
    split: str,
    data_dir: str = DEFAULT_DATA_DIR,
    height: int = 128,
    width: int = 416,
    input_context: Optional[tf.distribute.InputContext] = None,
    resize_mode: str = 'crop',
) -> tf.data.Dataset:
  """COCO panoptic one-frame clips with project-class `semantics`: `loader.load_coco_panoptic`.

  Args:
    split: 'train' or 'validation'.
    data_dir: TFDS data directory built by `tools/build_dataset.py --dataset=coco_panoptic`.
    height, width, resize_mode: the built config (its --height, --width, --resize_mode).
    input_context: this input pipeline's context (None: the whole split).
  """
  from taskology_tf.datasets import loader  # pylint: disable=g-import-not-at-top

  return loader.load_coco_panoptic(split, data_dir, height, width, input_context, resize_mode)


def scannet_clips(
    split: str,
    data_dir: str = DEFAULT_DATA_DIR,
    height: int = 240,
    width: int = 320,
    input_context: Optional[tf.distribute.InputContext] = None,
    frame_stride: int = 10,
    clip_stride: int = 30,
) -> tf.data.Dataset:
  """ScanNet v2 triplets (depth, normals from depth, poses): `loader.load_scannet`.

  Args:
    split: 'train', 'validation' or 'test' (ScanNet's official v2 scene lists).
    data_dir: TFDS data directory built by `tools/build_dataset.py --dataset=scannet`.
    height, width: the built output size.
    input_context: this input pipeline's context (None: the whole split).
    frame_stride, clip_stride: the build's triplet sampling (its --frame_stride, --clip_stride).
  """
  from taskology_tf.datasets import loader  # pylint: disable=g-import-not-at-top

  return loader.load_scannet(
      split, data_dir, height, width, input_context, frame_stride, clip_stride
  )


def scenenet_clips(
    split: str,
    data_dir: str = DEFAULT_DATA_DIR,
    height: int = 240,
    width: int = 320,
    input_context: Optional[tf.distribute.InputContext] = None,
    view_stride: int = 1,
    clip_stride: int = 3,
    test_every: int = 20,
) -> tf.data.Dataset:
  """SceneNet RGB-D triplets (z-depth, normals from depth, instances, poses): `load_scenenet`.

  Args:
    split: 'train', 'validation' (the val protobuf) or 'test' (held-out train trajectories).
    data_dir: TFDS data directory built by `tools/build_dataset.py --dataset=scenenet`.
    height, width: the built output size.
    input_context: this input pipeline's context (None: the whole split).
    view_stride, clip_stride, test_every: the build's sampling (its --view_stride,
      --view_clip_stride, --test_every).
  """
  from taskology_tf.datasets import loader  # pylint: disable=g-import-not-at-top

  return loader.load_scenenet(
      split, data_dir, height, width, input_context, view_stride, clip_stride, test_every
  )
