r"""Table 1 (Sec. 4.1): runs A-E in dependency order over N seeds and tabulates them.

  python tools/table1.py --scale=synthetic --out_dir=runs/table1 --seeds=3 \
      --gin_bindings="DATA_DIR='/work/data_demo'"

A depth + motion only, B segmentation only, C segmentation frozen from B with depth + motion,
D depth + motion frozen from C with segmentation, E all three jointly
(gin/experiments/<scale>/table1_<x>.gin). Per seed s the runs are <out_dir>/<x>/seed_<s>; C
reads B's run of the same seed (SEGMENTATION_FROM), D reads C's (DEPTH_MOTION_FROM), so the
order is A, B, C, D, E. Resumable: a run with its `table1_result.json` is done and not redone;
an interrupted run resumes from its checkpoint.

Every run's networks are scored on the experiment's evaluation clips (middle frames): depth Abs
Rel (median-scaled; the Cityscapes protocol of metrics/kitti_depth.py at Cityscapes scale) and
the mIoU over the movable classes, with the classes named beside the number. A frozen task is
scored from the network it was frozen from (its numbers equal its source run's). Output:
<out_dir>/table1.md, table1.json, table1.png (mean and standard error over seeds), and the
paper's orderings (depth error E <= C < A, movable mIoU E >= D > B) checked.
"""

import json
import math
import os
import sys
import time

from absl import app
from absl import flags

from taskology_tf import files
import taskology_tf_tools
from taskology_tf_tools import GIN_SEARCH_DIRS

EXPERIMENTS = ('a', 'b', 'c', 'd', 'e')
DESCRIPTIONS = {
    'a': 'depth + motion only',
    'b': 'segmentation only',
    'c': 'segmentation frozen from B, depth + motion trained',
    'd': 'depth + motion frozen from C, segmentation trained',
    'e': 'depth, motion and segmentation jointly',
}
SOURCES = {'c': {'segmentation': 'b'}, 'd': {'depth': 'c', 'motion': 'c'}}
RESULT_FILE = 'table1_result.json'
# The synthetic world's own class ids (datasets/synthetic_world/scene.py).
SYNTHETIC_CLASS_NAMES = ('sky', 'ground', 'building', 'car', 'pedestrian')
SYNTHETIC_MOVABLE = ('car', 'pedestrian')

flags.DEFINE_enum('scale', 'synthetic', ['synthetic', 'cityscapes'], 'Which gin folder.')
flags.DEFINE_string('out_dir', None, 'Where the runs and the table go.')
flags.DEFINE_integer('seeds', 3, 'Seeds per experiment (first_seed .. first_seed + seeds - 1).')
flags.DEFINE_integer(
    'first_seed',
    0,
    'The first seed. Seeds can be split over processes sharing --out_dir (e.g. three with '
    '--seeds=1 and --first_seed=0, 1, 2); a last run with --seeds=3 then finds every run done '
    'and writes the table over all of them.',
)
flags.DEFINE_list('experiments', list(EXPERIMENTS), 'Subset of a,b,c,d,e (dependencies kept).')
flags.DEFINE_integer('num_steps', None, 'Override NUM_STEPS of every run.')
flags.DEFINE_multi_string('extra_gin_file', [], 'Gin files applied after each experiment file.')
flags.DEFINE_multi_string('gin_bindings', [], 'Bindings applied to every run.')
flags.DEFINE_integer('eval_batch_size', 8, 'Evaluation batch size.')
flags.mark_flag_as_required('out_dir')
FLAGS = flags.FLAGS


def gin_file(scale, name):
  return f'gin/experiments/{scale}/table1_{name}.gin'


def run_dir(out_dir, name, seed):
  return os.path.join(out_dir, name, f'seed_{seed}')


def run_bindings(out_dir, name, seed, num_steps, extra):
  bindings = [
      f'Experiment.seed = {seed}',
      f"SEGMENTATION_FROM = '{run_dir(out_dir, 'b', seed)}'",
      f"DEPTH_MOTION_FROM = '{run_dir(out_dir, 'c', seed)}'",
  ]
  if num_steps is not None:
    bindings.append(f'NUM_STEPS = {num_steps}')
  return bindings + list(extra)


def _metrics_for(scale):
  from taskology_tf.datasets import class_set  # pylint: disable=g-import-not-at-top
  from taskology_tf.metrics import kitti_depth  # pylint: disable=g-import-not-at-top

  if scale == 'cityscapes':
    depth = kitti_depth.cityscapes_metrics(median_scaling=True)
    return depth, class_set.CLASS_NAMES, class_set.MOVABLE_CLASS_NAMES
  depth = kitti_depth.EigenDepthMetrics(garg_crop=False, median_scaling=True, name='synthetic')
  return depth, SYNTHETIC_CLASS_NAMES, SYNTHETIC_MOVABLE


def evaluate_run(experiment, path, scale, batch_size, live_models=None):
  """Scores the depth and segmentation networks of one run (frozen ones from their source).

  live_models: {task: network} of the run's trainer (Trainer.models) to score the trained
  networks in memory; a trained task not in it is loaded from the run's checkpoint in `path`.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from taskology_tf.metrics.segmentation import ClassSetIoU  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import frozen  # pylint: disable=g-import-not-at-top

  depth_metrics, class_names, movable = _metrics_for(scale)
  wanted = [n for n in ('depth', 'segmentation') if n in experiment.task_names]
  models, tasks, origin = {}, {}, {}
  for name in wanted:
    config = experiment.config(name)
    if not config.frozen_from and name in (live_models or {}):
      models[name] = live_models[name]
    else:
      models[name], _ = frozen.load_frozen_network(config.task, config.frozen_from or path)
    tasks[name] = config.task
    origin[name] = 'frozen' if config.frozen_from else 'trained'
  seg_metrics = ClassSetIoU(class_names, movable) if 'segmentation' in models else None
  calls = {n: tf.function(lambda inputs, n=n: tasks[n].call(models[n], inputs)) for n in models}
  dataset = experiment.evaluation_dataset(batch_size)
  if dataset is None:
    raise ValueError('Experiment.evaluation_clips is not set; Table 1 needs evaluation data')
  for batch in dataset:
    for name in models:
      outputs = calls[name](tasks[name].dedicated_inputs(batch))
      if name == 'depth':
        depth_metrics.update(batch['depth'].numpy(), outputs['depth'].numpy())
      else:
        seg_metrics.update(batch['semantics'], outputs['logits'])
  result = {'origin': origin}
  if 'depth' in models:
    scores = depth_metrics.result()
    result['depth'] = {
        'abs_rel': float(scores['abs_rel']),
        'protocol': depth_metrics.protocol,
    }
  if seg_metrics is not None:
    scores = seg_metrics.result()
    key = next(k for k in scores if k.startswith('miou_movable'))
    result['segmentation'] = {
        'miou_movable': float(scores[key]),
        'classes': [c for c in class_names if c in movable],
        'miou_all': float(scores['miou']),
    }
  return result


def train_and_evaluate(
    scale, name, seed, out_dir, num_steps, extra_files, extra_bindings, eval_batch_size=8
):
  """Trains one run (resuming) and writes its RESULT_FILE atomically; returns the result."""
  import gin  # pylint: disable=g-import-not-at-top

  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  path = run_dir(out_dir, name, seed)
  gin.clear_config()
  try:
    experiment_lib.parse_gin(
        [gin_file(scale, name), *extra_files],
        run_bindings(out_dir, name, seed, num_steps, extra_bindings),
        search_dirs=GIN_SEARCH_DIRS,
    )
    experiment = experiment_lib.Experiment()
    trainer = experiment.build_trainer(path)
    experiment_lib.write_operative_config(path)
    trainer.train()
    result = evaluate_run(experiment, path, scale, eval_batch_size, trainer.models)
  finally:
    gin.clear_config()
  result.update(experiment=name, seed=seed, steps=int(trainer.step.numpy()))
  files.write_json_atomic(os.path.join(path, RESULT_FILE), result, sort_keys=True)
  return result


def with_dependencies(names):
  out = set(names)
  for name in list(out):
    while name in SOURCES:
      name = next(iter(SOURCES[name].values()))
      out.add(name)
  return [n for n in EXPERIMENTS if n in out]


def _mean_stderr(values):
  values = [v for v in values if v is not None]
  if not values:
    return None, None
  mean = sum(values) / len(values)
  if len(values) < 2:
    return mean, None
  var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
  return mean, math.sqrt(var / len(values))


def summarise(results):
  """{experiment: {'depth_abs_rel': (mean, stderr), 'miou_movable': ..., ...}} over seeds."""
  table = {}
  for name in EXPERIMENTS:
    runs = [r for r in results if r['experiment'] == name]
    if not runs:
      continue
    row = {'description': DESCRIPTIONS[name], 'seeds': len(runs)}
    if any('depth' in r for r in runs):
      row['depth_abs_rel'] = _mean_stderr([r.get('depth', {}).get('abs_rel') for r in runs])
      row['depth_protocol'] = runs[0]['depth']['protocol']
      row['depth_origin'] = runs[0]['origin']['depth']
    if any('segmentation' in r for r in runs):
      row['miou_movable'] = _mean_stderr(
          [r.get('segmentation', {}).get('miou_movable') for r in runs]
      )
      row['miou_classes'] = runs[0]['segmentation']['classes']
      row['segmentation_origin'] = runs[0]['origin']['segmentation']
    table[name] = row
  return table


def orderings(table):
  """The paper's orderings, each True / False / None (a row missing)."""

  def m(name, key):
    value = table.get(name, {}).get(key)
    return value[0] if value else None

  def check(fn, *values):
    return None if any(v is None for v in values) else bool(fn(*values))

  e, c, a = m('e', 'depth_abs_rel'), m('c', 'depth_abs_rel'), m('a', 'depth_abs_rel')
  se, sd, sb = m('e', 'miou_movable'), m('d', 'miou_movable'), m('b', 'miou_movable')
  return {
      'depth error E <= C < A': check(lambda e, c, a: e <= c < a, e, c, a),
      'movable mIoU E >= D > B': check(lambda e, d, b: e >= d > b, se, sd, sb),
  }


def _fmt(value):
  if not value or value[0] is None:
    return '-'
  mean, err = value
  return f'{mean:.4f}' + (f' ± {err:.4f}' if err is not None else '')


def markdown(table, order, scale):
  lines = [
      f'Table 1 ({scale} scale), mean ± standard error over seeds',
      '',
      '| | experiment | seeds | depth Abs Rel | movable mIoU |',
      '|---|---|---|---|---|',
  ]
  for name, row in table.items():
    depth = _fmt(row.get('depth_abs_rel'))
    if row.get('depth_origin') == 'frozen':
      depth += f' (frozen from {SOURCES[name]["depth"].upper()})'
    seg = _fmt(row.get('miou_movable'))
    if 'miou_classes' in row:
      seg += f' [{", ".join(row["miou_classes"])}]'
      if row.get('segmentation_origin') == 'frozen':
        seg += f' (frozen from {SOURCES[name]["segmentation"].upper()})'
    lines.append(f'| {name.upper()} | {row["description"]} | {row["seeds"]} | {depth} | {seg} |')
  protocol = next((r['depth_protocol'] for r in table.values() if 'depth_protocol' in r), None)
  lines += ['', f'Depth protocol: {protocol}.' if protocol else '', '']
  for rule, holds in order.items():
    lines.append(f'- {rule}: {"holds" if holds else "n/a" if holds is None else "does not hold"}')
  return '\n'.join(lines) + '\n'


def plot(table, path):
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
  for ax, key, title in (
      (axes[0], 'depth_abs_rel', 'depth Abs Rel (lower is better)'),
      (axes[1], 'miou_movable', 'movable-class mIoU (higher is better)'),
  ):
    names = [n for n, r in table.items() if r.get(key) and r[key][0] is not None]
    means = [table[n][key][0] for n in names]
    errs = [table[n][key][1] or 0.0 for n in names]
    ax.bar([n.upper() for n in names], means, yerr=errs, capsize=4, color='tab:blue')
    ax.set_title(title, fontsize=10)
  classes = next((r['miou_classes'] for r in table.values() if 'miou_classes' in r), [])
  if classes:
    axes[1].set_xlabel('classes: ' + ', '.join(classes), fontsize=8)
  fig.tight_layout()
  files.save_figure_atomic(fig, path)
  plt.close(fig)


def write_outputs(out_dir, results, scale):
  table = summarise(results)
  order = orderings(table)
  os.makedirs(out_dir, exist_ok=True)
  outputs = {
      'table1.json': json.dumps(
          {'scale': scale, 'table': table, 'orderings': order, 'runs': results},
          indent=2,
          sort_keys=True,
      ),
      'table1.md': markdown(table, order, scale),
  }
  for name, text in outputs.items():
    files.write_text_atomic(os.path.join(out_dir, name), text)
  plot(table, os.path.join(out_dir, 'table1.png'))
  return table, order


def main(argv):
  del argv
  unknown = [n for n in FLAGS.experiments if n not in EXPERIMENTS]
  if unknown:
    raise app.UsageError(f'--experiments: unknown {unknown}; choose from {list(EXPERIMENTS)}')
  if FLAGS.seeds < 1:
    raise app.UsageError(f'--seeds must be >= 1, got {FLAGS.seeds}')
  if FLAGS.first_seed < 0:
    raise app.UsageError(f'--first_seed must be >= 0, got {FLAGS.first_seed}')
  names = with_dependencies(FLAGS.experiments)
  seeds = range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds)
  plan = [(n, s) for s in seeds for n in names]
  results, start, trained = [], time.monotonic(), 0
  for i, (name, seed) in enumerate(plan):
    path = run_dir(FLAGS.out_dir, name, seed)
    done = os.path.join(path, RESULT_FILE)
    if os.path.exists(done):
      with open(done) as f:
        results.append(json.load(f))
      print(f'[{i + 1}/{len(plan)}] {name.upper()} seed {seed}: done before, skipped', flush=True)
      continue
    print(f'[{i + 1}/{len(plan)}] {name.upper()} seed {seed}: training in {path}', flush=True)
    results.append(
        train_and_evaluate(
            FLAGS.scale,
            name,
            seed,
            FLAGS.out_dir,
            FLAGS.num_steps,
            FLAGS.extra_gin_file,
            FLAGS.gin_bindings,
            FLAGS.eval_batch_size,
        )
    )
    trained += 1
    elapsed = time.monotonic() - start
    left = len(plan) - i - 1
    print(
        f'[{i + 1}/{len(plan)}] {name.upper()} seed {seed}: {results[-1]}; '
        f'{elapsed:.0f} s so far, ETA {elapsed / trained * left:.0f} s',
        flush=True,
    )
  table, order = write_outputs(FLAGS.out_dir, results, FLAGS.scale)
  print(markdown(table, order, FLAGS.scale), flush=True)
  print(f'wrote {FLAGS.out_dir}/table1.md, table1.json, table1.png', flush=True)
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
