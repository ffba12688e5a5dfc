r"""Trains a shared-encoder multi-task experiment (taskology_tf/mtl), or the whole delta_m table.

One run (gin: gin/experiments/synthetic/mtl_<method>.gin):
  python tools/mtl.py --gin_file=gin/experiments/synthetic/mtl_pcgrad.gin --run_dir=runs/pcgrad

The table (STL, EW, MGDA, PCGrad, GradDrop, CAGrad, MCLGS, CAGrad + MCLGS and collective
training, each over --seeds seeds, runs reused when finished; markdown + JSON + PNG in
--table_dir):
  python tools/mtl.py --table_dir=runs/mtl_table --seeds=3 \
      --gin_bindings="DATA_DIR='/work/data_demo'"
"""

import json
import os
import shlex
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging
import gin

from taskology_tf import files
import taskology_tf_tools
from taskology_tf_tools import GIN_SEARCH_DIRS
from taskology_tf_tools import REPO_ROOT

flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s), applied in order (one run).')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings applied after the files.')
flags.DEFINE_string('run_dir', None, 'Directory of one run (checkpoints, summaries, results).')
flags.DEFINE_string('table_dir', None, 'Run the whole delta_m table here instead of one run.')
flags.DEFINE_integer('seeds', 3, 'Seeds per row of the table (0 .. seeds-1).')
flags.DEFINE_list('rows', [], 'Table rows to run (default: all), e.g. stl,ew,pcgrad.')
flags.DEFINE_bool(
    'gather_only', False, 'Table: train nothing, tabulate the finished seeds of every row.'
)
flags.DEFINE_integer('parallel', 1, 'Table runs trained at once (separate processes).')
flags.DEFINE_integer(
    'benchmark_steps', 0, 'Instead: time this many steps of every method, side by side.'
)
flags.DEFINE_integer('benchmark_rounds', 5, 'Interleaved timing rounds per method (benchmark).')
flags.DEFINE_string('output', None, 'Benchmark: write the timings as JSON here.')
FLAGS = flags.FLAGS

_SYN = 'gin/experiments/synthetic/'
# (row name, gin file, trainer tool): the MTL rows use this tool, STL and collective the
# collective trainer (tools/train.py), all on the same data and evaluation.
TABLE_ROWS = (
    ('stl', _SYN + 'mtl_stl.gin', 'train'),
    ('ew', _SYN + 'mtl_ew.gin', 'mtl'),
    ('mgda', _SYN + 'mtl_mgda.gin', 'mtl'),
    ('pcgrad', _SYN + 'mtl_pcgrad.gin', 'mtl'),
    ('graddrop', _SYN + 'mtl_graddrop.gin', 'mtl'),
    ('cagrad', _SYN + 'mtl_cagrad.gin', 'mtl'),
    ('mclgs', _SYN + 'mtl_mclgs.gin', 'mtl'),
    ('cagrad_mclgs', _SYN + 'mtl_cagrad_mclgs.gin', 'mtl'),
    ('collective', _SYN + 'mtl_collective.gin', 'train'),
)


def train_one(gin_files, gin_bindings, run_dir):
  """Trains one MTL run in this process; returns its exit code."""
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from taskology_tf.training.trainer import NonFiniteLossError  # pylint: disable=g-import-not-at-top

  try:
    experiment_lib.parse_gin(gin_files, gin_bindings, search_dirs=GIN_SEARCH_DIRS)
    experiment = gin.get_configurable('taskology_tf.mtl.MTLExperiment')()
    trainer = experiment.build_trainer(run_dir)
  except (FileNotFoundError, ValueError, TypeError) as e:
    logging.error('%s', e)
    print(f'error: {e}', file=sys.stderr)
    return 2
  experiment_lib.write_operative_config(run_dir)
  try:
    results = trainer.train()
  except NonFiniteLossError as e:
    print(f'error: {e}', file=sys.stderr)
    return 3
  print(json.dumps(results, indent=2, sort_keys=True))
  return 0


def _command(tool, gin_file, bindings, seed, run_dir):
  seed_binding = 'Experiment.seed' if tool == 'train' else 'MTLExperiment.seed'
  return (
      [sys.executable, '-m', f'taskology_tf_tools.{tool}', f'--run_dir={run_dir}']
      + [f'--gin_file={gin_file}']
      + [f'--gin_bindings={b}' for b in bindings]
      + [f'--gin_bindings={seed_binding}={seed}']
  )


def run_table(table_dir, seeds, bindings, rows, parallel, gather_only=False):
  """Trains every (row, seed) not finished yet, then writes the delta_m table."""
  from taskology_tf.mtl import delta_m  # pylint: disable=g-import-not-at-top

  selected = [r for r in TABLE_ROWS if not rows or r[0] in rows]
  unknown = set(rows) - {r[0] for r in TABLE_ROWS}
  if unknown:
    raise app.UsageError(
        f'--rows: unknown rows {sorted(unknown)}; known: {[r[0] for r in TABLE_ROWS]}'
    )
  jobs = []
  for seed in range(seeds):
    for name, gin_file, tool in selected:
      run_dir = os.path.join(table_dir, name, f'seed_{seed}')
      if gather_only or os.path.exists(os.path.join(run_dir, 'DONE')):
        continue
      jobs.append((name, seed, run_dir, _command(tool, gin_file, bindings, seed, run_dir)))
  running = []
  failed = []
  while jobs or running:
    while jobs and len(running) < parallel:
      name, seed, run_dir, cmd = jobs.pop(0)
      os.makedirs(run_dir, exist_ok=True)
      print(f'[{name} seed {seed}] {shlex.join(cmd)}', flush=True)
      log = open(os.path.join(run_dir, 'train.log'), 'a')
      running.append(
          (
              name,
              seed,
              run_dir,
              cmd,
              subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT),
              time.monotonic(),
              log,
          )
      )
    time.sleep(2)
    for item in list(running):
      name, seed, run_dir, cmd, proc, start, log = item
      if proc.poll() is None:
        continue
      running.remove(item)
      log.close()
      if proc.returncode != 0:
        failed.append(
            f'[{name} seed {seed}] exited with {proc.returncode}; see {run_dir}/train.log'
        )
        print(failed[-1], flush=True)
        continue
      files.write_text_atomic(os.path.join(run_dir, 'DONE'), f'{time.monotonic() - start:.1f} s\n')
      print(f'[{name} seed {seed}] done in {time.monotonic() - start:.0f} s', flush=True)
  if failed:
    raise RuntimeError('\n'.join(failed))
  per_row = {}
  for name, _, _ in selected:
    per_row[name] = []
    for seed in range(seeds):
      run_dir = os.path.join(table_dir, name, f'seed_{seed}')
      if gather_only and not os.path.exists(os.path.join(run_dir, 'DONE')):
        continue
      with open(os.path.join(run_dir, 'eval_results.json')) as f:
        per_row[name].append(json.load(f)['metrics'])
    if not per_row[name]:
      del per_row[name]
  command = shlex.join(
      ['python', 'tools/mtl.py', f'--table_dir={table_dir}', f'--seeds={seeds}']
      + [f'--gin_bindings={b}' for b in bindings]
  )
  delta_m.write_table(per_row, 'stl', table_dir, command)
  with open(os.path.join(table_dir, 'results.md')) as f:
    print(f.read())


def benchmark(gin_files, gin_bindings, steps, rounds, output):
  """Per-step time of every gradient method on one model and one batch, interleaved rounds."""
  import statistics  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top

  from taskology_tf.mtl import methods as m  # pylint: disable=g-import-not-at-top
  from taskology_tf.mtl.trainer import MTLTrainer  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  experiment_lib.parse_gin(gin_files, gin_bindings, search_dirs=GIN_SEARCH_DIRS)
  experiment = gin.get_configurable('taskology_tf.mtl.MTLExperiment')()
  tmp = tempfile.mkdtemp(prefix='mtl_benchmark_')
  base = experiment.build_trainer(os.path.join(tmp, 'ew'))
  batch = next(iter(base.dataset))
  methods = {
      'ew': m.EW(),
      'mgda': m.MGDA('none'),
      'pcgrad': m.PCGrad(),
      'graddrop': m.GradDrop(),
      'cagrad': m.CAGrad(0.4),
      'mclgs': m.MCLGS(1.0, 1e-3),
      'cagrad_mclgs': m.CAGrad(0.4, curriculum=m.MCLGS(1.0, 1e-3)),
  }
  trainers = {
      name: MTLTrainer(
          base.backbone,
          method,
          experiment.optimizer(),
          base.dataset,
          experiment.loop,
          os.path.join(tmp, name),
          jit_compile=experiment.jit_compile,
      )
      for name, method in methods.items()
  }
  for t in trainers.values():  # Trace and warm up.
    for _ in range(2):
      float(t._step_fn(batch)['total'])  # pylint: disable=protected-access
  times = {name: [] for name in trainers}
  for _ in range(rounds):
    for name, t in trainers.items():
      start = time.perf_counter()
      for _ in range(steps):
        terms = t._step_fn(batch)  # pylint: disable=protected-access
      float(terms['total'])
      times[name].append((time.perf_counter() - start) / steps)
  median = {n: statistics.median(v) for n, v in times.items()}
  result = {
      'seconds_per_step': median,
      'ratio_to_ew': {n: v / median['ew'] for n, v in median.items()},
      'steps': steps,
      'rounds': rounds,
      'batch_size': experiment.batch_size,
      'image': [experiment.height, experiment.width],
      'num_shared_parameters': int(
          sum(v.shape.num_elements() for v in base.backbone.shared_variables)
      ),
  }
  print('| method | s / step (median of rounds) | ratio to EW |')
  print('|---|---|---|')
  for n in methods:
    print(f'| {n} | {median[n]:.4f} | {result["ratio_to_ew"][n]:.2f} |')
  if output:
    files.write_json_atomic(output, result, indent=2, sort_keys=True)
  return 0


def main(argv):
  del argv
  if FLAGS.benchmark_steps:
    gin_files = FLAGS.gin_file or [_SYN + 'mtl_ew.gin']
    return benchmark(
        gin_files, FLAGS.gin_bindings, FLAGS.benchmark_steps, FLAGS.benchmark_rounds, FLAGS.output
    )
  if FLAGS.table_dir:
    run_table(
        FLAGS.table_dir,
        FLAGS.seeds,
        FLAGS.gin_bindings,
        FLAGS.rows,
        FLAGS.parallel,
        FLAGS.gather_only,
    )
    return 0
  if not FLAGS.run_dir or not FLAGS.gin_file:
    raise app.UsageError(
        'give --gin_file and --run_dir (one run), or --table_dir (the whole table); e.g. '
        '--gin_file=gin/experiments/synthetic/mtl_pcgrad.gin --run_dir=runs/pcgrad'
    )
  return train_one(FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.run_dir)


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
