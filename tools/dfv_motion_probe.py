r"""How close a trained motion network's ego-motion is to the synthetic world's ground truth.

Loads the motion task of a run (its gin files and its latest checkpoint, as a frozen task is
loaded), predicts both frame orders for every consecutive pair of the experiment's evaluation
clips (synthetic-world clips carry the ground truth; the `real` test split in our gin files),
and compares the forward ego-motion with the ground truth `egomotion` (cam_{t+1}_from_cam_t):

- `rotation_error_deg`: the angle of R_pred^T R_gt, mean over pairs (against `rotation_deg`,
  the ground truth's own angle, which is what a zero rotation would score);
- `translation_direction_error_deg`: the angle between the predicted and the true translation,
  over pairs whose true translation is at least 1 mm (scale-free: self-supervised motion is known
  up to the depth's scale);
- `translation_scale_ratio`: |t_pred| / |t_gt|, its median and the spread of its log over pairs
  (std): a depth network learns the scale the translation implies, so a spread in this ratio is
  a spread of depth scale between clips, which per-image median scaling hides;
- `cycle_rotation_error_deg`: the angle of R_backward R_forward (zero for motions that are each
  other's inverse);
- `outliers`: what the pairs whose direction is off by more than 30 deg share, where the clips
  carry the synthetic world's labels: the means over those pairs and over the others of frame
  t's movable-pixel (car, pedestrian) and sky fractions, its median true depth, the mean true
  object-motion magnitude over its movable pixels, and the pair's true |t| and rotation angle.
  The per-pair rows go to `<output>_pairs.csv`.

Results as JSON (and a markdown table) in --output, with the command that wrote them.

  python tools/dfv_motion_probe.py --run_dir=runs/dfv_counted \
      --gin_file=gin/experiments/synthetic/dfv_depth_motion_counted.gin \
      --gin_bindings="DATA_DIR='/work/data_demo'" --output=runs/dfv_counted/motion_probe.json
"""

import json
import os
import shlex
import sys

from absl import flags

from taskology_tf import files
from taskology_tf.metrics.egomotion_errors import compare_egomotion
from taskology_tf.metrics.egomotion_errors import markdown
from taskology_tf.metrics.egomotion_errors import outlier_markdown
from taskology_tf.metrics.egomotion_errors import outlier_profile
from taskology_tf.metrics.egomotion_errors import summarise
import taskology_tf_tools
from taskology_tf_tools import experiment_for_probe

flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s) of the run.')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings applied after the files.')
flags.DEFINE_string('run_dir', None, 'Run directory (its checkpoints/) or a checkpoint prefix.')
flags.DEFINE_string('motion_task', 'motion', "Name of the run's DfV motion task.")
flags.DEFINE_integer('max_clips', 100, 'Clips to probe on.')
flags.DEFINE_integer('batch_size', 10, 'Clips per batch.')
flags.DEFINE_string('output', None, 'Write the results as JSON here (and .md beside it).')
flags.mark_flag_as_required('run_dir')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets.synthetic_world import scene  # pylint: disable=g-import-not-at-top
  from taskology_tf.geometry import transforms  # pylint: disable=g-import-not-at-top
  from taskology_tf.tasks import base as task_base  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import frozen  # pylint: disable=g-import-not-at-top

  if FLAGS.max_clips < 1 or FLAGS.batch_size < 1:
    raise ValueError(
        f'--max_clips and --batch_size must be >= 1, got {FLAGS.max_clips}, {FLAGS.batch_size}'
    )
  experiment, task = experiment_for_probe(
      FLAGS.gin_file, FLAGS.gin_bindings, 'motion_task', FLAGS.motion_task
  )
  clips = experiment.evaluation_clips()
  if 'egomotion' not in clips.element_spec:
    raise ValueError(
        f'{FLAGS.gin_file}: the evaluation clips carry no ground-truth "egomotion" (they have '
        f'{sorted(clips.element_spec)}); probe on synthetic-world clips'
    )
  clips = clips.take(FLAGS.max_clips).batch(FLAGS.batch_size)
  model, info = frozen.load_frozen_network(task, FLAGS.run_dir)
  # A motion network fed predicted depth (DfvMotionTask.depth_input_task) gets the run's own
  # depth network's predictions, as in training.
  tasks, models = {task.name: task}, {task.name: model}
  for up in task.input_tasks:
    tasks[up] = experiment.config(up).task
    models[up], _ = frozen.load_frozen_network(tasks[up], FLAGS.run_dir)
  predict = tf.function(
      lambda image: task_base.predict_in_order(tasks, models, {'image': image})[task.name]
  )
  parts = {k: [] for k in ('pred_r', 'pred_t', 'gt_r', 'gt_t', 'back_r')}
  labelled = all(k in clips.element_spec for k in ('semantics', 'depth', 'object_motion'))
  attributes = {}
  for batch in clips:
    if labelled:
      for k, v in _pair_attributes(batch, scene, np).items():
        attributes.setdefault(k, []).append(v)
    out = predict(batch['image'])
    parts['pred_r'].append(transforms.axis_angle_to_matrix(out['rotation']).numpy())
    parts['back_r'].append(transforms.axis_angle_to_matrix(out['rotation_backward']).numpy())
    parts['pred_t'].append(out['translation'].numpy())
    parts['gt_r'].append(batch['egomotion'][..., :3, :3].numpy())
    parts['gt_t'].append(batch['egomotion'][..., :3, 3].numpy())
  flat = {k: np.concatenate(v).reshape((-1,) + v[0].shape[2:]) for k, v in parts.items()}
  errors = compare_egomotion(
      flat['pred_r'], flat['pred_t'], flat['gt_r'], flat['gt_t'], flat['back_r']
  )
  summary = summarise(errors)
  rows = None
  if labelled:
    moving = errors['moving']
    per_pair = {k: np.concatenate(v).reshape(-1)[moving] for k, v in attributes.items()}
    per_pair['true_translation_m'] = errors['true_translation_norm']
    per_pair['true_rotation_deg'] = errors['rotation_deg'][moving]
    summary['outliers'] = outlier_profile(errors['translation_direction_error_deg'], per_pair)
    rows = {'direction_error_deg': errors['translation_direction_error_deg'], **per_pair}
  summary.update(
      checkpoint=info['source'],
      step=info['step'],
      data=f"the experiment's evaluation clips, {FLAGS.max_clips} at most",
      command='python tools/dfv_motion_probe.py ' + shlex.join(sys.argv[1:]),
  )
  print(json.dumps(summary, indent=2))
  text = markdown(summary)
  if 'outliers' in summary:
    text += '\n' + outlier_markdown(summary['outliers'])
  print(text)
  if FLAGS.output:
    stem = os.path.splitext(FLAGS.output)[0]
    files.write_json_atomic(FLAGS.output, summary, sort_keys=True)
    files.write_text_atomic(stem + '.md', text)
    if rows is not None:
      names = list(rows)
      lines = [','.join(names)] + [
          ','.join(f'{rows[n][i]:.6g}' for n in names)
          for i in range(len(rows['direction_error_deg']))
      ]
      files.write_text_atomic(stem + '_pairs.csv', '\n'.join(lines) + '\n')
  return 0


def _pair_attributes(batch, scene, np):
  """Per pair (t, t+1) of a batch of clips, properties of frame t: {name: [B, T-1]}."""
  labels = batch['semantics'].numpy()[:, :-1]
  if labels.ndim == 5:
    labels = labels[..., 0]
  movable = np.isin(labels, scene.MOVABLE_CLASSES)
  depth = batch['depth'].numpy()[:, :-1, ..., 0]
  speed = np.linalg.norm(batch['object_motion'].numpy(), axis=-1)
  moving_pixels = np.maximum(movable.sum(axis=(2, 3)), 1)
  return {
      'movable_fraction': movable.mean(axis=(2, 3)),
      'sky_fraction': (labels == scene.SKY).mean(axis=(2, 3)),
      'median_depth_m': np.median(depth.reshape(depth.shape[:2] + (-1,)), axis=-1),
      'object_motion_m': (speed * movable).sum(axis=(2, 3)) / moving_pixels,
  }


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
