"""TFDS builder for KITTI raw video triplets (left colour camera) on the Eigen split.

Raw layout (`manual_dir`, as the KITTI raw zips unpack):

  <manual_dir>/2011_09_26/calib_cam_to_cam.txt, calib_velo_to_cam.txt
  <manual_dir>/2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000000.png
  <manual_dir>/2011_09_26/2011_09_26_drive_0001_sync/velodyne_points/data/0000000000.bin

One example is the triplet of frames (f - 1, f, f + 1) of one drive around a frame f of the
split list (image_02, resized to the config's size), with the intrinsics of rectified camera 2
(P_rect_02) scaled to that size. Splits (lists in `splits/`, from SfMLearner, MIT; see its
SOURCES.md): test is Eigen et al.'s 697 test frames; train and validation follow Zhou et al.'s
rule (SfMLearner's data preparation), applied to the drives in manual_dir: every frame of every
drive that is not one of the 28 Eigen test drives, minus the listed static frames, one frame in
ten (by a hash of drive and frame) for validation. Test examples also carry
the velodyne ground truth of frame f: at full resolution for the Eigen protocol
(`gt_depth`, zero-padded to a fixed size) and at the output size (`depth`, middle frame).

Items that cannot be made are skipped and counted (`KittiRaw.skips`, printed by
tools/build_dataset.py): a drive or frame absent from manual_dir (train and validation also
skip a frame whose neighbours are absent; test repeats the centre frame instead, so every
Eigen test frame present is evaluated). A truncated PNG, a malformed calibration file or a
truncated velodyne scan is an error naming the file.
"""

import dataclasses
import gzip
import os
from typing import Dict, List, Optional, Tuple
import zlib

import numpy as np
import tensorflow_datasets as tfds

from taskology_tf.datasets import raw_io
from taskology_tf.datasets.kitti_raw import calibration

NUM_FRAMES = 3
SPLITS_DIR = os.path.join(os.path.dirname(__file__), 'splits')
EIGEN_TEST_FILES = os.path.join(SPLITS_DIR, 'eigen_test_files.txt')
EIGEN_TEST_SCENES = os.path.join(SPLITS_DIR, 'test_scenes_eigen.txt')
STATIC_FRAMES = os.path.join(SPLITS_DIR, 'static_frames.txt.gz')
# Not files: Zhou et al.'s train / validation rule, applied to manual_dir (`zhou_split`).
ZHOU_TRAIN = 'zhou_rule:train'
ZHOU_VALIDATION = 'zhou_rule:validation'
ZHOU_RULES = (ZHOU_TRAIN, ZHOU_VALIDATION)
# One frame in ZHOU_VALIDATION_EVERY goes to validation (Zhou et al.: a random 10%).
ZHOU_VALIDATION_EVERY = 10
# Split name -> list file (`folder frame side` lines; see splits/SOURCES.md) or a Zhou rule.
DEFAULT_SPLIT_FILES = (
    ('train', ZHOU_TRAIN),
    ('validation', ZHOU_VALIDATION),
    ('test', EIGEN_TEST_FILES),
)
# Largest rectified image of the raw release (2011_09_26: 375 x 1242, 2011_09_28: 376 x 1241,
# 2011_09_29: 374 x 1238, 2011_09_30 and 2011_10_03: 370 x 1226 / 1224): full-resolution
# ground truth is zero-padded to it so every example has one shape.
DEFAULT_GT_SIZE = (376, 1242)

_DESCRIPTION = """
KITTI raw left colour (image_02) frame triplets around the frames of the Eigen split, resized,
with the intrinsics of rectified camera 2 scaled to the output size, and for the Eigen test
frames the velodyne ground-truth depth (KITTI devkit projection) at full and output resolution.
"""


@dataclasses.dataclass(eq=False)
class KittiRawConfig(tfds.core.BuilderConfig):
  """Builder config: output size and split lists.

  Attributes:
    height: output image rows.
    width: output image columns.
    split_files: ((split, list file), ...): `folder frame side` lines (side 'l' is kept:
      image_02; 'r' lines are ignored); a `.gz` file is read gunzipped. ZHOU_TRAIN or
      ZHOU_VALIDATION instead of a file: that part of Zhou et al.'s rule (`zhou_split`).
    gt_height, gt_width: the fixed size full-resolution ground truth is zero-padded to; a
      calibration whose S_rect_02 exceeds it is an error.
  """

  height: int = 128
  width: int = 416
  split_files: Tuple[Tuple[str, str], ...] = DEFAULT_SPLIT_FILES
  gt_height: int = DEFAULT_GT_SIZE[0]
  gt_width: int = DEFAULT_GT_SIZE[1]


def config_name(height: int, width: int, gt_size: Tuple[int, int] = DEFAULT_GT_SIZE) -> str:
  """Config name, e.g. '128x416' (a non-default ground-truth size is appended: '_gt26x80').

  The split lists are not part of the name: they decide which clips are built, not what a
  clip looks like, so loaders find a build by its size alone.
  """
  name = f'{int(height)}x{int(width)}'
  if tuple(gt_size) != DEFAULT_GT_SIZE:
    name += f'_gt{int(gt_size[0])}x{int(gt_size[1])}'
  return name


def make_config(
    height: int = 128,
    width: int = 416,
    split_files: Optional[Dict[str, str]] = None,
    gt_size: Tuple[int, int] = DEFAULT_GT_SIZE,
) -> KittiRawConfig:
  """The config for an output size (and, for tests, other split lists or ground-truth size).

  Raises:
    ValueError: a non-positive size, or a split list that does not exist.
  """
  if int(height) <= 0 or int(width) <= 0 or min(gt_size) <= 0:
    raise ValueError(f'image sizes must be positive, got {height}x{width}, gt {gt_size}')
  files = tuple(sorted(split_files.items())) if split_files is not None else DEFAULT_SPLIT_FILES
  for split, path in files:
    if path not in ZHOU_RULES and not os.path.isfile(path):
      raise ValueError(f'split list for {split!r} does not exist: {path}')
  return KittiRawConfig(
      name=config_name(height, width, gt_size),
      description=f'{height}x{width} frame triplets, Eigen split.',
      height=int(height),
      width=int(width),
      split_files=files,
      gt_height=int(gt_size[0]),
      gt_width=int(gt_size[1]),
  )


def read_split_file(path: str) -> List[Tuple[str, int]]:
  """(drive folder, frame index) of each left-camera line of a split list, in file order.

  Raises:
    ValueError: a line is not `folder frame [side]` (names the file and line).
  """
  opener = gzip.open if path.endswith('.gz') else open
  entries, seen = [], set()
  with opener(path, 'rt') as f:
    for line_no, line in enumerate(f, 1):
      parts = line.split()
      if not parts:
        continue
      if len(parts) not in (2, 3) or not parts[1].isdigit():
        raise ValueError(
            f'{path}:{line_no}: expected "<day>/<drive>_sync <frame> [l|r]", got {line.strip()!r}'
        )
      if len(parts) == 3 and parts[2] != 'l':
        continue  # image_03 (right camera): not used.
      entry = (parts[0], int(parts[1]))
      if entry not in seen:
        seen.add(entry)
        entries.append(entry)
  return entries


def _read_lines(path: str) -> List[str]:
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt') as f:
    return [line.strip() for line in f if line.strip()]


def zhou_split(root: str, split: str) -> List[Tuple[str, int]]:
  """(drive folder, frame) of Zhou et al.'s Eigen train or validation split within `root`.

  The rule of SfMLearner's data preparation (Zhou et al., CVPR 2017), which monodepth2's
  `eigen_zhou` lists were made with: every image_02 frame of every drive under `root` except
  the Eigen test drives (`test_scenes_eigen.txt`) and the static frames (`static_frames.txt`,
  where the car stands still). Zhou et al. drew a random 10% for validation; here a frame is
  in validation when crc32('<drive> <frame>') % 10 == 0, so the split of a frame does not
  depend on which other drives are present. Train comes shuffled (a fixed seed), validation in
  drive and frame order. Frames without both neighbours are left in (the builder skips them).

  Args:
    root: manual_dir (days of unzipped KITTI raw drives).
    split: 'train' or 'validation'.

  Returns:
    [(drive, frame)], drive as '<day>/<day>_drive_NNNN_sync'.
  """
  if split not in ('train', 'validation'):
    raise ValueError(f'zhou_split: split must be train or validation, got {split!r}')
  test_scenes = set(_read_lines(EIGEN_TEST_SCENES))
  static = set()
  for line in _read_lines(STATIC_FRAMES):
    day, drive, frame = line.split()
    static.add((f'{day}/{drive}', int(frame)))
  entries = []
  for day in sorted(os.listdir(root)):
    if not os.path.isdir(os.path.join(root, day)):
      continue
    for drive_dir in sorted(os.listdir(os.path.join(root, day))):
      image_dir = os.path.join(root, day, drive_dir, 'image_02', 'data')
      if not drive_dir.endswith('_sync') or not os.path.isdir(image_dir):
        continue
      if drive_dir[: -len('_sync')] in test_scenes:
        continue
      drive = f'{day}/{drive_dir}'
      frames = sorted(
          int(name[:-4])
          for name in os.listdir(image_dir)
          if name.endswith('.png') and name[:-4].isdigit()
      )
      for frame in frames:
        if (drive, frame) in static:
          continue
        in_validation = zlib.crc32(f'{drive} {frame:010d}'.encode()) % ZHOU_VALIDATION_EVERY == 0
        if in_validation == (split == 'validation'):
          entries.append((drive, frame))
  if split == 'train':
    order = np.random.default_rng(8964).permutation(len(entries))  # SfMLearner's seed.
    entries = [entries[i] for i in order]
  return entries


def frame_path(root: str, drive: str, frame: int) -> str:
  return os.path.join(root, drive, 'image_02', 'data', f'{frame:010d}.png')


def velodyne_path(root: str, drive: str, frame: int) -> str:
  return os.path.join(root, drive, 'velodyne_points', 'data', f'{frame:010d}.bin')


def clip_key(drive: str, frame: int) -> int:
  """A stable int64 id of a clip (the pipelines' per-example key)."""
  return zlib.crc32(f'{drive} {frame}'.encode()) | (int(frame) << 32)


def feature_spec(config: KittiRawConfig) -> dict:
  """Name -> (shape, numpy dtype) of every tensor feature."""
  t, h, w = NUM_FRAMES, config.height, config.width
  return {
      'image': ((t, h, w, 3), np.uint8),
      'intrinsics': ((3, 3), np.float32),
      'depth': ((t, h, w, 1), np.float32),
      'gt_depth': ((config.gt_height, config.gt_width), np.float32),
      'gt_size': ((2,), np.int32),
      'original_size': ((2,), np.int32),
      'frame_indices': ((t,), np.int32),
  }


def _features(config: KittiRawConfig) -> tfds.features.FeaturesDict:
  features = {}
  for name, (shape, dtype) in feature_spec(config).items():
    # Depth maps are mostly zeros (sparse velodyne, and all zeros outside the test split).
    encoding = tfds.features.Encoding.ZLIB if 'depth' in name else tfds.features.Encoding.BYTES
    features[name] = tfds.features.Tensor(shape=shape, dtype=dtype, encoding=encoding)
  features['has_gt'] = tfds.features.Scalar(dtype=np.bool_)
  features['drive'] = tfds.features.Text()
  features['scene_seed'] = tfds.features.Scalar(dtype=np.int64)
  return tfds.features.FeaturesDict(features)


@dataclasses.dataclass(frozen=True)
class _Item:
  drive: str
  frames: Tuple[int, ...]
  with_gt: bool


def plan_split(
    root: str, split: str, entries, skips: raw_io.SkipCounter, with_gt: bool
) -> List[_Item]:
  """The triplets of one split that can be built from `root`; the rest are counted in `skips`.

  Args:
    root: manual_dir.
    split: split name (for `skips`).
    entries: (drive, frame) of the split list.
    skips: where skipped items are counted.
    with_gt: test split: keep frames at a drive's ends (repeating the centre frame) and
      require the velodyne scan.
  """
  items = []
  drive_exists = {}
  for drive, frame in entries:
    if drive not in drive_exists:
      drive_exists[drive] = os.path.isdir(os.path.join(root, drive, 'image_02', 'data'))
    if not drive_exists[drive]:
      skips.skip(split, 'drive not in manual_dir', drive)
      continue
    if not os.path.isfile(frame_path(root, drive, frame)):
      skips.skip(split, 'frame image missing', frame_path(root, drive, frame))
      continue
    frames = []
    missing = False
    for f in (frame - 1, frame, frame + 1):
      if os.path.isfile(frame_path(root, drive, f)):
        frames.append(f)
      elif with_gt:
        frames.append(frame)  # Ends of a drive: the test frame is still evaluated.
      else:
        missing = True
    if missing:
      skips.skip(split, 'neighbour frame missing (start or end of a drive)', f'{drive} {frame}')
      continue
    if with_gt and not os.path.isfile(velodyne_path(root, drive, frame)):
      skips.skip(split, 'velodyne scan missing', velodyne_path(root, drive, frame))
      continue
    items.append(_Item(drive, tuple(frames), with_gt))
  return items


def make_example(root: str, item: _Item, config: KittiRawConfig, calib_cache: dict) -> dict:
  """Decodes, resizes and (for test items) projects the velodyne for one triplet.

  Raises:
    calibration.CalibrationError, raw_io.RawDataError, ValueError: a file at fault, named.
  """
  day = item.drive.split('/')[0]
  calib_dir = os.path.join(root, day)
  if calib_dir not in calib_cache:
    calib_cache[calib_dir] = calibration.load_calibration(calib_dir)
  calib = calib_cache[calib_dir]
  h, w = config.height, config.width
  images = []
  original = None
  for f in item.frames:
    path = frame_path(root, item.drive, f)
    image = raw_io.read_image(path, 'RGB')
    if image.shape[:2] != calib.image_size:
      raise raw_io.RawDataError(
          f'image {path} is {image.shape[1]}x{image.shape[0]}, but '
          f'{os.path.join(calib_dir, calibration.CAM_TO_CAM)} gives S_rect_02 = '
          f'{calib.image_size[1]}x{calib.image_size[0]}: the calibration does not describe it'
      )
    original = image.shape[:2]
    images.append(raw_io.resize_image(image, h, w))
  k = raw_io.scale_intrinsics(calib.intrinsics, w / original[1], h / original[0])
  depth = np.zeros((NUM_FRAMES, h, w, 1), np.float32)
  gt = np.zeros((config.gt_height, config.gt_width), np.float32)
  gt_size = np.zeros([2], np.int32)
  if item.with_gt:
    gh, gw = calib.image_size
    if gh > config.gt_height or gw > config.gt_width:
      raise ValueError(
          f'{calib_dir}: S_rect_02 {gw}x{gh} exceeds the ground-truth size '
          f'{config.gt_width}x{config.gt_height} of config {config.name}'
      )
    centre = item.frames[1]
    full = calibration.project_velodyne(
        calibration.read_velodyne(velodyne_path(root, item.drive, centre)), calib
    )
    gt[:gh, :gw] = full
    gt_size[:] = (gh, gw)
    depth[1, :, :, 0] = raw_io.downsample_sparse_depth(full, h, w)
  return {
      'image': np.stack(images),
      'intrinsics': k.astype(np.float32),
      'depth': depth,
      'gt_depth': gt,
      'gt_size': gt_size,
      'original_size': np.array(original, np.int32),
      'frame_indices': np.array(item.frames, np.int32),
      'has_gt': bool(item.with_gt),
      'drive': item.drive,
      'scene_seed': clip_key(item.drive, item.frames[1]),
  }


_PREDEFINED = {'128x416': KittiRawConfig(name='128x416', description='128x416, Eigen split.')}


class KittiRaw(raw_io.RawBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """KITTI raw frame triplets on the Eigen split (manual download, see WORKSPACE.md)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = list(_PREDEFINED.values())
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the KITTI raw "synced+rectified" drives and the calibration zips of each day
  (https://www.cvlibs.net/datasets/kitti/raw_data.php) and unzip them all into one folder,
  giving <manual_dir>/2011_09_26/calib_cam_to_cam.txt and
  <manual_dir>/2011_09_26/2011_09_26_drive_0001_sync/image_02/data/*.png.
  """

  CONFIG_CLASS = KittiRawConfig
  DESCRIPTION = _DESCRIPTION
  HOMEPAGE = 'https://www.cvlibs.net/datasets/kitti/raw_data.php'
  # As SyntheticWorld: a config object may share a predefined name (other split lists).
  # Build order is the split list's order (train: shuffled, see zhou_split).
  # 'skipped': {'<split>: <reason>': count} of the build (tools/build_dataset.py).

  def _features(self):
    return _features(self.builder_config)

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    if not os.path.isdir(root):
      raise raw_io.RawDataError(f'manual_dir {root} does not exist (expected the KITTI raw days)')
    self.skips = raw_io.SkipCounter()
    generators = {}
    for split, path in self.builder_config.split_files:
      entries = (
          zhou_split(root, path.split(':', 1)[1]) if path in ZHOU_RULES else read_split_file(path)
      )
      items = plan_split(root, split, entries, self.skips, with_gt=split == 'test')
      if items:
        generators[split] = self._generate_examples(root, split, items)
      else:
        self.skips.skip(split, 'split empty: no listed frame found in manual_dir')
    if not generators:
      raise raw_io.RawDataError(
          f'no frame of any split list was found under {root}; expected '
          '<day>/<day>_drive_NNNN_sync/image_02/data/*.png'
      )
    # Every skip is decided while planning (a bad file raises while generating), so the
    # counts are complete here; they are written with the dataset's info at the end.
    self.info.metadata['skipped'] = self.skips.as_dict()
    return generators

  def _generate_examples(self, root: str, split: str, items: List[_Item]):
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

    calib_cache = {}
    for item in tqdm.tqdm(items, desc=f'kitti_raw {split}', unit='clip'):
      yield f'{item.drive}/{item.frames[1]:010d}', make_example(
          root, item, self.builder_config, calib_cache
      )
