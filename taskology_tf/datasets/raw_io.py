"""Reading raw dataset files (PNG images, label maps) with errors that name the file.

Shared by the KITTI raw and Cityscapes builders. Images are decoded fully (not lazily),
so a truncated or corrupt PNG fails here, naming the file, rather than later inside TFDS.
"""

import collections
import os
from typing import Optional, Tuple
import zlib

import numpy as np
from PIL import Image


class RawDataError(ValueError):
  """A raw dataset file is missing, truncated or not what the builder expects."""


def read_image(path: str, mode: str = 'RGB') -> np.ndarray:
  """Decodes an image file completely.

  Args:
    path: the PNG (or other PIL-readable) file.
    mode: PIL mode to convert to: 'RGB' (-> [H, W, 3] uint8), 'L' (-> [H, W] uint8) or
      'I' (-> [H, W] int32, e.g. 16-bit disparity or instance maps).

  Returns:
    The decoded array.

  Raises:
    RawDataError: the file is missing, truncated or not a decodable image.
  """
  if not os.path.isfile(path):
    raise RawDataError(f'image {path} does not exist')
  try:
    with Image.open(path) as image:
      image.load()  # Decodes every row: a truncated file fails here.
      if mode == 'I':
        array = np.asarray(image, dtype=np.int32)
      else:
        array = np.asarray(image.convert(mode))
  except (OSError, SyntaxError, ValueError, zlib.error) as e:
    raise RawDataError(
        f'image {path} could not be decoded ({e}); expected a complete PNG: truncated or '
        'corrupt download?'
    ) from e
  if mode == 'I' and array.ndim != 2:
    raise RawDataError(f'image {path}: expected a single-channel map, got shape {array.shape}')
  return array


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear (antialiased when shrinking) resize of an RGB image: [H, W, 3] uint8 -> [h, w, 3]."""
  if image.shape[:2] == (height, width):
    return image
  return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
  """Nearest-neighbour resize of a label map [H, W] (any integer dtype) -> [h, w]."""
  if labels.shape[:2] == (height, width):
    return labels
  # Nearest sample at each output pixel centre under the pixel-centre convention:
  # output pixel j covers input coordinate (j + 0.5) * W / w - 0.5.
  rows = np.clip(np.floor((np.arange(height) + 0.5) * labels.shape[0] / height), 0, None)
  cols = np.clip(np.floor((np.arange(width) + 0.5) * labels.shape[1] / width), 0, None)
  return labels[rows.astype(np.int64)[:, None], cols.astype(np.int64)[None, :]]


def downsample_sparse_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:
  """Sparse depth [H, W] (0 = no value) -> [h, w], keeping the nearest value per output pixel.

  Input pixel (r, c) falls in output pixel (floor((r + 0.5) h / H), floor((c + 0.5) w / W))
  (pixel centres at integer coordinates); of the values landing in one output pixel the
  smallest (nearest to the camera) is kept, as the velodyne projection keeps the nearest point.
  """
  depth = np.asarray(depth)
  if depth.shape == (height, width):
    return depth.astype(np.float32)
  rows, cols = np.nonzero(depth > 0)
  out_r = np.minimum(((rows + 0.5) * height / depth.shape[0]).astype(np.int64), height - 1)
  out_c = np.minimum(((cols + 0.5) * width / depth.shape[1]).astype(np.int64), width - 1)
  out = np.full((height, width), np.inf)
  np.minimum.at(out, (out_r, out_c), depth[rows, cols])
  out[~np.isfinite(out)] = 0.0
  return out.astype(np.float32)


def scale_intrinsics(intrinsics: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
  """numpy twin of `geometry.camera.scale_intrinsics`: K' = S K for a resize by (sx, sy).

  With pixel centres at integer coordinates, u' = (u + 0.5) sx - 0.5, so
  S = [[sx, 0, 0.5 sx - 0.5], [0, sy, 0.5 sy - 0.5], [0, 0, 1]].

  Args:
    intrinsics: [3, 3] float, pixels.
    scale_x: new width / old width.
    scale_y: new height / old height.
  """
  s = np.array(
      [[scale_x, 0.0, 0.5 * scale_x - 0.5], [0.0, scale_y, 0.5 * scale_y - 0.5], [0.0, 0.0, 1.0]]
  )
  return s @ np.asarray(intrinsics, np.float64)


def crop_intrinsics(intrinsics: np.ndarray, top: int, left: int) -> np.ndarray:
  """K of an image cropped to start at row `top`, column `left`: cx -= left, cy -= top."""
  k = np.array(intrinsics, np.float64)
  k[0, 2] -= left
  k[1, 2] -= top
  return k


class SkipCounter:
  """Counts items a build skipped, per split and reason, for the end-of-build summary."""

  def __init__(self):
    self.counts = collections.Counter()
    self.examples = collections.defaultdict(list)

  def skip(self, split: str, reason: str, example: Optional[str] = None) -> None:
    """Records one skipped item (with up to 3 examples of what was skipped)."""
    self.counts[(split, reason)] += 1
    if example is not None and len(self.examples[(split, reason)]) < 3:
      self.examples[(split, reason)].append(example)

  def items(self):
    """((split, reason), count) pairs, sorted."""
    return sorted(self.counts.items())

  def total(self, split: Optional[str] = None) -> int:
    return sum(n for (s, _), n in self.counts.items() if split is None or s == split)

  def as_dict(self) -> dict:
    """{'<split>: <reason>': count}, JSON-serialisable (stored in the dataset's metadata)."""
    return {f'{split}: {reason}': n for (split, reason), n in self.items()}

  def lines(self) -> Tuple[str, ...]:
    """Human-readable lines: '  test: 3 skipped: <reason> (e.g. a, b)'."""
    out = []
    for (split, reason), n in self.items():
      ex = self.examples.get((split, reason))
      out.append(f'  {split}: {n} skipped: {reason}' + (f' (e.g. {", ".join(ex)})' if ex else ''))
    return tuple(out)


class RawBuilderMixin:
  """What the TFDS builders over raw downloads share (put it before GeneratorBasedBuilder).

  Subclasses set CONFIG_CLASS (their BuilderConfig type), DESCRIPTION and HOMEPAGE, and define
  `_features()`. They get: a `skips` counter for the end-of-build summary; config objects used
  as given even when they share a predefined config's name (other sizes or split lists); and a
  DatasetInfo with an empty metadata dict (the build stores `skipped`, {'<split>: <reason>':
  count}, there) and shuffling off, so examples keep the order the builder generates them in.
  """

  CONFIG_CLASS = None
  DESCRIPTION = ''
  HOMEPAGE = ''

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.skips = SkipCounter()

  def _create_builder_config(self, builder_config, version):
    if self.CONFIG_CLASS is not None and isinstance(builder_config, self.CONFIG_CLASS):
      return builder_config
    return super()._create_builder_config(builder_config, version)

  def _features(self):
    raise NotImplementedError(f'{type(self).__name__} must define _features()')

  def _info(self):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    return self.dataset_info_from_configs(
        description=self.DESCRIPTION,
        features=self._features(),
        homepage=self.HOMEPAGE,
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
    )
