"""What tools/compare.py does per run, without its flags, so other tools and the tests can import
it: train one (config, seed) in a subprocess (reusing a finished run, resuming an interrupted one)
and plot a summarized table. tools/compare.py defines the command-line flags.
"""

import json
import os
import subprocess
import sys
import time

from taskology_tf import files
from taskology_tf.training.results import LOWER_IS_BETTER


def distributed_results(run_dir):
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
      code = follow(proc, os.path.join(run_dir, 'train.log'), name, seed)
    if code != 0:
      raise RuntimeError(
          f'[{name} seed {seed}] tools/train.py exited with {code}; see '
          f'{run_dir}/train.log. Command: {" ".join(cmd)}'
      )
    files.write_text_atomic(done_marker, f'{time.monotonic() - start:.1f} s\n')
  if distributed:
    return distributed_results(run_dir)
  with open(results_path) as f:
    return json.load(f)['metrics']


def follow(proc, log_path, name, seed):
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
