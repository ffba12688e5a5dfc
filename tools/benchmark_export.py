r"""Benchmarks snapshot export: a persistent SnapshotWriter vs re-tracing exports.

  python tools/benchmark_export.py --output=runs/bench_export.json   # BENCHMARKS.md (Export)

A distributed trainer exports its network every `DistributedConfig.export_every` steps, so the
cost of one export is training time lost (and, with the server's load time, peer staleness). Three
ways of writing the same depth U-Net snapshot are timed, interleaved round by round so they see
the same machine load:

  writer        one SnapshotWriter kept across exports (what SnapshotExporter does): the
                signature is traced once; each export assigns the version and saves.
  one_off       export_snapshot() per export: a fresh writer, so the signature is re-traced.
  keras_object  the Keras model object itself attached to the SavedModel root with a fresh
                signature per export: tf.saved_model.save then also traces every layer's call
                functions (how snapshots were written before SnapshotWriter).

Then the load time of each kind of snapshot (`tf.saved_model.load`, what the model server does
on every new version), interleaved the same way. Reported: medians and their ratios to `writer`.
"""

import os
import statistics
import tempfile
import time

from absl import flags
import tensorflow as tf

from taskology_tf import files
from taskology_tf.serving import export as export_lib
from taskology_tf.tasks.depth import DepthTask
import taskology_tf_tools  # noqa: F401  (quiet TF start-up)

flags.DEFINE_integer('height', 48, 'Image height (the synthetic Table 3 experiment: 48).')
flags.DEFINE_integer('width', 64, 'Image width (the synthetic Table 3 experiment: 64).')
flags.DEFINE_integer('base_filters', 8, 'U-Net base filters (Table 3 experiment: 8).')
flags.DEFINE_integer('rounds', 5, 'Timed exports (and loads) per method.')
flags.DEFINE_string('output', None, 'Optional JSON file for the results.')
FLAGS = flags.FLAGS

METHODS = ('writer', 'one_off', 'keras_object')


def _keras_object_export(model, serving_fn, path, version):
  """The pre-SnapshotWriter way: the Keras object on the root, a fresh traced signature."""
  root = tf.Module()
  root.model = model
  version_value = tf.constant(version, tf.int64)

  @tf.function(input_signature=serving_fn.input_signature)
  def serve(image):
    outputs = dict(serving_fn(image))
    outputs[export_lib.SNAPSHOT_VERSION_KEY] = version_value
    return outputs

  root.serve = serve
  tf.saved_model.save(root, path, signatures={'serving_default': serve.get_concrete_function()})


def main(argv):
  del argv
  task = DepthTask(
      height=FLAGS.height, width=FLAGS.width, base_filters=FLAGS.base_filters, levels=4
  )
  model = task.build_network()
  serving_fn = task.serving_function(model)
  root = tempfile.mkdtemp(prefix='bench_export_')
  writer = export_lib.SnapshotWriter(model, serving_fn, root, 'writer', keep_last=None)
  writer.write(0)  # The writer's one trace happens here, outside the timed rounds.

  export_times = {m: [] for m in METHODS}
  paths = {m: [] for m in METHODS}
  for r in range(1, FLAGS.rounds + 1):
    for method in METHODS:
      start = time.perf_counter()
      if method == 'writer':
        path = writer.write(r)
      elif method == 'one_off':
        path = export_lib.export_snapshot(model, serving_fn, root, 'one_off', r, keep_last=None)
      else:
        path = os.path.join(root, 'keras_object', str(r))
        _keras_object_export(model, serving_fn, path, r)
      export_times[method].append(time.perf_counter() - start)
      paths[method].append(path)
    print(
        f'round {r}/{FLAGS.rounds}: '
        + '  '.join(f'{m} {export_times[m][-1]:.2f}s' for m in METHODS),
        flush=True,
    )

  load_times = {m: [] for m in METHODS}
  for r in range(FLAGS.rounds):
    for method in METHODS:
      start = time.perf_counter()
      tf.saved_model.load(paths[method][r])
      load_times[method].append(time.perf_counter() - start)

  results = {
      'config': {
          'height': FLAGS.height,
          'width': FLAGS.width,
          'base_filters': FLAGS.base_filters,
          'rounds': FLAGS.rounds,
          'parameters': int(sum(v.shape.num_elements() for v in model.variables)),
      },
      'export_seconds_median': {m: statistics.median(v) for m, v in export_times.items()},
      'load_seconds_median': {m: statistics.median(v) for m, v in load_times.items()},
  }
  base_export = results['export_seconds_median']['writer']
  base_load = results['load_seconds_median']['writer']
  results['export_ratio_to_writer'] = {
      m: v / base_export for m, v in results['export_seconds_median'].items()
  }
  results['load_ratio_to_writer'] = {
      m: v / base_load for m, v in results['load_seconds_median'].items()
  }

  print('\n| method | export (median s) | export / writer | load (median s) | load / writer |')
  print('|---|---|---|---|---|')
  for m in METHODS:
    print(
        f"| {m} | {results['export_seconds_median'][m]:.3f} | "
        f"{results['export_ratio_to_writer'][m]:.2f}x | "
        f"{results['load_seconds_median'][m]:.3f} | {results['load_ratio_to_writer'][m]:.2f}x |"
    )
  if FLAGS.output:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    files.write_json_atomic(FLAGS.output, results, indent=2)
    print(f'wrote {FLAGS.output}')
  tf.io.gfile.rmtree(root)


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(main, __name__)


if __name__ == '__main__':
  run()
