r"""Waymo builder and pillarisation speed on this machine (BENCHMARKS.md, "Waymo").

  python tools/benchmark_waymo.py [--segments=2 --frames=8 --pillar_frames=10]

1. Builds the same raw folder of generated benchmark-sized segments
   (datasets/waymo/generated.dense_segment: five lidars, both returns, 64 x 512 range images
   half full, ~164k points a frame, about a real Waymo frame's) twice, one after the other: in
   process and as an Apache Beam pipeline on the DirectRunner; prints the wall time of each,
   frames and sequences per second, their ratio, and checks the two builds hold identical
   examples.
2. Pillarises frames of the build (a compiled `geometry.pillars.pillarize`) on the tiny test
   grid (16 x 16 cells of 3 m, 64 pillars x 4 points) and the full Table 2 grid (468 x 468 of
   0.32 m, 32000 pillars x 20 points): frames per second after one warm-up frame.
"""

import os
import shutil
import sys
import tempfile
import time

from absl import flags

import taskology_tf_tools

_SEGMENTS = flags.DEFINE_integer('segments', 2, 'Training segments of the generated raw folder.')
_FRAMES = flags.DEFINE_integer('frames', 8, 'Frames per segment (10 Hz).')
_PILLAR_FRAMES = flags.DEFINE_integer('pillar_frames', 10, 'Frames timed per grid.')
_WORK_DIR = flags.DEFINE_string('work_dir', None, 'Scratch folder (default: a temporary one).')

# Sequences of 3 frames 0.2 s apart (frames i, i - 2, i - 4): 8-frame segments give 4 each.
CONFIG = dict(num_frames=3, time_step=0.2, max_boxes=16)


def _build(raw, data_dir, use_beam):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets.waymo import builder  # pylint: disable=g-import-not-at-top

  kwargs = dict(manual_dir=raw)
  if use_beam:
    from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top

    kwargs.update(beam_runner='DirectRunner', beam_options=pipeline_options.PipelineOptions([]))
  b = builder.Waymo(config=builder.make_config(**CONFIG), data_dir=data_dir, use_beam=use_beam)
  start = time.perf_counter()
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(**kwargs))
  return b, time.perf_counter() - start


def _identical(a, b) -> bool:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  for x, y in zip(
      tfds.as_numpy(a.as_dataset(split='train')), tfds.as_numpy(b.as_dataset(split='train'))
  ):
    if sorted(x) != sorted(y) or any(not np.array_equal(x[k], y[k]) for k in x):
      return False
  return a.info.splits['train'].num_examples == b.info.splits['train'].num_examples


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets.waymo import generated  # pylint: disable=g-import-not-at-top
  from taskology_tf.geometry import pillars  # pylint: disable=g-import-not-at-top

  work = _WORK_DIR.value or tempfile.mkdtemp(prefix='benchmark_waymo_')
  raw = os.path.join(work, 'raw')
  os.makedirs(os.path.join(raw, 'training'), exist_ok=True)
  for s in range(_SEGMENTS.value):
    frames = generated.dense_segment(f'bench_{s}', _FRAMES.value, seed=s)
    generated.write_segment(
        os.path.join(raw, 'training', f'segment-bench_{s}_with_camera_labels.tfrecord'), frames
    )
  num_frames = _SEGMENTS.value * _FRAMES.value
  results = {}
  for name, use_beam in (('in process', False), ('Beam DirectRunner', True)):
    out = os.path.join(work, 'beam' if use_beam else 'local')
    shutil.rmtree(out, ignore_errors=True)
    results[name] = _build(raw, out, use_beam)
  print(f'Waymo builder, {_SEGMENTS.value} segments x {_FRAMES.value} frames '
        f'(~164k points a frame), sequences of {CONFIG["num_frames"]} frames:')  # fmt: skip
  for name, (b, seconds) in results.items():
    n = b.info.splits['train'].num_examples
    print(f'  {name:18s} {seconds:7.1f} s  {num_frames / seconds:6.2f} frames/s  '
          f'{n / seconds:6.2f} sequences/s  ({n} sequences)')  # fmt: skip
  ratio = results['Beam DirectRunner'][1] / results['in process'][1]
  same = _identical(results['in process'][0], results['Beam DirectRunner'][0])
  print(f'  Beam / in process wall time: {ratio:.2f}; identical examples: {same}')

  local = results['in process'][0]
  clouds = []
  for ex in local.as_dataset(split='train').take(_PILLAR_FRAMES.value + 1):
    clouds.append((ex['points'][0], ex['points_valid'][0]))
  grids = {
      'tiny 16 x 16 (3 m, 64 x 4)': pillars.PillarGrid(
          rows=16, cols=16, cell_size=3.0, x_min=-24.0, y_min=-24.0, z_min=-3.0, z_max=5.0,
          max_pillars=64, max_points=4,
      ),
      'full 468 x 468 (0.32 m, 32000 x 20)': pillars.PillarGrid(max_pillars=32000, max_points=20),
  }  # fmt: skip
  print(f'Pillarisation (compiled, one frame at a time, {len(clouds) - 1} frames of '
        f'~{int(clouds[0][1].numpy().sum())} points):')  # fmt: skip
  for name, grid in grids.items():
    fn = tf.function(
        lambda p, v, g=grid: pillars.pillarize(p, v, g),
        input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.bool)],
    )
    fn(*clouds[0])  # trace + warm-up
    start = time.perf_counter()
    for p, v in clouds[1:]:
      out = fn(p, v)
      out['pillar_mask'].numpy()
    seconds = time.perf_counter() - start
    print(f'  {name:38s} {len(clouds[1:]) / seconds:7.1f} frames/s')
  if not _WORK_DIR.value:
    shutil.rmtree(work, ignore_errors=True)
  return 0 if same else 1


def run():
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
