"""NYUv2 (segmentation, depth, normals) for the shared-encoder experiments at full scale.

Reads examples in TFDS `nyu_depth_v2`'s feature format: `image` [480, 640, 3] uint8 and `depth`
[480, 640] float (metres), plus, for segmentation, `label40` [480, 640] uint8 (NYU40 ids, 0 =
void) as in the labelled 1449-image subset. TFDS's `nyu_depth_v2` itself carries no labels
(it is the raw-video depth set), so a segmentation experiment needs a build with `label40`;
`require_labels` makes the difference an error rather than a silently unsupervised task.

Each example becomes a one-frame clip in this project's format (pipelines.py): `image`
[1, H, W, 3] uint8 (bilinear), `depth` [1, H, W, 1] float32 metres (nearest, 0 = missing),
`normals` [1, H, W, 3] unit camera-frame normals computed from the depth (geometry/normals.py;
NYUv2 ships no normals outside preprocessed releases), `semantics` [1, H, W] uint8 in the
13-class set (255 = void), `intrinsics` [3, 3] (the Kinect calibration of NYUv2, scaled to H x W
with the pixel-centre convention of geometry/camera.py).
"""

from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from taskology_tf.geometry import camera
from taskology_tf.geometry import normals as normals_lib

CLASSES_13 = (
    'bed',
    'books',
    'ceiling',
    'chair',
    'floor',
    'furniture',
    'objects',
    'picture',
    'sofa',
    'table',
    'tv',
    'wall',
    'window',
)
# The standard NYU40 -> 13 mapping (Couprie et al. 2013; used by MTAN, CAGrad, LibMTL): index =
# NYU40 id (0 = void), value = 1-based index into CLASSES_13 (0 = void).
NYU40_TO_13 = (0, 12, 5, 6, 1, 4, 9, 10, 12, 13, 6, 8, 6, 13, 10, 6, 13, 6, 7, 7, 5)
NYU40_TO_13 += (7, 3, 2, 6, 11, 7, 7, 7, 7, 7, 7, 6, 7, 7, 7, 7, 7, 7, 6, 7)

# The Kinect RGB intrinsics of NYUv2 at 640 x 480 (the toolbox's camera_params.m).
NYU_HEIGHT, NYU_WIDTH = 480, 640
NYU_INTRINSICS = ((518.857901, 0.0, 325.582449), (0.0, 519.469611, 253.736166), (0.0, 0.0, 1.0))
# Depth beyond this (or 0) is missing in NYUv2's Kinect depth.
MAX_DEPTH = 10.0


def label40_to_13(label40: tf.Tensor) -> tf.Tensor:
  """NYU40 ids [...] uint8 -> 13-class ids 0..12, 255 for void; ids > 40 are void too."""
  table = tf.constant([255] + [c - 1 for c in NYU40_TO_13[1:]], tf.int32)
  ids = tf.cast(label40, tf.int32)
  safe = tf.where(ids <= 40, ids, 0)
  return tf.cast(tf.gather(table, safe), tf.uint8)


def to_clip(example, height: int, width: int, require_labels: bool):
  """One NYU example -> a one-frame clip at height x width (see the module docstring)."""
  image = tf.image.resize(example['image'][None], [height, width], method='bilinear')
  image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
  depth = tf.cast(example['depth'], tf.float32)
  depth = tf.reshape(depth, [1, NYU_HEIGHT, NYU_WIDTH, 1])
  depth = tf.image.resize(depth, [height, width], method='nearest')
  k = camera.scale_intrinsics(
      tf.constant(NYU_INTRINSICS, tf.float32), width / NYU_WIDTH, height / NYU_HEIGHT
  )
  valid = tf.cast((depth > 0.0) & (depth < MAX_DEPTH), tf.float32)
  # Missing depth gets a far placeholder for the normals computation only; its normals and
  # depth are excluded from losses and metrics (depth 0 is outside (0, max_depth)).
  filled = depth * valid + (1.0 - valid) * MAX_DEPTH
  n = normals_lib.depth_to_normals(filled, k[None])
  clip = {
      'image': image,
      'depth': depth * valid,
      'normals': n,
      'intrinsics': k,
  }
  if 'label40' in example:
    clip['semantics'] = label40_to_13(tf.reshape(example['label40'], [1, NYU_HEIGHT, NYU_WIDTH]))
    clip['semantics'] = tf.image.resize(
        clip['semantics'][..., None], [height, width], method='nearest'
    )[..., 0]
  elif require_labels:
    raise ValueError(
        'nyuv2_clips: the examples have no `label40` (TFDS nyu_depth_v2 is depth-only); give a '
        'build of the labelled NYUv2 subset, or set nyuv2_clips.require_labels = False and drop '
        'the segmentation task'
    )
  return clip


def nyuv2_clips(
    split: str,
    height: int,
    width: int,
    data_dir: Optional[str] = None,
    tfds_name: str = 'nyu_depth_v2',
    require_labels: bool = True,
    loader: Optional[Callable[[str], tf.data.Dataset]] = None,
) -> tf.data.Dataset:
  """Clips of NYUv2 at height x width.

  Args:
    split: a TFDS split ('train', 'validation', slices).
    height, width: output size (288 x 384 in the CAGrad / MTAN setting).
    data_dir: TFDS data directory.
    tfds_name: the TFDS dataset (its examples in the format of the module docstring).
    require_labels: raise if examples lack `label40` (segmentation needs it).
    loader: replaces TFDS: split -> dataset of examples in the same format (tests, other builds).
  """
  if loader is None:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    builder = tfds.builder(tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
      raise FileNotFoundError(
          f'nyuv2_clips: TFDS {tfds_name!r} is not prepared in {data_dir or "the default dir"}; '
          'download it with `tfds build nyu_depth_v2` (needs network access)'
      )
    examples = builder.as_dataset(split=split)
  else:
    examples = loader(split)
  spec = examples.element_spec
  for key in ('image', 'depth'):
    if key not in spec:
      raise ValueError(
          f'nyuv2_clips: examples of {tfds_name!r} have no {key!r} feature ({list(spec)})'
      )
  if require_labels and 'label40' not in spec:
    to_clip({k: tf.zeros(v.shape, v.dtype) for k, v in spec.items()}, height, width, True)
  return examples.map(
      lambda x: to_clip(x, height, width, require_labels), num_parallel_calls=tf.data.AUTOTUNE
  )


def generated_examples(num: int, seed: int = 0) -> tf.data.Dataset:
  """Random examples in the NYUv2 feature format (for tests: no download is possible)."""
  rng = np.random.default_rng(seed)
  return tf.data.Dataset.from_tensor_slices(
      {
          'image': rng.integers(0, 255, (num, NYU_HEIGHT, NYU_WIDTH, 3), dtype=np.uint8),
          'depth': rng.uniform(0.5, 9.0, (num, NYU_HEIGHT, NYU_WIDTH)).astype(np.float16),
          'label40': rng.integers(0, 41, (num, NYU_HEIGHT, NYU_WIDTH), dtype=np.uint8),
      }
  )
