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

import json
import os
import shlex
import subprocess
import sys
import time

from absl import app
from absl import flags

from taskology_tf import files
from taskology_tf.training.results import LOWER_IS_BETTER
from taskology_tf.training.results import peer_staleness
from taskology_tf.training.results import staleness_summary
from taskology_tf.training.results import summarize
from taskology_tf.training.results import to_markdown
import taskology_tf_tools

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


def _distributed_results(run_dir):
  """Merges the per-task eval results a tools/launch.py run leaves in <run_dir>/<task>/."""
  merged = {}
  for entry in sorted(os.listdir(run_dir)):
    path = os.path.join(run_dir, entry, 'eval_results.json')
    if os.path.exists(path):
      with open(path) as f:
        merged.update(json.load(f)['metrics'])
  return merged


def run_config(name, gin_files, seed, run_dir, bindings, distributed=False):
  """Trains one (config, seed) in a subprocess unless already done; returns its eval metrics.

  distributed: run tools/launch.py (model server + one trainer per task) instead of one
  collective tools/train.py process.
  """
  results_path = os.path.join(run_dir, 'eval_results.json')
  tool = 'launch.py' if distributed else 'train.py'
  cmd = [
      sys.executable,
      '-m',
      'taskology_tf_tools.' + tool.removesuffix('.py'),
      f'--run_dir={run_dir}',
  ]
  cmd += [f'--gin_file={f}' for f in gin_files]
  cmd += [f'--gin_bindings={b}' for b in bindings] + [f'--gin_bindings=Experiment.seed={seed}']
  done_marker = os.path.join(run_dir, 'DONE')
  if distributed:
    # launch.py leaves results per task; mark the merged file so reuse works the same way.
    results_path = done_marker
  if os.path.exists(done_marker) and os.path.exists(results_path):
    print(f'[{name} seed {seed}] reusing finished run {run_dir}', flush=True)
  else:
    os.makedirs(run_dir, exist_ok=True)
    print(f'[{name} seed {seed}] training -> {run_dir} (log: {run_dir}/train.log)', flush=True)
    start = time.monotonic()
    with open(os.path.join(run_dir, 'train.log'), 'a') as log:
      proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
      # Echo the trainer's progress lines so a long comparison shows steps/s and ETA.
      code = _follow(proc, os.path.join(run_dir, 'train.log'), name, seed)
    if code != 0:
      raise RuntimeError(
          f'[{name} seed {seed}] tools/train.py exited with {code}; see '
          f'{run_dir}/train.log. Command: {" ".join(cmd)}'
      )
    files.write_text_atomic(done_marker, f'{time.monotonic() - start:.1f} s\n')
  if distributed:
    return _distributed_results(run_dir)
  with open(results_path) as f:
    return json.load(f)['metrics']


def _follow(proc, log_path, name, seed):
  """Waits for `proc`, printing the newest progress line of its log every few seconds."""
  shown = ''
  while proc.poll() is None:
    time.sleep(5)
    try:
      with open(log_path) as f:
        lines = [l for l in f.read().splitlines() if ' steps/s ' in l]
    except OSError:
      lines = []
    if lines and lines[-1] != shown:
      shown = lines[-1]
      print(f'  [{name} seed {seed}] {shown.split("] ", 1)[-1]}', flush=True)
  return proc.returncode


def plot(table, path, title):
  """One bar panel per metric (mean, stderr bars), one colour per config, a shared legend."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  cols = sorted({c for row in table.values() for c in row})
  names = list(table)
  colours = {n: plt.get_cmap('tab10')(i % 10) for i, n in enumerate(names)}
  per_row = min(len(cols), 3)
  rows = -(-len(cols) // per_row)
  legend_rows = -(-len(names) // 3)
  height = 3.0 * rows + 0.25 * legend_rows + 0.2
  fig, axes = plt.subplots(rows, per_row, figsize=(3.6 * per_row, height), squeeze=False)
  for ax in axes.flat[len(cols) :]:
    ax.axis('off')
  for ax, col in zip(axes.flat, cols):
    present = [n for n in names if col in table[n]]
    means = [table[n][col][0] for n in present]
    errs = [0 if table[n][col][1] != table[n][col][1] else table[n][col][1] for n in present]
    ax.bar(range(len(present)), means, yerr=errs, capsize=4, color=[colours[n] for n in present])
    ax.set_xticks([])
    ax.set_title(
        col + (' (lower better)' if col.split('/')[1] in LOWER_IS_BETTER else ''), fontsize=9
    )
  handles = [plt.Rectangle((0, 0), 1, 1, color=colours[n]) for n in names]
  fig.legend(handles, names, loc='lower center', ncol=min(len(names), 3), fontsize=9, frameon=False)
  fig.suptitle(title)
  fig.tight_layout(rect=(0, (0.25 * legend_rows + 0.1) / height, 1, 1))
  files.save_figure_atomic(fig, path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  configs = _parse_configs(FLAGS.config)
  per_config = {}
  for name, gin_files in configs:
    per_config[name] = [
        run_config(
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
  plot(table, os.path.join(FLAGS.out_dir, 'results.png'), FLAGS.title)
  print()
  print(md)
  print(f'plot: {os.path.join(FLAGS.out_dir, "results.png")}')
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
