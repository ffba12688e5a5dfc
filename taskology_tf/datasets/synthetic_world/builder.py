"""TFDS builder for the synthetic street world (procedural, no download).

One example is a video triplet (frames t = 0, dt, 2 dt) of one random scene
with exact ground truth: depth, normals, semantics, egomotion, per-pixel
object motion, lidar sweeps and 3D boxes. See `render.render_example` for
the meaning, frame and units of every feature.

Example k of split s is scene `scene.example_seed(config.seed, s, k)`:
independent of generation order and of the split sizes, never shared
between splits, and identical in geometry across the `sim` and `real`
domains (which differ in appearance only).
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from taskology_tf.datasets.synthetic_world import render
from taskology_tf.datasets.synthetic_world import scene as scene_lib

DOMAINS = render.DOMAINS
# Split name -> the index mixed into every example seed of that split.
SPLIT_INDICES = {'train': 0, 'validation': 1, 'test': 2}
DEFAULT_SEED = 0
# Default split sizes per image size (height, width); other sizes use
# `_FALLBACK_SPLIT_SIZES`. The large size stores ~7x more per example.
DEFAULT_SPLIT_SIZES = {
    (64, 96): (2000, 200, 200),
    (128, 416): (1000, 100, 100),
}
_FALLBACK_SPLIT_SIZES = (2000, 200, 200)

_DESCRIPTION = """
Procedural street scenes (ground, building facades, moving cars and
pedestrians) rendered by vectorised ray casting. Each example is a triplet of
frames from an ego vehicle driving and turning, with exact depth, normals,
semantics, egomotion, object motion, lidar and 3D boxes. Domains `sim` (flat
colours) and `real` (world-space textures, other light, sensor noise) share
geometry exactly.
"""


@dataclasses.dataclass(eq=False)
class SyntheticWorldConfig(tfds.core.BuilderConfig):
  """Builder config: domain, image size, split sizes and base seed.

  The name is '{domain}_{height}x{width}' whatever the split sizes and seed:
  they decide how many examples are generated, not what an example looks
  like, and loaders find a dataset by domain and size alone.

  Attributes:
    domain: 'sim' or 'real'.
    height: image rows.
    width: image columns.
    num_train: examples generated for the train split (0 skips it).
    num_validation: examples generated for the validation split.
    num_test: examples generated for the test split.
    seed: base seed of every example seed (recorded in the dataset's
      metadata as 'seed').
    time_step: seconds between frames.
    hfov_degrees: horizontal field of view.
  """

  domain: str = 'real'
  height: int = 64
  width: int = 96
  num_train: int = 2000
  num_validation: int = 200
  num_test: int = 200
  seed: int = DEFAULT_SEED
  time_step: float = scene_lib.DEFAULT_TIME_STEP
  hfov_degrees: float = render.DEFAULT_HFOV_DEGREES

  @property
  def split_sizes(self) -> dict:
    """{'train': n, 'validation': n, 'test': n}."""
    return {'train': self.num_train, 'validation': self.num_validation, 'test': self.num_test}


def config_name(domain: str, height: int, width: int) -> str:
  """Config name, e.g. 'real_64x96'."""
  return f'{domain}_{int(height)}x{int(width)}'


def default_split_sizes(height: int, width: int) -> dict:
  """{'train': n, 'validation': n, 'test': n} for an image size."""
  sizes = DEFAULT_SPLIT_SIZES.get((int(height), int(width)), _FALLBACK_SPLIT_SIZES)
  return dict(zip(SPLIT_INDICES, sizes))


def _new_config(domain, height, width, sizes, seed):
  return SyntheticWorldConfig(
      name=config_name(domain, height, width),
      description=(
          f'{domain} appearance, {height}x{width} images, ' f'{render.NUM_FRAMES}-frame videos.'
      ),
      domain=domain,
      height=int(height),
      width=int(width),
      num_train=int(sizes['train']),
      num_validation=int(sizes['validation']),
      num_test=int(sizes['test']),
      seed=int(seed),
  )


_PREDEFINED = {
    config_name(d, h, w): _new_config(d, h, w, default_split_sizes(h, w), DEFAULT_SEED)
    for (h, w) in DEFAULT_SPLIT_SIZES
    for d in ('real', 'sim')
}


def make_config(
    domain: str,
    height: int,
    width: int,
    num_train: int | None = None,
    num_validation: int | None = None,
    num_test: int | None = None,
    seed: int = DEFAULT_SEED,
) -> SyntheticWorldConfig:
  """The config for any domain, image size, split sizes and seed.

  Args:
    domain: 'sim' or 'real'.
    height: image rows (> 0).
    width: image columns (> 0).
    num_train, num_validation, num_test: split sizes; None takes the
      default for this image size (`default_split_sizes`).
    seed: base seed (>= 0).

  Returns:
    A `SyntheticWorldConfig` named `config_name(domain, height, width)`;
    the predefined object when everything is the default.

  Raises:
    ValueError: for an unknown domain, a non-positive image size or a
      negative split size or seed.
  """
  if domain not in DOMAINS:
    raise ValueError(f'domain must be one of {DOMAINS}, got {domain!r}')
  if int(height) <= 0 or int(width) <= 0:
    raise ValueError(f'image size must be positive, got {height}x{width}')
  sizes = default_split_sizes(height, width)
  for split, n in (('train', num_train), ('validation', num_validation), ('test', num_test)):
    if n is not None:
      sizes[split] = int(n)
  if min(sizes.values()) < 0 or int(seed) < 0:
    raise ValueError(f'split sizes and seed must be >= 0, got {sizes}, ' f'seed {seed}')
  predefined = _PREDEFINED.get(config_name(domain, height, width))
  if predefined is not None and predefined.split_sizes == sizes and predefined.seed == int(seed):
    return predefined
  return _new_config(domain, height, width, sizes, seed)


def feature_spec(height: int, width: int) -> dict:
  """Name -> (shape, numpy dtype) of every tensor feature."""
  t, h, w = render.NUM_FRAMES, height, width
  l, k = render.LIDAR_POINTS, scene_lib.MAX_OBJECTS
  return {
      'image': ((t, h, w, 3), np.uint8),
      'depth': ((t, h, w, 1), np.float32),
      'normals': ((t, h, w, 3), np.float32),
      'semantics': ((t, h, w), np.uint8),
      'intrinsics': ((3, 3), np.float32),
      'egomotion': ((t - 1, 4, 4), np.float32),
      'object_motion': ((t - 1, h, w, 3), np.float32),
      'camera_to_vehicle': ((4, 4), np.float32),
      'lidar_points': ((t, l, 4), np.float32),
      'lidar_valid': ((t, l), np.bool_),
      'lidar_classes': ((t, l), np.uint8),
      'lidar_track_ids': ((t, l), np.int32),
      'boxes': ((t, k, 7), np.float32),
      'box_classes': ((t, k), np.int32),
      'track_ids': ((t, k), np.int32),
      'num_boxes': ((t,), np.int32),
  }


# Piecewise-constant maps compress well with zlib, and so does depth (with
# zero camera pitch, ground depth depends on the row only and vertical walls'
# on the column only). Images and lidar points barely compress and cost the
# most zlib time, so they are stored as raw bytes (fast to write and read).
_ZLIB_FEATURES = (
    'depth',
    'normals',
    'semantics',
    'object_motion',
    'lidar_classes',
    'lidar_track_ids',
    'lidar_valid',
)


def _features(height: int, width: int) -> tfds.features.FeaturesDict:
  features = {}
  for name, (shape, dtype) in feature_spec(height, width).items():
    encoding = (
        tfds.features.Encoding.ZLIB if name in _ZLIB_FEATURES else tfds.features.Encoding.BYTES
    )
    features[name] = tfds.features.Tensor(shape=shape, dtype=dtype, encoding=encoding)
  features['domain'] = tfds.features.Text()
  features['scene_seed'] = tfds.features.Scalar(dtype=np.int64)
  return tfds.features.FeaturesDict(features)


def render_split_example(config: SyntheticWorldConfig, split: str, index: int) -> dict:
  """The example `index` of `split` under `config`, as stored (numpy).

  Args:
    config: the builder config.
    split: 'train', 'validation' or 'test'.
    index: example index within the split.

  Returns:
    Feature name -> numpy array (or str for 'domain').
  """
  scene_seed = scene_lib.example_seed(config.seed, SPLIT_INDICES[split], index)
  example = render.render_example(
      scene_lib.generate_scene(scene_seed),
      config.height,
      config.width,
      domain=config.domain,
      time_step=config.time_step,
      hfov_degrees=config.hfov_degrees,
  )
  keep = set(feature_spec(config.height, config.width)) | {'domain', 'scene_seed'}
  return {k: v for k, v in example.items() if k in keep}


class SyntheticWorld(tfds.core.GeneratorBasedBuilder):
  """Procedural street-world video triplets with exact ground truth.

  Any image size, split sizes and seed: pass `config=make_config(domain,
  height, width, ...)`. The named defaults are `real_64x96`, `sim_64x96`,
  `real_128x416` and `sim_128x416`.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = list(_PREDEFINED.values())

  def _create_builder_config(self, builder_config, version):
    # TFDS refuses a config object that shares its name with a predefined
    # one; here that is intended (e.g. 'real_64x96' with fewer examples), as
    # the name only says what an example looks like. tools/build_dataset.py
    # refuses to reuse a build whose split sizes or seed differ.
    if isinstance(builder_config, SyntheticWorldConfig):
      return builder_config
    return super()._create_builder_config(builder_config, version)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return self.dataset_info_from_configs(
        description=_DESCRIPTION,
        features=_features(config.height, config.width),
        metadata=tfds.core.MetadataDict(seed=config.seed),
        # Examples are independent random scenes already; keeping build order
        # skips TFDS's shuffle pass (readers shuffle anyway).
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Procedural: nothing to download.
    return {
        split: self._generate_examples(split, n)
        for split, n in self.builder_config.split_sizes.items()
        if n > 0
    }

  def _generate_examples(self, split: str, num_examples: int):
    config = self.builder_config
    for index in range(num_examples):
      yield index, render_split_example(config, split, index)
