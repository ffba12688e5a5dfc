"""TFDS builder for Cityscapes video triplets (leftImg8bit_sequence), cropped as Gordon et al.

Raw layout (`manual_dir`, as the Cityscapes zips unpack):

  <manual_dir>/leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  <manual_dir>/camera/<split>/<city>/<city>_<seq>_<frame>_camera.json     (one per snippet)
  <manual_dir>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   (optional)
  <manual_dir>/disparity/<split>/<city>/<city>_<seq>_<frame>_disparity.png    (optional)

Sequences come in 30-frame snippets (17 Hz) whose 20th frame is the one with gtFine labels,
a camera JSON and a disparity map. One example is the triplet (c - s, c, c + s) around a
centre frame c of a snippet (s = `frame_step`; centres every `centre_stride` frames, phased
so the labelled frame is a centre), with:

- the crop of Gordon et al. (struct2depth's gen_data_city, which their code reads): the
  middle half of the rows (dropping the bottom quarter with the ego car's bonnet and the top
  quarter) and the centred columns of the output aspect ratio (2048x1024 -> rows 256:768,
  columns 192:1856), resized to the output size;
- intrinsics from the snippet's camera JSON, shifted by the crop and scaled by the resize with
  the project's pixel-centre convention. (struct2depth instead halves cy and divides cx by the
  width ratio; at 416x128 its cx is 3.4 px left of the cropped principal point.)
- gtFine labels (train and validation only; the test labels are placeholders) of the labelled
  frame, in the project's class set (`semantics`) and as the 19 Cityscapes train ids
  (`cityscapes_label`), 255 elsewhere and in frames without labels (`has_labels` per frame);
- depth from the disparity map where one exists (depth = baseline fx / d, d = (p - 1) / 256
  for p > 0, as the Cityscapes README defines it), cropped and resized like the image.

Labels and depth are for evaluation only (the experiments train without them).
"""

import dataclasses
import glob
import json
import os
import re
from typing import Dict, List, Tuple
import zlib

import numpy as np
import tensorflow_datasets as tfds

from taskology_tf.datasets import class_set
from taskology_tf.datasets import raw_io

NUM_FRAMES = 3
SPLIT_DIRS = (('train', 'train'), ('validation', 'val'), ('test', 'test'))
IGNORE = class_set.IGNORE_LABEL

# Cityscapes labelIds (cityscapesscripts/helpers/labels.py) -> the 19 evaluation train ids.
LABEL_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
# Cityscapes labelIds -> the project's class set (`datasets/class_set.py`: Cityscapes' 19
# train classes, so `semantics` equals `cityscapes_label`; the movable classes are person,
# rider and the six vehicles). Mapped at build time with class_set's table.

_NAME = re.compile(r'^(?P<city>[a-z_]+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$')

_DESCRIPTION = """
Cityscapes leftImg8bit_sequence frame triplets, cropped as Gordon et al. (ICCV 2019) did
(middle half of the rows, centred columns of the output aspect) and resized, with intrinsics
from the camera JSONs, and gtFine labels and disparity depth where a frame has them.
"""


def _lut(mapping: Dict[int, int]) -> np.ndarray:
  lut = np.full([256], IGNORE, np.uint8)
  for k, v in mapping.items():
    lut[k] = v
  return lut


_TRAIN_ID_LUT = _lut(LABEL_TO_TRAIN_ID)


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
  """[H, W] Cityscapes labelIds (0..33, -1) -> [H, W] uint8 train ids (0..18, 255 ignore)."""
  return _TRAIN_ID_LUT[np.clip(label_ids, 0, 255).astype(np.int64)]


def label_ids_to_project_classes(label_ids: np.ndarray) -> np.ndarray:
  """[H, W] Cityscapes labelIds -> [H, W] uint8 project classes (0..18, 255 ignore)."""
  return class_set.cityscapes_label_ids_to_classes(np.asarray(label_ids).astype(np.int64))


@dataclasses.dataclass(eq=False)
class CityscapesConfig(tfds.core.BuilderConfig):
  """Builder config.

  Attributes:
    height, width: output size.
    frame_step: frames between the frames of a triplet (1: consecutive 17 Hz frames;
      struct2depth's gen_data_city used 2).
    centre_stride: frames between the centres of successive triplets of a snippet.
    raw_size: (rows, columns) of the raw images the camera JSONs describe; an image of
      another size is an error naming it.
    crop_top, crop_bottom: fractions of the rows cropped at the top and at the bottom (the
      ego car); Gordon et al. / struct2depth: 0.25 each.
  """

  height: int = 128
  width: int = 416
  frame_step: int = 1
  centre_stride: int = 2
  raw_size: Tuple[int, int] = (1024, 2048)
  crop_top: float = 0.25
  crop_bottom: float = 0.25


def config_name(height: int, width: int, frame_step: int = 1, centre_stride: int = 2) -> str:
  """E.g. '128x416'; non-default sampling is appended ('128x416_step2_stride1').

  The raw size is not part of the name: it must match the raw images, it does not change
  what an example looks like.
  """
  name = f'{int(height)}x{int(width)}'
  if (int(frame_step), int(centre_stride)) != (1, 2):
    name += f'_step{int(frame_step)}_stride{int(centre_stride)}'
  return name


def make_config(
    height: int = 128,
    width: int = 416,
    frame_step: int = 1,
    centre_stride: int = 2,
    raw_size: Tuple[int, int] = (1024, 2048),
) -> CityscapesConfig:
  """The config for an output size and triplet sampling (tests: another raw size).

  Raises:
    ValueError: non-positive sizes or steps.
  """
  if min(int(height), int(width), int(frame_step), int(centre_stride), *raw_size) <= 0:
    raise ValueError(
        f'sizes and steps must be positive, got {height}x{width}, frame_step {frame_step}, '
        f'centre_stride {centre_stride}, raw_size {raw_size}'
    )
  return CityscapesConfig(
      name=config_name(height, width, frame_step, centre_stride),
      description=f'{height}x{width} crops, frame step {frame_step}.',
      height=int(height),
      width=int(width),
      frame_step=int(frame_step),
      centre_stride=int(centre_stride),
      raw_size=(int(raw_size[0]), int(raw_size[1])),
  )


def crop_box(raw_size: Tuple[int, int], config: CityscapesConfig) -> Tuple[int, int, int, int]:
  """(top, bottom, left, right) of the crop in raw pixels (struct2depth's crop, any size).

  Rows [top, bottom) keep the middle `1 - crop_top - crop_bottom` of the image; columns keep
  a centred window of the output's aspect ratio over those rows. At 2048x1024 -> 416x128:
  rows 256:768, columns 192:1856 (1664 = 512 * 416 / 128).
  """
  rows, cols = raw_size
  top = int(round(rows * config.crop_top))
  bottom = rows - int(round(rows * config.crop_bottom))
  crop_w = int(round((bottom - top) * config.width / config.height))
  if crop_w > cols or bottom <= top:
    raise ValueError(f'the crop of {raw_size} at aspect {config.width}/{config.height} is empty')
  left = (cols - crop_w) // 2
  return top, bottom, left, left + crop_w


def read_camera_json(path: str) -> Dict[str, float]:
  """fx, fy, u0, v0 (pixels) and baseline (metres, or None) of a Cityscapes camera JSON.

  Raises:
    raw_io.RawDataError: unreadable JSON or missing/non-numeric intrinsics (names the file).
  """
  try:
    with open(path, 'r') as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise raw_io.RawDataError(
        f'camera JSON {path} is not readable JSON ({e}); expected {{"intrinsic": {{"fx", "fy", '
        '"u0", "v0"}}, "extrinsic": {{"baseline", ...}}}}'
    ) from e
  intrinsic = data.get('intrinsic') if isinstance(data, dict) else None
  out = {}
  for key in ('fx', 'fy', 'u0', 'v0'):
    value = intrinsic.get(key) if isinstance(intrinsic, dict) else None
    if not isinstance(value, (int, float)) or not np.isfinite(value):
      raise raw_io.RawDataError(
          f'camera JSON {path}: expected a number at intrinsic.{key}, got {value!r}'
      )
    out[key] = float(value)
  if out['fx'] <= 0 or out['fy'] <= 0:
    raise raw_io.RawDataError(f'camera JSON {path}: focal lengths must be positive')
  extrinsic = data.get('extrinsic')
  baseline = extrinsic.get('baseline') if isinstance(extrinsic, dict) else None
  out['baseline'] = float(baseline) if isinstance(baseline, (int, float)) else None
  return out


def camera_intrinsics(camera: Dict[str, float]) -> np.ndarray:
  """[3, 3] float64 K of the raw image from a parsed camera JSON."""
  return np.array([[camera['fx'], 0, camera['u0']], [0, camera['fy'], camera['v0']], [0, 0, 1]])


def disparity_to_depth(disparity_png: np.ndarray, fx: float, baseline: float) -> np.ndarray:
  """Cityscapes disparity PNG values -> depth (metres, 0 = invalid).

  The README of the disparity package: d = (p - 1) / 256 for p > 0 (p = 0 invalid), and
  depth = baseline * fx / d.
  """
  p = np.asarray(disparity_png, np.float64)
  d = (p - 1.0) / 256.0
  valid = (p > 0) & (d > 0)
  depth = np.zeros(p.shape, np.float32)
  depth[valid] = baseline * fx / d[valid]
  return depth


@dataclasses.dataclass(frozen=True)
class _Item:
  split_dir: str
  city: str
  seq: str
  frames: Tuple[int, ...]
  camera_json: str
  labelled: Tuple[bool, ...]


def _frame_file(root, kind, split_dir, city, seq, frame, suffix):
  return os.path.join(root, kind, split_dir, city, f'{city}_{seq}_{frame:06d}_{suffix}')


def plan_split(
    root: str, split: str, split_dir: str, config: CityscapesConfig, skips: raw_io.SkipCounter
) -> List[_Item]:
  """The triplets of one split; snippets without a camera JSON or too short are counted."""
  base = os.path.join(root, 'leftImg8bit_sequence', split_dir)
  if not os.path.isdir(base):
    skips.skip(split, 'split folder missing', base)
    return []
  items = []
  step, stride = config.frame_step, config.centre_stride
  for city in sorted(os.listdir(base)):
    city_dir = os.path.join(base, city)
    if not os.path.isdir(city_dir):
      continue
    by_seq: Dict[str, List[int]] = {}
    for name in sorted(os.listdir(city_dir)):
      m = _NAME.match(name)
      if not m:
        if name.endswith('.png'):
          skips.skip(split, 'file name not <city>_<seq>_<frame>_leftImg8bit.png', name)
        continue
      by_seq.setdefault(m['seq'], []).append(int(m['frame']))
    cameras = {}
    for path in glob.glob(os.path.join(root, 'camera', split_dir, city, f'{city}_*_camera.json')):
      parts = os.path.basename(path).split('_')
      cameras.setdefault(parts[-3], {})[int(parts[-2])] = path
    for seq, frames in sorted(by_seq.items()):
      # Contiguous runs of frame numbers are the snippets.
      runs, run = [], [frames[0]]
      for f in frames[1:]:
        if f == run[-1] + 1:
          run.append(f)
        else:
          runs.append(run)
          run = [f]
      runs.append(run)
      for run in runs:
        lo, hi = run[0], run[-1]
        json_frames = [f for f in cameras.get(seq, {}) if lo <= f <= hi]
        if not json_frames:
          skips.skip(split, 'snippet without a camera JSON', f'{city}_{seq}_{lo:06d}')
          continue
        anchor = json_frames[0]  # The snippet's labelled frame (it has the camera JSON).
        camera_json = cameras[seq][anchor]
        centres = [c for c in range(lo + step, hi - step + 1) if (c - anchor) % stride == 0]
        if not centres:
          skips.skip(split, 'snippet shorter than a triplet', f'{city}_{seq}_{lo:06d}')
          continue
        for c in centres:
          trip = (c - step, c, c + step)
          labelled = tuple(
              split_dir != 'test'
              and os.path.isfile(
                  _frame_file(root, 'gtFine', split_dir, city, seq, f, 'gtFine_labelIds.png')
              )
              for f in trip
          )
          items.append(_Item(split_dir, city, seq, trip, camera_json, labelled))
  return items


def feature_spec(config: CityscapesConfig) -> dict:
  t, h, w = NUM_FRAMES, config.height, config.width
  return {
      'image': ((t, h, w, 3), np.uint8),
      'intrinsics': ((3, 3), np.float32),
      'semantics': ((t, h, w), np.uint8),
      'cityscapes_label': ((t, h, w), np.uint8),
      'has_labels': ((t,), np.bool_),
      'depth': ((t, h, w, 1), np.float32),
      'frame_indices': ((t,), np.int32),
  }


def _features(config: CityscapesConfig) -> tfds.features.FeaturesDict:
  features = {}
  for name, (shape, dtype) in feature_spec(config).items():
    encoding = (
        tfds.features.Encoding.ZLIB
        if name in ('semantics', 'cityscapes_label', 'depth')
        else tfds.features.Encoding.BYTES
    )
    features[name] = tfds.features.Tensor(shape=shape, dtype=dtype, encoding=encoding)
  features['sequence'] = tfds.features.Text()
  features['scene_seed'] = tfds.features.Scalar(dtype=np.int64)
  return tfds.features.FeaturesDict(features)


def make_example(root: str, item: _Item, config: CityscapesConfig) -> dict:
  """Decodes, crops and resizes one triplet with its labels and depth.

  Raises:
    raw_io.RawDataError: a file at fault (named).
  """
  h, w = config.height, config.width
  camera = read_camera_json(item.camera_json)
  top, bottom, left, right = crop_box(config.raw_size, config)
  # Eq.: K' = S (K - crop offset), S the resize of `raw_io.scale_intrinsics`.
  k = raw_io.scale_intrinsics(
      raw_io.crop_intrinsics(camera_intrinsics(camera), top, left),
      w / (right - left),
      h / (bottom - top),
  )
  images, semantics, train_ids, depth = [], [], [], []
  for f, labelled in zip(item.frames, item.labelled):
    args = (root, 'leftImg8bit_sequence', item.split_dir, item.city, item.seq, f)
    path = _frame_file(*args, 'leftImg8bit.png')
    image = raw_io.read_image(path, 'RGB')
    if image.shape[:2] != tuple(config.raw_size):
      raise raw_io.RawDataError(
          f'image {path} is {image.shape[1]}x{image.shape[0]}, expected '
          f'{config.raw_size[1]}x{config.raw_size[0]} (the size the camera JSONs describe)'
      )
    images.append(raw_io.resize_image(image[top:bottom, left:right], h, w))
    sem = np.full((h, w), IGNORE, np.uint8)
    tid = np.full((h, w), IGNORE, np.uint8)
    if labelled:
      lpath = _frame_file(
          root, 'gtFine', item.split_dir, item.city, item.seq, f, 'gtFine_labelIds.png'
      )
      label_ids = raw_io.read_image(lpath, 'I')
      if label_ids.shape != tuple(config.raw_size):
        raise raw_io.RawDataError(f'labels {lpath} are {label_ids.shape}, not {config.raw_size}')
      label_ids = raw_io.resize_labels(label_ids[top:bottom, left:right], h, w)
      sem = label_ids_to_project_classes(label_ids)
      tid = label_ids_to_train_ids(label_ids)
    semantics.append(sem)
    train_ids.append(tid)
    dpath = _frame_file(root, 'disparity', item.split_dir, item.city, item.seq, f, 'disparity.png')
    d = np.zeros((h, w), np.float32)
    if os.path.isfile(dpath):
      if camera['baseline'] is None:
        raise raw_io.RawDataError(
            f'camera JSON {item.camera_json}: expected a number at extrinsic.baseline to turn '
            f'{dpath} into depth'
        )
      disparity = raw_io.read_image(dpath, 'I')
      if disparity.shape != tuple(config.raw_size):
        raise raw_io.RawDataError(f'disparity {dpath} is {disparity.shape}, not {config.raw_size}')
      full = disparity_to_depth(disparity, camera['fx'], camera['baseline'])
      d = raw_io.resize_labels(full[top:bottom, left:right], h, w).astype(np.float32)
    depth.append(d)
  name = f'{item.split_dir}/{item.city}_{item.seq}'
  return {
      'image': np.stack(images),
      'intrinsics': k.astype(np.float32),
      'semantics': np.stack(semantics),
      'cityscapes_label': np.stack(train_ids),
      'has_labels': np.array(item.labelled, np.bool_),
      'depth': np.stack(depth)[..., None],
      'frame_indices': np.array(item.frames, np.int32),
      'sequence': name,
      'scene_seed': zlib.crc32(name.encode()) | (int(item.frames[1]) << 32),
  }


_PREDEFINED = {'128x416': CityscapesConfig(name='128x416', description='128x416 crops.')}


class Cityscapes(raw_io.RawBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """Cityscapes sequence triplets (manual download, see WORKSPACE.md)."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '1.1.0': '`semantics` in the 19-class project class set (datasets/class_set.py).',
  }
  BUILDER_CONFIGS = list(_PREDEFINED.values())
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  From https://www.cityscapes-dataset.com/downloads/ download leftImg8bit_sequence_trainvaltest.zip,
  camera_trainvaltest.zip, and optionally gtFine_trainvaltest.zip and disparity_trainvaltest.zip,
  and unzip them into one folder (giving leftImg8bit_sequence/, camera/, gtFine/, disparity/).
  """

  CONFIG_CLASS = CityscapesConfig
  DESCRIPTION = _DESCRIPTION
  HOMEPAGE = 'https://www.cityscapes-dataset.com/'
  # 'skipped': {'<split>: <reason>': count} of the build (tools/build_dataset.py).

  def _features(self):
    return _features(self.builder_config)

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    if not os.path.isdir(os.path.join(root, 'leftImg8bit_sequence')):
      raise raw_io.RawDataError(
          f'{os.path.join(root, "leftImg8bit_sequence")} does not exist: expected the unzipped '
          'leftImg8bit_sequence_trainvaltest.zip under manual_dir'
      )
    self.skips = raw_io.SkipCounter()
    generators = {}
    for split, split_dir in SPLIT_DIRS:
      items = plan_split(root, split, split_dir, self.builder_config, self.skips)
      if items:
        generators[split] = self._generate_examples(root, split, items)
    if not generators:
      raise raw_io.RawDataError(f'no snippet with a camera JSON was found under {root}')
    # Every skip is decided while planning (a bad file raises while generating), so the
    # counts are complete here; they are written with the dataset's info at the end.
    self.info.metadata['skipped'] = self.skips.as_dict()
    return generators

  def _generate_examples(self, root: str, split: str, items: List[_Item]):
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

    for item in tqdm.tqdm(items, desc=f'cityscapes {split}', unit='clip'):
      key = f'{item.split_dir}/{item.city}_{item.seq}_{item.frames[1]:06d}'
      yield key, make_example(root, item, self.builder_config)
