r"""A Taskonomy-style task taxonomy of our trained tasks: transfers, AHP affinities, the BIP.

Trains readouts from the frozen encoders of a run's trained task networks (first order, second
order, ... up to --max_order, beam search beyond --exhaustive_order) onto every target, scores
every transfer per test image, normalises them with AHP, reports Gain and Quality, and solves
the BIP for each supervision budget. Writes affinities.json, taxonomy.md, affinity.png (heat-map)
and taxonomy_budget_<gamma>.png (the chosen transfers as a graph) to --out_dir.

  python tools/taxonomy.py --gin_file=gin/experiments/synthetic/mtl_stl.gin \
      --gin_bindings="DATA_DIR='/work/data_demo'" --source_run_dir=runs/mtl_table/stl/seed_0 \
      --data_dir=/work/data_demo --out_dir=runs/taxonomy --budget=1 --budget=2 --budget=3

BIP solve time against the number of tasks (random instances, second-order transfers):
  python tools/taxonomy.py --benchmark_bip=3,5,8,12,16,20 --out_dir=runs/taxonomy_bip
"""

import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags
import gin

from taskology_tf import files
import taskology_tf_tools
from taskology_tf_tools import GIN_SEARCH_DIRS

flags.DEFINE_multi_string('gin_file', [], 'Gin file(s) of the run whose tasks are the sources.')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings applied after the files.')
flags.DEFINE_string('source_run_dir', None, 'Run directory with checkpoints/ of the trained tasks.')
flags.DEFINE_string('out_dir', None, 'Where results and pictures go.')
flags.DEFINE_multi_float('budget', [], 'Supervision budget(s) gamma for the BIP.')
flags.DEFINE_list('costs', [], 'TASK=COST supervision costs (default 1 per task).')
flags.DEFINE_list('importance', [], 'TASK=WEIGHT target importance (default 1 per task).')
flags.DEFINE_integer('max_order', 2, 'Largest number of sources per transfer.')
flags.DEFINE_integer('exhaustive_order', 2, 'Orders up to this are exhaustive; beam search above.')
flags.DEFINE_integer('beam', 4, 'Beam: higher-order sets use only the best first-order sources.')
flags.DEFINE_integer('transfer_steps', 200, 'Training steps of each readout (and of scratch).')
flags.DEFINE_integer('transfer_batch', 8, 'Frames per readout training step.')
flags.DEFINE_float('learning_rate', 1e-3, 'Readout learning rate (Adam).')
flags.DEFINE_string('data_dir', 'data/tensorflow_datasets', 'TFDS data_dir of the synthetic world.')
flags.DEFINE_string('domain', 'real', 'Synthetic-world domain of the transfer data.')
flags.DEFINE_string(
    'transfer_split', 'train[50%:60%]', "Transfer data split (disjoint from the sources' data)."
)
flags.DEFINE_bool('reuse', True, 'Reuse <out_dir>/affinities.json if present (BIP only).')
flags.DEFINE_list('benchmark_bip', [], 'Instead: time the BIP for these numbers of tasks.')
flags.DEFINE_integer('seed', 0, 'Seed of the readouts and of the transfer-data order.')
FLAGS = flags.FLAGS


def _pairs(values, what):
  out = {}
  for item in values:
    name, sep, value = item.partition('=')
    if not sep:
      raise app.UsageError(f'--{what} {item!r}: expected TASK=NUMBER')
    try:
      out[name] = float(value)
    except ValueError as e:
      raise app.UsageError(f'--{what} {item!r}: {value!r} is not a number') from e
  return out


def _benchmark(sizes, out_dir):
  from taskology_tf.taxonomy import bip  # pylint: disable=g-import-not-at-top

  rows = []
  for n in sizes:
    tasks, transfers, costs = bip.random_instance(n, max_order=2, seed=n)
    times = []
    for _ in range(3):
      start = time.perf_counter()
      bip.solve(tasks, transfers, costs, budget=max(1.0, n / 2))
      times.append(time.perf_counter() - start)
    rows.append({'tasks': n, 'transfers': len(transfers), 'seconds': statistics.median(times)})
  print('| tasks | candidate transfers (order <= 2) | BIP solve time (s, median of 3) |')
  print('|---|---|---|')
  for r in rows:
    print(f'| {r["tasks"]} | {r["transfers"]} | {r["seconds"]:.4f} |')
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    files.write_json_atomic(os.path.join(out_dir, 'bip_timing.json'), rows, indent=2)
  return 0


def _measure(out_dir):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets.loader import load_synthetic_world  # pylint: disable=g-import-not-at-top
  from taskology_tf.inputs import pipelines  # pylint: disable=g-import-not-at-top
  from taskology_tf.taxonomy import ahp  # pylint: disable=g-import-not-at-top
  from taskology_tf.taxonomy import bip  # pylint: disable=g-import-not-at-top
  from taskology_tf.taxonomy import transfer  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  ckpt_dir = os.path.join(FLAGS.source_run_dir, 'checkpoints')
  latest = tf.train.latest_checkpoint(ckpt_dir)
  if latest is None:
    raise ValueError(f'--source_run_dir {FLAGS.source_run_dir!r}: no checkpoint in {ckpt_dir}')
  experiment_lib.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings, search_dirs=GIN_SEARCH_DIRS)
  experiment = gin.get_configurable('taskology_tf.training.Experiment')()
  trainer = experiment.build_trainer(os.path.join(out_dir, 'sources'))
  trainer.checkpoint.restore(latest).expect_partial()
  tasks = {c.task.name: c.task for c in experiment.tasks}
  any_task = next(iter(tasks.values()))
  height, width = any_task.height, any_task.width
  keras.utils.set_random_seed(FLAGS.seed)
  clips = load_synthetic_world(FLAGS.domain, FLAGS.transfer_split, FLAGS.data_dir, height, width)
  transfer_data = pipelines.dedicated_dataset(
      clips, FLAGS.transfer_batch, frames=(1,), seed=FLAGS.seed
  )
  test_data = experiment.evaluation_dataset()
  if test_data is None:
    raise ValueError('the experiment has no Experiment.evaluation_clips to score transfers on')
  results = {}
  for target in tasks:
    others = [s for s in tasks if s != target]
    print(f'target {target}:', flush=True)
    first = bip.candidate_source_sets(others, 1)
    first_scores = None
    if FLAGS.max_order > FLAGS.exhaustive_order:
      r1 = transfer.measure_target(
          tasks[target],
          first,
          trainer.models,
          transfer_data,
          test_data,
          FLAGS.transfer_steps,
          FLAGS.learning_rate,
          height,
          width,
      )
      first_scores = {s[0]: r1.affinity[s[0]] for s in first}
    sets = bip.candidate_source_sets(
        others, FLAGS.max_order, first_scores, FLAGS.exhaustive_order, FLAGS.beam
    )
    r = transfer.measure_target(
        tasks[target],
        sets,
        trainer.models,
        transfer_data,
        test_data,
        FLAGS.transfer_steps,
        FLAGS.learning_rate,
        height,
        width,
    )
    results[target] = {
        'names': r.names,
        'sources': [list(s) for s in r.sources],
        'affinity': r.affinity,
        'gain': r.gain,
        'quality': r.quality,
        'mean_loss': r.mean_loss,
        'win_rate': ahp.win_rate_matrix(r.losses).tolist(),
    }
  return {'source_run_dir': FLAGS.source_run_dir, 'checkpoint': latest, 'targets': results}


def main(argv):
  del argv
  if FLAGS.benchmark_bip:
    return _benchmark([int(n) for n in FLAGS.benchmark_bip], FLAGS.out_dir)
  if not FLAGS.out_dir:
    raise app.UsageError('--out_dir is required')
  from taskology_tf.taxonomy import bip  # pylint: disable=g-import-not-at-top
  from taskology_tf.taxonomy import plots  # pylint: disable=g-import-not-at-top

  os.makedirs(FLAGS.out_dir, exist_ok=True)
  path = os.path.join(FLAGS.out_dir, 'affinities.json')
  if FLAGS.reuse and os.path.exists(path):
    with open(path) as f:
      data = json.load(f)
    print(f'reusing {path}')
  else:
    if not FLAGS.source_run_dir or not FLAGS.gin_file:
      raise app.UsageError('--gin_file and --source_run_dir are required to measure transfers')
    try:
      data = _measure(FLAGS.out_dir)
    except (FileNotFoundError, ValueError) as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
    files.write_json_atomic(path, data)
  targets = list(data['targets'])
  costs = {t: 1.0 for t in targets}
  costs.update(_pairs(FLAGS.costs, 'costs'))
  importance = _pairs(FLAGS.importance, 'importance')
  transfers = [
      bip.Transfer(t, tuple(src), data['targets'][t]['affinity'][name])
      for t in targets
      for name, src in zip(data['targets'][t]['names'], data['targets'][t]['sources'])
      if name != 'scratch'
  ]
  affinity = {t: data['targets'][t]['affinity'] for t in targets}
  plots.affinity_heatmap(affinity, targets, os.path.join(FLAGS.out_dir, 'affinity.png'))
  lines = [
      '| target | transfer | AHP affinity | Gain | Quality | mean test loss |',
      '|---|---|---|---|---|---|',
  ]
  for t in targets:
    d = data['targets'][t]
    for name in d['names']:
      if name == 'scratch':
        lines.append(f'| {t} | scratch | - | - | - | {d["mean_loss"][name]:.4f} |')
      else:
        lines.append(
            f'| {t} | {name} | {d["affinity"][name]:.3f} | {d["gain"][name]:.3f} | '
            f'{d["quality"][name]:.3f} | {d["mean_loss"][name]:.4f} |'
        )
  lines += ['', '| budget gamma | supervised | chosen transfers | objective |', '|---|---|---|---|']
  for gamma in FLAGS.budget:
    try:
      tax = bip.solve(targets, transfers, costs, gamma, importance, budget_name='--budget')
    except bip.InfeasibleBudgetError as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
    chosen = ', '.join(
        f'{"+".join(e.sources)} -> {e.target}'
        + (' (own network)' if e.sources == (e.target,) else '')
        for e in tax.transfers
    )
    print(f'budget {gamma:g}: supervise {tax.supervised}; {chosen}; objective {tax.objective:.3f}')
    lines.append(f'| {gamma:g} | {", ".join(tax.supervised)} | {chosen} | {tax.objective:.3f} |')
    plots.taxonomy_graph(
        targets,
        tax,
        os.path.join(FLAGS.out_dir, f'taxonomy_budget_{gamma:g}.png'),
        title=f'budget {gamma:g}: supervise {", ".join(tax.supervised)}',
    )
  files.write_text_atomic(os.path.join(FLAGS.out_dir, 'taxonomy.md'), '\n'.join(lines) + '\n')
  print('\n'.join(lines))
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
