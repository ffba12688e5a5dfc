r"""Trains several configs over several seeds and tabulates mean and standard error.

Each (config, seed) run is a separate `tools/train.py` process in <out_dir>/<config>/seed_<s>;
finished runs are reused, interrupted ones resume from their checkpoints, so re-running the same
command continues where it stopped. The table is printed, written as Markdown
(<out_dir>/results.md) and JSON, and plotted (<out_dir>/results.png).

  python tools/compare.py --out_dir=runs/table3_synthetic --seeds=3 \
      --config=baseline=gin/experiments/synthetic/depth_normals_baseline.gin \
      --config=consistency=gin/experiments/synthetic/depth_normals_sim2real.gin \
      --metric=depth/abs_rel --metric=normals/within_11_25
"""

import os
import shlex
import sys

from absl import app
from absl import flags

from taskology_tf import files
from taskology_tf.training.results import peer_staleness
from taskology_tf.training.results import staleness_summary
from taskology_tf.training.results import summarize
from taskology_tf.training.results import to_markdown
import taskology_tf_tools
from taskology_tf_tools import compare_lib

flags.DEFINE_multi_string('config', [], 'NAME=GIN_FILE[,GIN_FILE...]; repeat per config.')
flags.DEFINE_multi_string('gin_bindings', [], 'Bindings applied to every run.')
flags.DEFINE_integer('seeds', 1, 'Seeds per config (0 .. seeds-1).')
flags.DEFINE_string('out_dir', None, 'Where runs and results go.')
flags.DEFINE_multi_string('metric', [], 'TASK/METRIC columns (default: every metric).')
flags.DEFINE_string('title', 'Comparison', 'Table title.')
flags.DEFINE_list(
    'distributed',
    [],
    'Config NAMEs to run in distributed mode (tools/launch.py: '
    'model server + one trainer per task) instead of one collective process.',
)
flags.mark_flag_as_required('out_dir')
FLAGS = flags.FLAGS


def _parse_configs(specs):
  configs = []
  for spec in specs:
    name, sep, gin_files = spec.partition('=')
    if not sep or not name or not gin_files:
      raise app.UsageError(f'--config {spec!r}: expected NAME=GIN_FILE[,GIN_FILE...]')
    configs.append((name, gin_files.split(',')))
  if not configs:
    raise app.UsageError('give at least one --config')
  return configs


def main(argv):
  del argv
  configs = _parse_configs(FLAGS.config)
  per_config = {}
  for name, gin_files in configs:
    per_config[name] = [
        compare_lib.run_config(
            name,
            gin_files,
            seed,
            os.path.join(FLAGS.out_dir, name, f'seed_{seed}'),
            FLAGS.gin_bindings,
            distributed=name in FLAGS.distributed,
        )
        for seed in range(FLAGS.seeds)
    ]
  table = summarize(per_config, FLAGS.metric)
  command = 'python tools/compare.py ' + shlex.join(sys.argv[1:])
  md = to_markdown(table, FLAGS.title, command)
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  staleness = {}
  for name, _ in configs:
    if name in FLAGS.distributed:
      samples = {'steps': [], 'seconds': []}
      for seed in range(FLAGS.seeds):
        for kind, values in peer_staleness(
            os.path.join(FLAGS.out_dir, name, f'seed_{seed}')
        ).items():
          samples[kind] += values
      staleness[name] = samples
  if staleness:
    md += '\nPeer staleness logged by the distributed trainers (all seeds, all peers):\n\n'
    md += ''.join(f'- {name}: {staleness_summary(s)}\n' for name, s in staleness.items())
    files.write_json_atomic(os.path.join(FLAGS.out_dir, 'staleness.json'), staleness, indent=None)
  files.write_text_atomic(os.path.join(FLAGS.out_dir, 'results.md'), md)
  files.write_json_atomic(
      os.path.join(FLAGS.out_dir, 'results.json'),
      {n: {c: list(v) for c, v in row.items()} for n, row in table.items()},
      indent=2,
  )
  compare_lib.plot(table, os.path.join(FLAGS.out_dir, 'results.png'), FLAGS.title)
  print()
  print(md)
  print(f'plot: {os.path.join(FLAGS.out_dir, "results.png")}')
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
