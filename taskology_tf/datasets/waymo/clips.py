"""The Waymo clip source for gin (imports the waymo package only when called)."""

import os
from typing import Optional

import tensorflow as tf

DEFAULT_DATA_DIR = os.path.join('data', 'tensorflow_datasets')
SEQUENCE_KEYS = (
    'points_valid',
    'gt_boxes',
    'gt_valid',
    'gt_track_ids',
    'gt_num_points',
    'gt_difficulty',
    'scene_seed',
)


def waymo_point_cloud_clips(
    split: str = 'train',
    data_dir: str = DEFAULT_DATA_DIR,
    num_frames: int = 3,
    time_step: float = 0.5,
    max_boxes: int = 200,
    max_sequences: Optional[int] = None,
    input_context: Optional[tf.distribute.InputContext] = None,
) -> tf.data.Dataset:
  """Waymo lidar sequences in inputs/point_clouds.py's format, from a build of this builder.

  Points are (x, y, z, tanh(intensity)): Waymo's intensity is unbounded, where the synthetic
  world's and KITTI's reflectance lie in [0, 1]. L (points per frame) varies between sequences;
  the pillar pipeline gives every batch static shapes. 'gt_difficulty' carries the official
  levels (metrics/detection3d.py uses them when present).

  Args:
    split: 'train' or 'validation' (or a TFDS slice of them).
    data_dir: the TFDS data directory of `tools/build_dataset.py --dataset=waymo`.
    num_frames, time_step, max_boxes: the built config.
    max_sequences: read at most this many (None: all).
    input_context: this input pipeline's context (None: the whole split).
  """
  from taskology_tf.datasets.waymo import builder  # pylint: disable=g-import-not-at-top

  ds = builder.load_waymo(split, data_dir, num_frames, time_step, max_boxes, input_context)

  def to_sequence(ex):
    pts = ex['points']
    out = {k: ex[k] for k in SEQUENCE_KEYS}
    out['points'] = tf.concat([pts[..., :3], tf.tanh(pts[..., 3:4])], axis=-1)
    return out

  ds = ds.map(to_sequence, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.take(max_sequences) if max_sequences is not None else ds
