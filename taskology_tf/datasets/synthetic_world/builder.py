"""TFDS builder for the synthetic street world (procedural, no download).

One example is a video triplet (frames t = 0, dt, 2 dt) of one random scene
with exact ground truth: depth, normals, semantics, egomotion, per-pixel
object motion, lidar sweeps and 3D boxes. See `render.render_example` for
the meaning, frame and units of every feature.

Example k of split s is scene `scene.example_seed(seed, s, k)`:
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
  """Builder config: what one example looks like.

  Split sizes and the base seed are arguments of the builder instead
  (`SyntheticWorld(split_sizes=..., seed=...)`): TFDS ties a config's name
  to one config object, and the name 'real_64x96' should not change with
  the number of examples built.

  Attributes:
    domain: 'sim' or 'real'.
    height: image rows.
    width: image columns.
    time_step: seconds between frames.
    hfov_degrees: horizontal field of view.
  """

  domain: str = 'real'
  height: int = 64
  width: int = 96
  time_step: float = scene_lib.DEFAULT_TIME_STEP
  hfov_degrees: float = render.DEFAULT_HFOV_DEGREES


def config_name(domain: str, height: int, width: int) -> str:
  """Config name, e.g. 'real_64x96'."""
  return f'{domain}_{int(height)}x{int(width)}'


def default_split_sizes(height: int, width: int) -> dict:
  """{'train': n, 'validation': n, 'test': n} for an image size."""
  sizes = DEFAULT_SPLIT_SIZES.get((int(height), int(width)),
                                  _FALLBACK_SPLIT_SIZES)
  return dict(zip(SPLIT_INDICES, sizes))


def _new_config(domain, height, width):
  return SyntheticWorldConfig(
      name=config_name(domain, height, width),
      description=(f'{domain} appearance, {height}x{width} images, '
                   f'{render.NUM_FRAMES}-frame videos.'),
      domain=domain,
      height=int(height),
      width=int(width),
  )


_PREDEFINED = {
    config_name(d, h, w): _new_config(d, h, w)
    for (h, w) in DEFAULT_SPLIT_SIZES
    for d in ('real', 'sim')
}


def make_config(domain: str, height: int, width: int) -> SyntheticWorldConfig:
  """The config for any domain and image size.

  Args:
    domain: 'sim' or 'real'.
    height: image rows (> 0).
    width: image columns (> 0).

  Returns:
    The `SyntheticWorldConfig` named `config_name(domain, height, width)`
    (the predefined object for the default sizes, as TFDS requires).

  Raises:
    ValueError: for an unknown domain or a non-positive size.
  """
  if domain not in DOMAINS:
    raise ValueError(f'domain must be one of {DOMAINS}, got {domain!r}')
  if int(height) <= 0 or int(width) <= 0:
    raise ValueError(f'image size must be positive, got {height}x{width}')
  name = config_name(domain, height, width)
  return _PREDEFINED.get(name) or _new_config(domain, height, width)


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


# Piecewise-constant maps compress well with zlib; noisy or smooth float data
# barely does, so it is stored as raw bytes (fast to write and read).
_ZLIB_FEATURES = ('normals', 'semantics', 'object_motion', 'lidar_classes',
                  'lidar_track_ids', 'lidar_valid')


def _features(height: int, width: int) -> tfds.features.FeaturesDict:
  features = {}
  for name, (shape, dtype) in feature_spec(height, width).items():
    encoding = (tfds.features.Encoding.ZLIB if name in _ZLIB_FEATURES else
                tfds.features.Encoding.BYTES)
    features[name] = tfds.features.Tensor(
        shape=shape, dtype=dtype, encoding=encoding)
  features['domain'] = tfds.features.Text()
  features['scene_seed'] = tfds.features.Scalar(dtype=np.int64)
  return tfds.features.FeaturesDict(features)


def render_split_example(config: SyntheticWorldConfig, split: str,
                         index: int, seed: int = DEFAULT_SEED) -> dict:
  """The example `index` of `split` under `config`, as stored (numpy).

  Args:
    config: the builder config.
    split: 'train', 'validation' or 'test'.
    index: example index within the split.
    seed: the dataset's base seed.

  Returns:
    Feature name -> numpy array (or str for 'domain').
  """
  scene_seed = scene_lib.example_seed(seed, SPLIT_INDICES[split], index)
  example = render.render_example(
      scene_lib.generate_scene(scene_seed),
      config.height,
      config.width,
      domain=config.domain,
      time_step=config.time_step,
      hfov_degrees=config.hfov_degrees)
  keep = set(feature_spec(config.height, config.width)) | {
      'domain', 'scene_seed'
  }
  return {k: v for k, v in example.items() if k in keep}


class SyntheticWorld(tfds.core.GeneratorBasedBuilder):
  """Procedural street-world video triplets with exact ground truth.

  Any image size: pass `config=make_config(domain, height, width)`; the
  named defaults are `real_64x96`, `sim_64x96`, `real_128x416` and
  `sim_128x416`.

  Args (besides the usual DatasetBuilder ones):
    split_sizes: optional {'train': n, 'validation': n, 'test': n}
      overriding `default_split_sizes` (missing splits keep their default;
      0 skips a split). Only used when generating.
    seed: base seed of all example seeds, recorded in the dataset's
      metadata ('seed').
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = list(_PREDEFINED.values())

  def __init__(self, *, split_sizes=None, seed: int = DEFAULT_SEED, **kwargs):
    unknown = set(split_sizes or {}) - set(SPLIT_INDICES)
    if unknown:
      raise ValueError(f'Unknown splits {sorted(unknown)}; known: '
                       f'{list(SPLIT_INDICES)}')
    if int(seed) < 0 or any(int(n) < 0 for n in (split_sizes or {}).values()):
      raise ValueError('seed and split sizes must be >= 0')
    self._split_size_overrides = dict(split_sizes or {})
    self._seed = int(seed)
    super().__init__(**kwargs)

  @property
  def split_sizes(self) -> dict:
    """Examples per split that `download_and_prepare` generates."""
    config = self.builder_config
    sizes = default_split_sizes(config.height, config.width)
    sizes.update({k: int(v) for k, v in self._split_size_overrides.items()})
    return sizes

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return self.dataset_info_from_configs(
        description=_DESCRIPTION,
        features=_features(config.height, config.width),
        metadata=tfds.core.MetadataDict(seed=self._seed),
        # Examples are independent random scenes already; keeping build order
        # skips TFDS's shuffle pass (readers shuffle anyway).
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Procedural: nothing to download.
    return {
        split: self._generate_examples(split, n)
        for split, n in self.split_sizes.items()
        if n > 0
    }

  def _generate_examples(self, split: str, num_examples: int):
    for index in range(num_examples):
      yield index, render_split_example(self.builder_config, split, index,
                                        self._seed)
