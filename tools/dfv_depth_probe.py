r"""Whether a DfVitW depth network's decoder is alive: the plateau's mechanism, per checkpoint.

For the depth task of a run, at initialisation (the experiment's seed) and at every checkpoint
the run keeps (or those given by --checkpoint), on the experiment's evaluation clips (middle
frame, at inference):

- per decoder convolution (upconv5 ... iconv1), the fraction of units with a positive
  pre-activation: a ReLU unit at or below zero passes no gradient, so a layer near 0 has
  silenced the decoder (networks/dfv_depth.decoder_activity);
- `output_spread`: the depth map's standard deviation over pixels / its mean (0: constant);
- `output_mean`: the mean predicted depth (softplus(0) = ln 2 = 0.693 for a silenced decoder
  with a zero head bias).

A constant-depth plateau whose last decoder layers are near 0 is the dead-ReLU collapse that
`DfvDepthTask.decoder_leaky_slope` addresses (README, "Why the depth waits").

With --breakdown, also where each state's depth error lies: the task's own prediction (as its
evaluation makes it: flip averaging, the task's max_depth and median scaling), its pixel-pooled
Abs Rel per semantic class of the clips' `semantics` (--class_names) and per ground-truth depth
bin (--depth_bins, metres), with each group's share of the valid pixels
(`metrics.depth.abs_rel_by_group`: share * Abs Rel summed over groups is the whole Abs Rel).
Where the clips carry `egomotion`, also whether each image's depth scale follows the clip's
true speed (`metrics.depth.median_scale_vs_speed`: slope 0, a consistent scale; 1, the depth
scaled by 1 / speed). To probe training clips, bind the evaluation clips' split, e.g.
--gin_bindings="real_test/synthetic_world_clips.split='train[50%:]'" for Table 1's.

  python tools/dfv_depth_probe.py --run_dir=runs/table1/a/seed_1 \
      --gin_file=gin/experiments/synthetic/table1_a.gin --gin_bindings="DATA_DIR='/work/data_demo'" \
      --output=runs/table1/a/seed_1/depth_probe.json
"""

import os
import shlex
import sys

from absl import flags

from taskology_tf import files
import taskology_tf_tools
from taskology_tf_tools import experiment_for_probe

flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s) of the run.')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings applied after the files.')
flags.DEFINE_string('run_dir', None, 'Run directory (its checkpoints/ are probed).')
flags.DEFINE_multi_string(
    'checkpoint', [], 'Checkpoint prefixes to probe instead of every one in run_dir.'
)
flags.DEFINE_string('depth_task', 'depth', "Name of the run's DfV depth task.")
flags.DEFINE_integer('max_clips', 16, 'Evaluation clips to probe on.')
flags.DEFINE_bool('breakdown', False, 'Also break the depth error down by class and depth bin.')
flags.DEFINE_list(
    'class_names',
    ['sky', 'ground', 'building', 'car', 'pedestrian'],
    "Names of the `semantics` labels 0, 1, ... (the synthetic world's).",
)
flags.DEFINE_list(
    'depth_bins', ['0', '5', '10', '20', '40', '80'], 'Ground-truth depth bin edges (m).'
)
flags.DEFINE_string('output', None, 'Write the results as JSON here (and .md beside it).')
flags.mark_flag_as_required('run_dir')
FLAGS = flags.FLAGS


def markdown(rows):
  """The probe's rows (one per network state) as a markdown table."""
  layers = [k for k in rows[0]['activity'] if not k.startswith('output_')]
  lines = [
      '| state | ' + ' | '.join(layers) + ' | output spread | output mean |',
      '|' + '---|' * (len(layers) + 3),
  ]
  for row in rows:
    cells = [f"{row['activity'][k]:.4f}" for k in layers]
    lines.append(
        f"| {row['state']} | "
        + ' | '.join(cells)
        + f" | {row['activity']['output_spread']:.4g} | {row['activity']['output_mean']:.4g} |"
    )
  return '\n'.join(lines) + '\n'


def breakdown_markdown(rows):
  """The rows' error breakdowns (abs_rel and share per group) as one markdown table."""
  groups = list(rows[0]['breakdown'])
  lines = [
      '| state | all | ' + ' | '.join(groups) + ' |',
      '|' + '---|' * (len(groups) + 2),
  ]
  for row in rows:
    b = row['breakdown']
    cells = [f"{b[g]['abs_rel']:.3f} ({b[g]['share']:.0%})" for g in groups]
    lines.append(f"| {row['state']} | {row['abs_rel']:.3f} | " + ' | '.join(cells) + ' |')
  return (
      '\n'.join(lines)
      + '\n\nEach cell: the pixel-pooled median-scaled Abs Rel of the group (its share of the valid'
      ' pixels).\n'
  )


def scale_markdown(rows):
  """The rows' depth-scale-vs-speed regressions as a markdown table."""
  lines = [
      '| state | slope of log(median scale) on log(speed) | corr | std of log scale |',
      '|---|---|---|---|',
  ]
  for row in rows:
    r = row['scale_vs_speed']
    lines.append(
        f"| {row['state']} | {r['slope']:.3f} | {r['corr']:.3f} | {r['std_log_scale']:.3f} |"
    )
  return (
      '\n'.join(lines)
      + '\n\nslope 0: one depth scale whatever the speed (the motion carries it); 1: each '
      'depth scaled by 1 / speed (the depth absorbs it).\n'
  )


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top

  from taskology_tf.metrics.depth import abs_rel_by_group  # pylint: disable=g-import-not-at-top
  from taskology_tf.metrics.depth import DepthMetrics  # pylint: disable=g-import-not-at-top
  from taskology_tf.metrics.depth import median_scale_vs_speed  # pylint: disable=g-import-not-at-top
  from taskology_tf.networks import dfv_depth  # pylint: disable=g-import-not-at-top
  from taskology_tf.tasks.base import to_float_image  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import frozen  # pylint: disable=g-import-not-at-top

  if FLAGS.max_clips < 1:
    raise ValueError(f'--max_clips must be >= 1, got {FLAGS.max_clips}')
  try:
    edges = [float(e) for e in FLAGS.depth_bins]
  except ValueError as e:
    raise ValueError(f'--depth_bins must be numbers, got {FLAGS.depth_bins}') from e
  if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
    raise ValueError(f'--depth_bins must be >= 2 increasing edges, got {FLAGS.depth_bins}')
  experiment, task = experiment_for_probe(
      FLAGS.gin_file, FLAGS.gin_bindings, 'depth_task', FLAGS.depth_task
  )
  batch = next(iter(experiment.evaluation_clips().take(FLAGS.max_clips).batch(FLAGS.max_clips)))
  middle = batch['image'].shape[1] // 2
  image = to_float_image(batch['image'][:, middle])
  if FLAGS.breakdown:
    for key in ('depth', 'semantics'):
      if key not in batch:
        raise ValueError(
            f'--breakdown: the evaluation clips of {FLAGS.gin_file} have no {key!r}; got '
            f'{sorted(batch)}'
        )
    gt = np.asarray(batch['depth'][:, middle], np.float64)
    semantics = np.asarray(batch['semantics'][:, middle])
    if semantics.max() >= len(FLAGS.class_names):
      raise ValueError(
          f'--class_names: {len(FLAGS.class_names)} names, but `semantics` has label '
          f'{semantics.max()}'
      )
    bins = np.clip(np.digitize(gt, edges[1:-1]), 0, len(edges) - 2)
    speed = None
    if 'egomotion' in batch:  # [B, T-1, 4, 4]: the clip's mean step length.
      speed = np.linalg.norm(np.asarray(batch['egomotion'])[..., :3, 3], axis=-1).mean(axis=1)
    bin_names = [f'{a:g}-{b:g} m' for a, b in zip(edges, edges[1:])]
  prefixes = FLAGS.checkpoint
  if not prefixes:
    directory = os.path.join(FLAGS.run_dir, 'checkpoints')
    state = tf.train.get_checkpoint_state(directory)
    if state is None:
      raise ValueError(f'--run_dir={FLAGS.run_dir!r}: no checkpoints in {directory}')
    prefixes = list(state.all_model_checkpoint_paths)

  def probe(label, model):
    row = {'state': label, 'activity': dfv_depth.decoder_activity(model, image)}
    if FLAGS.breakdown:
      pred = np.asarray(task.call(model, {'image': batch['image'][:, middle]})['depth'])
      metrics = DepthMetrics(max_depth=task.max_depth, median_scaling=task.median_scaling)
      metrics.update(gt, pred)
      row['abs_rel'] = metrics.result()['abs_rel']
      if speed is not None:
        row['scale_vs_speed'] = median_scale_vs_speed(gt, pred, speed, max_depth=task.max_depth)
      row['breakdown'] = {}
      for names, labels in ((FLAGS.class_names, semantics), (bin_names, bins)):
        out = abs_rel_by_group(
            gt,
            pred,
            labels,
            len(names),
            max_depth=task.max_depth,
            median_scaling=task.median_scaling,
        )
        for i, name in enumerate(names):
          row['breakdown'][name] = {
              'abs_rel': float(out['abs_rel'][i]),
              'share': float(out['share'][i]),
          }
    return row

  tf_keras.utils.set_random_seed(experiment.seed)
  rows = [probe('init', task.build_network())]
  for prefix in prefixes:
    model, info = frozen.load_frozen_network(task, prefix)
    rows.append(probe(f"step {info['step']}", model))
  result = {
      'rows': rows,
      'data': f"the experiment's evaluation clips, {FLAGS.max_clips} at most, middle frame",
      'command': 'python tools/dfv_depth_probe.py ' + shlex.join(sys.argv[1:]),
  }
  text = markdown(rows)
  if FLAGS.breakdown:
    text += '\n' + breakdown_markdown(rows)
    if 'scale_vs_speed' in rows[0]:
      text += '\n' + scale_markdown(rows)
  print(text)
  if FLAGS.output:
    files.write_json_atomic(FLAGS.output, result, sort_keys=True)
    files.write_text_atomic(os.path.splitext(FLAGS.output)[0] + '.md', text)
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
