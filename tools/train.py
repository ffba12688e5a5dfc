r"""Trains an experiment: every task in this process (collective), or one task (distributed).

Collective (all tasks live, one process):
  python tools/train.py --gin_file=gin/experiments/synthetic/depth_normals_sim2real.gin \
      --run_dir=runs/sim2real

Distributed (one task; peers are served over gRPC; see tools/launch.py):
  python tools/train.py --gin_file=... --run_dir=runs/x --task=depth
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging

import taskology_tf_tools
from taskology_tf_tools import GIN_SEARCH_DIRS

flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s), applied in order.')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings applied after the files.')
flags.DEFINE_string('run_dir', None, 'Directory for checkpoints, summaries and results.')
flags.DEFINE_string('task', None, 'Train only this task (distributed mode); default: all tasks.')
flags.mark_flag_as_required('run_dir')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from taskology_tf.training import experiment as experiment_lib
  from taskology_tf.training import point_cloud_experiment
  from taskology_tf.training.trainer import NonFiniteLossError

  if not FLAGS.gin_file:
    raise app.UsageError(
        '--gin_file is required (e.g. gin/experiments/synthetic/' 'depth_normals_sim2real.gin)'
    )
  try:
    experiment_lib.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings, search_dirs=GIN_SEARCH_DIRS)
    experiment = point_cloud_experiment.experiment_from_gin()
    if FLAGS.task is None:
      trainer = experiment.build_trainer(FLAGS.run_dir)
    else:
      from taskology_tf.training import distributed

      trainer = distributed.build_task_trainer(experiment, FLAGS.task, FLAGS.run_dir)
  except (FileNotFoundError, ValueError) as e:
    logging.error('%s', e)
    print(f'error: {e}', file=sys.stderr)
    return 2
  experiment_lib.write_operative_config(FLAGS.run_dir)
  try:
    results = trainer.train()
  except NonFiniteLossError as e:
    print(f'error: {e}', file=sys.stderr)
    return 3
  experiment_lib.write_operative_config(FLAGS.run_dir)
  print(json.dumps(results, indent=2, sort_keys=True))
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
