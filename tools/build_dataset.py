r"""Builds a dataset into a TFDS data directory.

Usage (from the repository root):

  python tools/build_dataset.py --dataset=synthetic_world --domain=real \
      --height=64 --width=96 --data_dir=./data/tensorflow_datasets

An existing build of the same config is kept unless --overwrite is given;
a build whose split sizes differ from the requested ones is an error, so a
stale dataset is never silently reused.

The video datasets are built from their raw downloads (see WORKSPACE.md, "Datasets"):

  python tools/build_dataset.py --dataset=kitti_raw --manual_dir=RAW_KITTI \
      --data_dir=./data/tensorflow_datasets [--height=128 --width=416]
  python tools/build_dataset.py --dataset=cityscapes --manual_dir=RAW_CITYSCAPES \
      --data_dir=./data/tensorflow_datasets
  python tools/build_dataset.py --dataset=coco_panoptic --manual_dir=RAW_COCO \
      --data_dir=./data/tensorflow_datasets [--height=128 --width=416 --resize_mode=crop]
  python tools/build_dataset.py --dataset=scannet --manual_dir=RAW_SCANNET \
      --data_dir=./data/tensorflow_datasets [--height=240 --width=320 --frame_stride=10 \
      --clip_stride=30]
  python tools/build_dataset.py --dataset=scenenet --manual_dir=RAW_SCENENET \
      --data_dir=./data/tensorflow_datasets [--height=240 --width=320 --view_stride=1 \
      --view_clip_stride=3 --test_every=20]

with a progress bar per split and a summary at the end (examples per split, items skipped
and why). TFDS writes a build into an `incomplete.*` directory and renames it when complete,
so a failed or interrupted build is never read as a dataset.

Waymo lidar sequences (WORKSPACE.md, "Waymo"), in process or as an Apache Beam pipeline on any
Beam runner (the same examples either way):

  python tools/build_dataset.py --dataset=waymo --manual_dir=RAW_WAYMO \
      --data_dir=./data/tensorflow_datasets [--num_frames=3 --time_step=0.5] \
      [--beam_runner=DirectRunner | --beam_options='--runner=DataflowRunner --project=P ...']
"""

import sys
import time

from absl import app
from absl import flags
from absl import logging

import taskology_tf_tools

# Make `python tools/build_dataset.py` work from the repository root without
# installing the package.

KNOWN_DATASETS = (
    'synthetic_world',
    'kitti_raw',
    'cityscapes',
    'coco_panoptic',
    'waymo',
    'scannet',
    'scenenet',
)
# Raw datasets built from --manual_dir; default output size 128x416 (Gordon et al.).
VIDEO_DATASETS = ('kitti_raw', 'cityscapes', 'coco_panoptic', 'scannet', 'scenenet')
VIDEO_DEFAULT_SIZE = (128, 416)
# Other default output sizes (Table 3's indoor datasets: 240x320).
DEFAULT_SIZES = {'scannet': (240, 320), 'scenenet': (240, 320)}

_DATASET = flags.DEFINE_string(
    'dataset', 'synthetic_world', f'Dataset to build; one of {KNOWN_DATASETS}.'
)
_DOMAIN = flags.DEFINE_enum(
    'domain', 'real', ['sim', 'real', 'both'], 'Appearance domain(s) to build.'
)
_HEIGHT = flags.DEFINE_integer('height', 64, 'Image rows.')
_WIDTH = flags.DEFINE_integer('width', 96, 'Image columns.')
_NUM_TRAIN = flags.DEFINE_integer('num_train', None, 'Train examples (default: per-size default).')
_NUM_VALIDATION = flags.DEFINE_integer(
    'num_validation', None, 'Validation examples (default: per-size default).'
)
_NUM_TEST = flags.DEFINE_integer('num_test', None, 'Test examples (default: per-size default).')
_SEED = flags.DEFINE_integer('seed', 0, 'Base seed of all example seeds.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', './data/tensorflow_datasets', 'TFDS data directory to build into.'
)
_MANUAL_DIR = flags.DEFINE_string(
    'manual_dir', None, 'Raw download folder (kitti_raw, cityscapes): see WORKSPACE.md.'
)
_FRAME_STEP = flags.DEFINE_integer(
    'frame_step', 1, "cityscapes: frames between a triplet's frames (struct2depth used 2)."
)
_CENTRE_STRIDE = flags.DEFINE_integer(
    'centre_stride', 2, 'cityscapes: frames between the centres of successive triplets.'
)
_FRAME_STRIDE = flags.DEFINE_integer(
    'frame_stride', 10, "scannet: frames between a triplet's frames (30 fps scans)."
)
_CLIP_STRIDE = flags.DEFINE_integer(
    'clip_stride', 30, 'scannet: frames between the first frames of successive triplets.'
)
_VIEW_STRIDE = flags.DEFINE_integer(
    'view_stride', 1, "scenenet: views between a triplet's frames (1 view = 25 render frames)."
)
_VIEW_CLIP_STRIDE = flags.DEFINE_integer(
    'view_clip_stride', 3, 'scenenet: views between the first frames of successive triplets.'
)
_TEST_EVERY = flags.DEFINE_integer(
    'test_every', 20, 'scenenet: 1 train trajectory in N (by hash) is held out as test; 0: none.'
)
_RESIZE_MODE = flags.DEFINE_enum(
    'resize_mode',
    'crop',
    ['crop', 'stretch'],
    'coco_panoptic: crop (centred window of the output aspect, then resize) or stretch.',
)
_NUM_FRAMES = flags.DEFINE_integer('num_frames', 3, 'waymo: frames per sequence (n_f).')
_TIME_STEP = flags.DEFINE_float('time_step', 0.5, "waymo: seconds between a sequence's frames.")
_MAX_BOXES = flags.DEFINE_integer('max_boxes', 200, 'waymo: vehicles kept per frame (nearest).')
_BEAM_RUNNER = flags.DEFINE_string(
    'beam_runner',
    None,
    'waymo: build with an Apache Beam pipeline on this runner (DirectRunner, DataflowRunner, '
    'FlinkRunner, SparkRunner, ...); unset (and no --beam_options): in process.',
)
_BEAM_OPTIONS = flags.DEFINE_string(
    'beam_options',
    None,
    "waymo: Beam pipeline options, e.g. '--runner=DataflowRunner --project=P --region=R "
    "--temp_location=gs://B/tmp' (implies a Beam build).",
)
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Rebuild even if the config is already built.')


def build_synthetic_world(
    domain: str,
    height: int,
    width: int,
    num_train,
    num_validation,
    num_test,
    seed: int,
    data_dir: str,
    overwrite: bool = False,
):
  """Builds one synthetic-world config; returns the prepared builder.

  Args:
    domain: 'sim' or 'real'.
    height, width: image size.
    num_train, num_validation, num_test: split sizes (None: the default for
      this image size).
    seed: base seed.
    data_dir: TFDS data directory.
    overwrite: rebuild even if already built.

  Raises:
    ValueError: an existing build has other split sizes or another seed and
      `overwrite` is False.
  """
  import tensorflow_datasets as tfds

  from taskology_tf.datasets.synthetic_world import builder as sw_builder

  config = sw_builder.make_config(domain, height, width, num_train, num_validation, num_test, seed)
  ds_builder = sw_builder.SyntheticWorld(config=config, data_dir=data_dir)
  wanted = {k: v for k, v in config.split_sizes.items() if v > 0}
  mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
  if ds_builder.is_prepared():
    have = {k: v.num_examples for k, v in ds_builder.info.splits.items()}
    have_seed = ds_builder.info.metadata.get('seed')
    if overwrite:
      mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD
      # The info of the existing build was read back; start from this request.
      ds_builder = sw_builder.SyntheticWorld(config=config, data_dir=data_dir)
    elif have != wanted or have_seed != seed:
      raise ValueError(
          f'{ds_builder.data_path} already holds splits {have} with seed '
          f'{have_seed}, not the requested {wanted} with seed {seed}; pass '
          '--overwrite to rebuild.'
      )
    else:
      logging.info('%s already built at %s; nothing to do.', config.name, ds_builder.data_path)
      return ds_builder
  total = sum(wanted.values())
  logging.info(
      'Building %s (%s examples, seed %d) into %s', config.name, wanted, seed, ds_builder.data_path
  )
  start = time.time()
  # TFDS shows a progress bar per split.
  ds_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(download_mode=mode))
  seconds = time.time() - start
  logging.info(
      'Built %s: %d examples in %.1f s (%.1f examples/s).',
      config.name,
      total,
      seconds,
      total / max(seconds, 1e-9),
  )
  return ds_builder


def build_video_dataset(
    dataset: str,
    manual_dir: str,
    height: int,
    width: int,
    data_dir: str,
    overwrite: bool = False,
    frame_step: int = 1,
    centre_stride: int = 2,
    resize_mode: str = 'crop',
    frame_stride: int = 10,
    clip_stride: int = 30,
    view_stride: int = 1,
    view_clip_stride: int = 3,
    test_every: int = 20,
):
  """Builds KITTI raw, Cityscapes, COCO panoptic, ScanNet or SceneNet RGB-D from a raw download.

  Returns (builder, summary lines).

  Args:
    dataset: 'kitti_raw', 'cityscapes' or 'coco_panoptic'.
    manual_dir: the raw download (layouts in each builder's module docstring).
    height, width: output size.
    data_dir: TFDS data directory.
    overwrite: rebuild even if already built.
    frame_step, centre_stride: Cityscapes triplet sampling (see CityscapesConfig).
    resize_mode: COCO panoptic resizing ('crop' or 'stretch', see CocoPanopticConfig).
    frame_stride, clip_stride: ScanNet triplet sampling (see ScanNetConfig).
    view_stride, view_clip_stride, test_every: SceneNet RGB-D sampling (see SceneNetConfig).

  Raises:
    FileNotFoundError: manual_dir does not exist.
    ValueError (RawDataError, CalibrationError): a raw file at fault, named.
  """
  import os  # pylint: disable=g-import-not-at-top

  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if not manual_dir or not os.path.isdir(manual_dir):
    raise FileNotFoundError(f'--manual_dir={manual_dir!r} is not a directory (the raw download)')
  if dataset == 'kitti_raw':
    from taskology_tf.datasets.kitti_raw import builder as lib  # pylint: disable=g-import-not-at-top

    ds_builder = lib.KittiRaw(config=lib.make_config(height, width), data_dir=data_dir)
  elif dataset == 'coco_panoptic':
    from taskology_tf.datasets.coco_panoptic import builder as lib  # pylint: disable=g-import-not-at-top

    config = lib.make_config(height, width, resize_mode)
    ds_builder = lib.CocoPanoptic(config=config, data_dir=data_dir)
  elif dataset == 'scenenet':
    from taskology_tf.datasets.scenenet import builder as lib  # pylint: disable=g-import-not-at-top

    config = lib.make_config(height, width, view_stride, view_clip_stride, test_every)
    ds_builder = lib.SceneNet(config=config, data_dir=data_dir)
  elif dataset == 'scannet':
    from taskology_tf.datasets.scannet import builder as lib  # pylint: disable=g-import-not-at-top

    config = lib.make_config(height, width, frame_stride, clip_stride)
    ds_builder = lib.ScanNet(config=config, data_dir=data_dir)
  else:
    from taskology_tf.datasets.cityscapes import builder as lib  # pylint: disable=g-import-not-at-top

    config = lib.make_config(height, width, frame_step, centre_stride)
    ds_builder = lib.Cityscapes(config=config, data_dir=data_dir)
  mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
  reused = ds_builder.is_prepared() and not overwrite
  if ds_builder.is_prepared() and overwrite:
    mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD
  start = time.time()
  if not reused:
    logging.info('Building %s %s from %s into %s', dataset, ds_builder.builder_config.name,
                 manual_dir, ds_builder.data_path)  # fmt: skip
    ds_builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, download_mode=mode)
    )
  seconds = time.time() - start
  info = ds_builder.info
  lines = [
      f'{dataset} {ds_builder.builder_config.name}: {ds_builder.data_path}'
      + (' (already built; --overwrite rebuilds)' if reused else f' (built in {seconds:.1f} s)')
  ]
  for split, split_info in sorted(info.splits.items()):
    lines.append(f'  {split}: {split_info.num_examples} examples')
  skipped = dict(info.metadata.get('skipped', {})) if info.metadata is not None else {}
  if skipped:
    lines.append(f'  skipped {sum(skipped.values())} items:')
    lines.extend(f'    {reason}: {n}' for reason, n in sorted(skipped.items()))
  else:
    lines.append('  skipped: none')
  class_pixels = dict(info.metadata.get('class_pixels', {})) if info.metadata is not None else {}
  for split, pixels in sorted(class_pixels.items()):
    total = max(sum(pixels.values()), 1)
    shares = ', '.join(f'{name} {n / total:.1%}' for name, n in pixels.items())
    lines.append(f'  {split} pixels: {shares}')
  return ds_builder, lines


def build_waymo(
    manual_dir: str,
    data_dir: str,
    num_frames: int = 3,
    time_step: float = 0.5,
    max_boxes: int = 200,
    beam_runner=None,
    beam_options=None,
    overwrite: bool = False,
):
  """Builds Waymo lidar sequences; returns (builder, summary lines).

  Args:
    manual_dir: the raw download (training/ and validation/ segment files; gs:// works).
    data_dir: TFDS data directory.
    num_frames, time_step, max_boxes: the sequence config.
    beam_runner: a Beam runner name; with it or `beam_options`, a Beam pipeline builds it.
    beam_options: Beam pipeline options as a command-line string.
    overwrite: rebuild even if already built.
  """
  import shlex  # pylint: disable=g-import-not-at-top

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets.waymo import builder as lib  # pylint: disable=g-import-not-at-top

  if not manual_dir or not tf.io.gfile.isdir(manual_dir):
    raise FileNotFoundError(f'--manual_dir={manual_dir!r} is not a directory (the raw download)')
  use_beam = bool(beam_runner or beam_options)
  config = lib.make_config(num_frames, time_step, max_boxes)
  ds_builder = lib.Waymo(config=config, data_dir=data_dir, use_beam=use_beam)
  kwargs = dict(manual_dir=manual_dir)
  if use_beam:
    from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top

    kwargs['beam_runner'] = beam_runner
    kwargs['beam_options'] = pipeline_options.PipelineOptions(shlex.split(beam_options or ''))
  mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
  reused = ds_builder.is_prepared() and not overwrite
  if ds_builder.is_prepared() and overwrite:
    mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD
  start = time.time()
  if not reused:
    how = f'Beam ({beam_runner or "runner from --beam_options"})' if use_beam else 'in process'
    logging.info('Building waymo %s from %s into %s, %s', config.name, manual_dir,
                 ds_builder.data_path, how)  # fmt: skip
    ds_builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(download_mode=mode, **kwargs)
    )
  seconds = time.time() - start
  info = ds_builder.info
  lines = [
      f'waymo {config.name}: {ds_builder.data_path}'
      + (' (already built; --overwrite rebuilds)' if reused else f' (built in {seconds:.1f} s)')
  ]
  for split, split_info in sorted(info.splits.items()):
    lines.append(f'  {split}: {split_info.num_examples} sequences')
  skipped = dict(info.metadata.get('skipped', {})) if info.metadata is not None else {}
  lines.append(f'  dropped {sum(skipped.values())}:' if skipped else '  dropped: none')
  lines.extend(f'    {reason}: {n}' for reason, n in sorted(skipped.items()))
  return ds_builder, lines


def _run_raw_build(build) -> int:
  """Runs a raw-data build (returning (builder, summary lines)); prints its summary, or one error
  line naming what is wrong (the builders name the file) and exit code 2."""
  try:
    _, lines = build()
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print('\n'.join(lines))
  return 0


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _DATASET.value not in KNOWN_DATASETS:
    raise app.UsageError(
        f'Unknown --dataset={_DATASET.value!r}; known ' f'datasets: {", ".join(KNOWN_DATASETS)}.'
    )
  if _DATASET.value == 'waymo':
    return _run_raw_build(
        lambda: build_waymo(
            _MANUAL_DIR.value,
            _DATA_DIR.value,
            _NUM_FRAMES.value,
            _TIME_STEP.value,
            _MAX_BOXES.value,
            _BEAM_RUNNER.value,
            _BEAM_OPTIONS.value,
            _OVERWRITE.value,
        )
    )
  if _DATASET.value in VIDEO_DATASETS:
    default_size = DEFAULT_SIZES.get(_DATASET.value, VIDEO_DEFAULT_SIZE)
    height = _HEIGHT.value if flags.FLAGS['height'].present else default_size[0]
    width = _WIDTH.value if flags.FLAGS['width'].present else default_size[1]
    return _run_raw_build(
        lambda: build_video_dataset(
            _DATASET.value,
            _MANUAL_DIR.value,
            height,
            width,
            _DATA_DIR.value,
            _OVERWRITE.value,
            _FRAME_STEP.value,
            _CENTRE_STRIDE.value,
            _RESIZE_MODE.value,
            _FRAME_STRIDE.value,
            _CLIP_STRIDE.value,
            _VIEW_STRIDE.value,
            _VIEW_CLIP_STRIDE.value,
            _TEST_EVERY.value,
        )
    )
  domains = ('sim', 'real') if _DOMAIN.value == 'both' else (_DOMAIN.value,)
  for domain in domains:
    built = build_synthetic_world(
        domain,
        _HEIGHT.value,
        _WIDTH.value,
        _NUM_TRAIN.value,
        _NUM_VALIDATION.value,
        _NUM_TEST.value,
        _SEED.value,
        _DATA_DIR.value,
        _OVERWRITE.value,
    )
    print(f'{built.builder_config.name}: {built.data_path}')


def run():
  """Console-script entry point."""
  logging.set_verbosity(logging.INFO)
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
