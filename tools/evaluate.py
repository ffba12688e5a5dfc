r"""Evaluates a run's latest checkpoint, or a depth SavedModel on the KITTI / Cityscapes protocol.

Checkpoint mode (the experiment's own evaluation data and metrics):

  python tools/evaluate.py --gin_file=gin/experiments/synthetic/depth_normals_sim2real.gin \
      --run_dir=runs/sim2real [--gin_bindings="real_test/synthetic_world_clips.split='validation'"]

SavedModel mode (a depth task's exported snapshot, e.g. `<snapshot_root>/depth/<version>` or
its base path, whose newest version is used), scored on a built video dataset with the
protocol of `taskology_tf/metrics/kitti_depth.py`, with and without median scaling (both rows
are printed, each naming its protocol):

  python tools/evaluate.py --saved_model=runs/kitti/snapshots/depth --dataset=kitti_raw \
      --data_dir=./data/tensorflow_datasets [--split=test] [--output=eval.json]

A segmentation snapshot (`logits` over the project class set) on Cityscapes gtFine, Table 1's
mIoU over the movable classes (the classes named beside the number,
`taskology_tf/metrics/segmentation.py`):

  python tools/evaluate.py --saved_model=runs/table1/snapshots/segmentation \
      --protocol=segmentation --dataset=cityscapes --split=validation \
      --data_dir=./data/tensorflow_datasets
"""

import os
import sys

from absl import app
from absl import flags

from taskology_tf import files
import taskology_tf_tools
from taskology_tf_tools import GIN_SEARCH_DIRS

flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s) of the run.')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings applied after the files.')
flags.DEFINE_string('run_dir', None, 'Run directory holding checkpoints/ (checkpoint mode).')
flags.DEFINE_string('output', None, 'Write the metrics as JSON here (default: print only).')
flags.DEFINE_string(
    'saved_model',
    None,
    'SavedModel mode: a depth SavedModel directory, or a TF Serving base path (newest version).',
)
flags.DEFINE_enum(
    'dataset', None, ['kitti_raw', 'cityscapes'], 'SavedModel mode: the built dataset to score on.'
)
flags.DEFINE_string('data_dir', 'data/tensorflow_datasets', 'SavedModel mode: TFDS data dir.')
flags.DEFINE_string('split', 'test', 'SavedModel mode: split (KITTI: test = Eigen test frames).')
flags.DEFINE_integer('batch_size', 8, 'SavedModel mode: images per Predict call.')
flags.DEFINE_integer('max_examples', None, 'SavedModel mode: score only the first N clips.')
flags.DEFINE_enum(
    'protocol',
    'depth',
    ['depth', 'segmentation'],
    'SavedModel mode: depth (KITTI / Cityscapes depth protocol) or segmentation (Cityscapes '
    'gtFine mIoU, movable classes).',
)
FLAGS = flags.FLAGS


def main_saved_model():
  """SavedModel mode of main(): returns the process exit code."""
  from taskology_tf.metrics import kitti_depth  # pylint: disable=g-import-not-at-top
  from taskology_tf.metrics import saved_model_eval  # pylint: disable=g-import-not-at-top

  if FLAGS.dataset is None:
    raise app.UsageError('--saved_model needs --dataset=kitti_raw|cityscapes')
  if FLAGS.protocol == 'segmentation':
    return _segmentation_saved_model()
  try:
    results = saved_model_eval.evaluate_saved_model(
        FLAGS.saved_model,
        FLAGS.dataset,
        FLAGS.data_dir,
        FLAGS.split,
        FLAGS.batch_size,
        FLAGS.max_examples,
    )
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  for protocol, metrics in results.items():
    print(kitti_depth.format_table(metrics, protocol))
    print()
  if FLAGS.output:
    files.write_json_atomic(
        FLAGS.output,
        {'saved_model': saved_model_eval.resolve_saved_model(FLAGS.saved_model), 'split': FLAGS.split,
         'dataset': FLAGS.dataset, 'metrics': results},
        sort_keys=True,
    )  # fmt: skip
  return 0


def _segmentation_saved_model():
  """--protocol=segmentation: a segmentation SavedModel on Cityscapes gtFine."""
  from taskology_tf.metrics import saved_model_eval  # pylint: disable=g-import-not-at-top
  from taskology_tf.metrics import segmentation  # pylint: disable=g-import-not-at-top

  if FLAGS.dataset != 'cityscapes':
    raise app.UsageError('--protocol=segmentation scores Cityscapes gtFine: --dataset=cityscapes')
  try:
    result = segmentation.evaluate_cityscapes_segmentation(
        FLAGS.saved_model, FLAGS.data_dir, FLAGS.split, FLAGS.batch_size, FLAGS.max_examples
    )
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(segmentation.format_results(result))
  if FLAGS.output:
    result['saved_model'] = saved_model_eval.resolve_saved_model(FLAGS.saved_model)
    files.write_json_atomic(FLAGS.output, result, indent=2, sort_keys=True)
  return 0


def main(argv):
  del argv
  if FLAGS.saved_model and FLAGS.run_dir:
    raise app.UsageError('give --run_dir (checkpoint mode) or --saved_model, not both')
  if FLAGS.saved_model:
    return main_saved_model()
  if not FLAGS.run_dir:
    raise app.UsageError('--run_dir (checkpoint mode) or --saved_model is required')
  from taskology_tf.training import experiment as experiment_lib
  from taskology_tf.training import point_cloud_experiment  # pylint: disable=g-import-not-at-top

  if not FLAGS.gin_file:
    raise app.UsageError('--gin_file is required')
  if not os.path.isdir(os.path.join(FLAGS.run_dir, 'checkpoints')):
    print(
        f'error: --run_dir {FLAGS.run_dir!r} has no checkpoints/ directory; train first with '
        'tools/train.py',
        file=sys.stderr,
    )
    return 2
  try:
    experiment_lib.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings, search_dirs=GIN_SEARCH_DIRS)
    trainer = point_cloud_experiment.experiment_from_gin().build_trainer(FLAGS.run_dir)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  step = trainer.restore()
  results = trainer.evaluate()
  for task, metrics in results.items():
    print(f'{task} @ step {step}')
    for k, v in metrics.items():
      print(f'  {k:>16s}  {v:.4f}')
  if FLAGS.output:
    files.write_json_atomic(
        FLAGS.output, {'step': step, 'metrics': results}, indent=2, sort_keys=True
    )
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
