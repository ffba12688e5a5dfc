"""TFDS builder for Waymo Open Dataset lidar sequences (Table 2), in process or as a Beam pipeline.

Raw layout (`manual_dir`, the perception dataset's v1 segment files as downloaded; a gs://
path works, read through tf.io.gfile):

  <manual_dir>/training/segment-*_with_camera_labels.tfrecord    -> split 'train'
  <manual_dir>/validation/segment-*_with_camera_labels.tfrecord  -> split 'validation'

One example per frame that has its n_f - 1 earlier frames `time_step` apart in its segment
(reader.segment_sequences): the n_f frames' points moved into the current vehicle frame, the
vehicle boxes with per-sequence track ids, point counts and difficulty levels (features below,
the sequence format of inputs/point_clouds.py plus the poses and timestamps).

Two ways to run the same per-segment function (`segment_examples`), giving identical examples
(tests/datasets/test_waymo_builder.py):

- in process (`Waymo(..., beam_runner=None)`): a Python generator over the segment files;
- as an Apache Beam pipeline (`tfds.download.DownloadConfig(beam_runner=..., beam_options=...)`
  with `Waymo(..., use_beam=True)`): `Create(files) | Reshuffle | FlatMap(segment_examples)`,
  one segment per element, so the full dataset (~1,000 segments) builds on Dataflow, Flink or
  Spark workers (tools/build_dataset.py --beam_runner / --beam_options).

Drops are counted per split and reason: frames without range images, frames without their
earlier frames (each segment's first (n_f - 1) * time_step seconds), boxes beyond max_boxes.
In process they are counted directly; under Beam they are Beam counters (namespace 'waymo'),
read back from the pipeline result. Either way they land in the build's metadata ('skipped')
and tools/build_dataset.py prints them. A truncated or corrupt segment file fails the build,
naming the file (TFDS leaves nothing prepared: it renames its `incomplete.*` directory only
when complete).
"""

import dataclasses
import functools
import os
from typing import Dict, Iterator, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from taskology_tf.datasets import raw_io
from taskology_tf.datasets.waymo import reader

SPLIT_FOLDERS = (('train', 'training'), ('validation', 'validation'))
BEAM_NAMESPACE = 'waymo'

_DESCRIPTION = """
Waymo Open Dataset (perception v1) lidar sequences: for each frame, the points of all five
lidars and both returns of it and of its n_f - 1 predecessors (time_step apart), in the
current frame's vehicle coordinates, with the vehicle boxes, track ids, lidar point counts and
the official LEVEL_1 / LEVEL_2 difficulty.
"""


@dataclasses.dataclass(eq=False)
class WaymoConfig(tfds.core.BuilderConfig):
  """Builder config: how sequences are cut (reader.SequenceConfig)."""

  num_frames: int = 3
  time_step: float = 0.5
  max_boxes: int = 200

  def sequence_config(self) -> reader.SequenceConfig:
    return reader.SequenceConfig(
        num_frames=self.num_frames, time_step=self.time_step, max_boxes=self.max_boxes
    )


def config_name(num_frames: int = 3, time_step: float = 0.5, max_boxes: int = 200) -> str:
  """'nf3_dt500ms' (a non-default max_boxes is appended: '_k16')."""
  name = f'nf{int(num_frames)}_dt{int(round(time_step * 1000))}ms'
  return name if max_boxes == 200 else f'{name}_k{int(max_boxes)}'


def make_config(num_frames: int = 3, time_step: float = 0.5, max_boxes: int = 200) -> WaymoConfig:
  if num_frames < 1 or time_step <= 0 or max_boxes < 1:
    raise ValueError(
        f'Waymo config needs num_frames >= 1, time_step > 0, max_boxes >= 1; got '
        f'{num_frames}, {time_step}, {max_boxes}'
    )
  return WaymoConfig(
      name=config_name(num_frames, time_step, max_boxes),
      description=f'{num_frames} frames {time_step} s apart, up to {max_boxes} vehicles.',
      num_frames=int(num_frames),
      time_step=float(time_step),
      max_boxes=int(max_boxes),
  )


def _features(config: WaymoConfig) -> tfds.features.FeaturesDict:
  f, k = config.num_frames, config.max_boxes
  t = lambda shape, dtype, enc=tfds.features.Encoding.BYTES: tfds.features.Tensor(
      shape=shape, dtype=dtype, encoding=enc
  )
  return tfds.features.FeaturesDict(
      {
          # [n_f, L, 4] (x, y, z current vehicle frame, raw intensity); L varies per example.
          'points': t((f, None, 4), np.float32),
          'points_valid': t((f, None), np.bool_, tfds.features.Encoding.ZLIB),
          'gt_boxes': t((f, k, 7), np.float32),
          'gt_valid': t((f, k), np.bool_),
          'gt_track_ids': t((f, k), np.int32),
          'gt_num_points': t((f, k), np.int32),
          'gt_difficulty': t((f, k), np.int32),
          'current_from_frame': t((f, 4, 4), np.float32),
          'timestamp_micros': t((f,), np.int64),
          'scene_seed': tfds.features.Scalar(dtype=np.int64),
          'segment': tfds.features.Text(),
      }
  )


# Example keys: file index * KEY_STRIDE + sequence index within the segment. Integers, because
# TFDS's Beam writer orders (and shards) examples by an integer key when shuffling is disabled;
# the same keys in process give the same order.
KEY_STRIDE = 1 << 20


def segment_examples(
    index: int, path: str, config: reader.SequenceConfig, drop
) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
  """(key, example) of every sequence of the `index`-th segment file; drops go to drop(reason, n)."""
  segment = os.path.basename(path)
  for i, (_, seq) in enumerate(reader.segment_sequences(path, config, drop)):
    yield index * KEY_STRIDE + i, {**seq, 'segment': segment}


def _beam_segment_examples(item: Tuple[int, str], split: str, config: reader.SequenceConfig):
  """segment_examples on a Beam worker: drops become Beam counters '<split>: <reason>'."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top

  def drop(reason, n=1):
    beam.metrics.Metrics.counter(BEAM_NAMESPACE, f'{split}: {reason}').inc(n)

  yield from segment_examples(item[0], item[1], config, drop)


def segment_files(root: str) -> Dict[str, list]:
  """{split: sorted segment files} of the split folders present under root."""
  out = {}
  for split, folder in SPLIT_FOLDERS:
    files = sorted(tf.io.gfile.glob(os.path.join(root, folder, '*.tfrecord')))
    if files:
      out[split] = files
  return out


class Waymo(raw_io.RawBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """Waymo lidar sequences (manual download, see WORKSPACE.md).

  Args (besides TFDS's):
    use_beam: generate with an Apache Beam pipeline (the runner and options come from the
      DownloadConfig) instead of in process.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [make_config()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the Waymo Open Dataset perception v1 segment files (individual_files/training/*.tfrecord
  and individual_files/validation/*.tfrecord, https://waymo.com/open/download/) into
  <manual_dir>/training/ and <manual_dir>/validation/ (a gs:// folder works too).
  """

  CONFIG_CLASS = WaymoConfig
  DESCRIPTION = _DESCRIPTION
  HOMEPAGE = 'https://waymo.com/open/'
  # 'skipped': {'<split>: <reason>': count} (tools/build_dataset.py prints it).
  # Segment file order, frames in time order: the same order in process and under Beam.

  def __init__(self, *args, use_beam: bool = False, **kwargs):
    super().__init__(*args, **kwargs)
    self.use_beam = use_beam

  def _features(self):
    return _features(self.builder_config)

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    files = segment_files(root)
    if not files:
      raise raw_io.RawDataError(
          f'no Waymo segment files under {root}: expected '
          + ' and '.join(f'{root}/{folder}/*.tfrecord' for _, folder in SPLIT_FOLDERS)
      )
    self.skips = raw_io.SkipCounter()
    self.info.metadata['skipped'] = {}
    return {split: self._generate_examples(split, paths) for split, paths in files.items()}

  def _generate_examples(self, split: str, paths):
    config = self.builder_config.sequence_config()
    if self.use_beam:
      import apache_beam as beam  # pylint: disable=g-import-not-at-top

      return (
          beam.Create(list(enumerate(paths)))
          # One segment per element, spread over the workers.
          | beam.Reshuffle()
          | beam.FlatMap(functools.partial(_beam_segment_examples, split=split, config=config))
      )
    return self._generate_in_process(split, paths, config)

  def _generate_in_process(self, split, paths, config):
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

    def drop(reason, n=1):
      for _ in range(n):
        self.skips.skip(split, reason)

    for index, path in enumerate(tqdm.tqdm(paths, desc=f'waymo {split}', unit='segment')):
      yield from segment_examples(index, path, config, drop)
    # Written with the dataset's info once every split has been generated.
    self.info.metadata['skipped'] = self.skips.as_dict()

  def _process_pipeline_result(self, pipeline_result) -> None:
    from apache_beam.metrics import metric  # pylint: disable=g-import-not-at-top

    counters = pipeline_result.metrics().query(
        metric.MetricsFilter().with_namespace(BEAM_NAMESPACE)
    )['counters']
    skipped = {}
    for c in counters:
      value = c.committed if c.committed is not None else c.attempted
      skipped[c.key.metric.name] = skipped.get(c.key.metric.name, 0) + int(value)
    self.info.metadata['skipped'] = dict(sorted(skipped.items()))


def load_waymo(
    split: str,
    data_dir: str,
    num_frames: int = 3,
    time_step: float = 0.5,
    max_boxes: int = 200,
    input_context=None,
) -> tf.data.Dataset:
  """A built split (this input pipeline's even share of it), features as `_features`.

  Raises:
    FileNotFoundError: not built; names the directory and the build command.
  """
  builder = Waymo(config=make_config(num_frames, time_step, max_boxes), data_dir=data_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(
        f'waymo {builder.builder_config.name!r} is not built: no prepared dataset in '
        f'{os.fspath(builder.data_path)}. Build it (from the repository root) with:\n  python '
        f'tools/build_dataset.py --dataset=waymo --manual_dir=RAW_WAYMO --data_dir={data_dir} '
        f'--num_frames={num_frames} --time_step={time_step} [--beam_runner=DirectRunner]'
    )
  if input_context is not None and input_context.num_input_pipelines > 1:
    split = tfds.even_splits(split, input_context.num_input_pipelines)[
        input_context.input_pipeline_id
    ]
  return builder.as_dataset(split=split, shuffle_files=False)
