r"""Fig. 5 analogue: how peer staleness affects self-supervised depth + ego-motion.

Trains gin/experiments/synthetic/staleness_depth_egomotion.gin once per (staleness, seed), with
peers frozen copies refreshed every STALENESS steps (0: live peers), then plots depth Abs Rel
against step for each staleness (PNG) and tabulates the final errors (Markdown + JSON).
Finished runs are reused, so re-running continues where it stopped.

  python tools/staleness_study.py --out_dir=runs/staleness --staleness=0,10,100,1000 --seeds=1

Seeds run one after another; to spread them over processes, start one per seed with
`--first_seed=k --seeds=1` (each writes its own run directories), then run once more with
`--seeds=N` to tabulate and plot them all.
"""

import json
import os
import shlex
import sys

from absl import flags

from taskology_tf import files
from taskology_tf.training import results
import taskology_tf_tools  # noqa: F401  (quiet TF start-up)
from taskology_tf_tools import compare_lib

flags.DEFINE_string(
    'gin_file',
    'gin/experiments/synthetic/staleness_depth_egomotion.gin',
    'Experiment with a STALENESS macro.',
)
flags.DEFINE_string('out_dir', None, 'Where the runs, the table and the plot go.')
flags.DEFINE_integer('seeds', 1, 'Seeds per staleness (first_seed .. first_seed + seeds - 1).')
flags.DEFINE_integer('first_seed', 0, 'The first seed.')
flags.DEFINE_multi_string('gin_bindings', [], 'Bindings applied to every run.')
flags.DEFINE_list('staleness', ['0', '10', '100', '1000'], 'Peer refresh periods (steps).')
flags.DEFINE_string('plot_metric', 'depth/abs_rel', 'TASK/METRIC to plot against step.')
flags.mark_flag_as_required('out_dir')
FLAGS = flags.FLAGS


def _history(run_dir, metric):
  task, _, name = metric.partition('/')
  steps, values = [], []
  path = os.path.join(run_dir, 'eval_history.jsonl')
  with open(path) as f:
    for line in f:
      record = json.loads(line)
      if task in record['metrics']:
        steps.append(record['step'])
        values.append(record['metrics'][task][name])
  return steps, values


def plot(curves, path, metric):
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  colors = plt.get_cmap('viridis')
  for k, (label, runs) in enumerate(curves.items()):
    color = colors(k / max(len(curves) - 1, 1))
    for i, (steps, values) in enumerate(runs):  # One line per seed, one colour per staleness.
      ax.plot(
          steps, values, label=label if i == 0 else None, color=color, alpha=1.0 if i == 0 else 0.5
      )
  ax.set_xlabel('training step')
  ax.set_ylabel(metric + ' (lower is better)')
  ax.set_title('Peer staleness vs depth error (synthetic world, real domain)')
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  files.save_figure_atomic(fig, path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  per_config, curves = {}, {}
  for s in FLAGS.staleness:
    name = f'staleness_{int(s)}'
    runs = []
    curves[f'staleness {int(s)}'] = []
    for seed in range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds):
      run_dir = os.path.join(FLAGS.out_dir, name, f'seed_{seed}')
      runs.append(
          compare_lib.run_config(
              name,
              [FLAGS.gin_file],
              seed,
              run_dir,
              list(FLAGS.gin_bindings) + [f'STALENESS = {int(s)}'],
          )
      )
      curves[f'staleness {int(s)}'].append(_history(run_dir, FLAGS.plot_metric))
    per_config[name] = runs
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  png = os.path.join(FLAGS.out_dir, 'staleness.png')
  plot(curves, png, FLAGS.plot_metric)
  table = results.summarize(per_config, [FLAGS.plot_metric, 'depth/delta1'])
  command = 'python tools/staleness_study.py ' + shlex.join(sys.argv[1:])
  md = results.to_markdown(table, 'Staleness study (Fig. 5 analogue)', command)
  files.write_text_atomic(os.path.join(FLAGS.out_dir, 'results.md'), md)
  files.write_json_atomic(os.path.join(FLAGS.out_dir, 'curves.json'), curves, indent=None)
  print(md)
  print(f'plot: {png}')
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
