r"""Evaluates the latest checkpoint of a run on the experiment's evaluation data.

  python tools/evaluate.py --gin_file=gin/experiments/synthetic/depth_normals_sim2real.gin \
      --run_dir=runs/sim2real [--gin_bindings="real_test/synthetic_world_clips.split='validation'"]
"""

import json
import os
import sys

from absl import app
from absl import flags

from taskology_tf_tools import GIN_SEARCH_DIRS

flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s) of the run.')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings applied after the files.')
flags.DEFINE_string('run_dir', None, 'Run directory holding checkpoints/.')
flags.DEFINE_string('output', None, 'Write the metrics as JSON here (default: print only).')
flags.mark_flag_as_required('run_dir')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from taskology_tf.training import experiment as experiment_lib

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
    trainer = experiment_lib.Experiment().build_trainer(FLAGS.run_dir)
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
    with open(FLAGS.output, 'w') as f:
      json.dump({'step': step, 'metrics': results}, f, indent=2, sort_keys=True)
  return 0


def run():
  """Console-script entry point."""
  app.run(lambda argv: sys.exit(main(argv)))


if __name__ == '__main__':
  run()
