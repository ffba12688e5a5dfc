r"""Can the DfVitW motion network learn the speed at all? Train it on the true translation.

A diagnostic, not a recipe: the experiment's motion network (its gin files: size, widths,
initialiser, translation prior, scales) is trained alone, from its initialisation, on the
synthetic world's ground-truth ego-translation of the experiment's mediator clips (mean squared
error of the forward translation, metres^2; the same optimiser settings as the run: Adam, the
learning rate, the gradient-norm clip, the mediator batch size), and at the recorded steps its
forward translation on the evaluation clips is compared with the truth:

- `speed_slope`: the least-squares slope of log |t_pred| on log |t_gt| over pairs (1: the speed
  is learnt, 0: one speed for every pair; metrics/egomotion_errors.summarise), and
  `speed_corr`, their correlation;
- `translation_mse`: the mean squared error of the forward translation on the evaluation clips;
- `prediction_log_std`: the spread of log |t_pred| over pairs (0: one speed);
- `train_mse`: the training batches' mean loss since the previous record;
- `scale/rotation`, `scale/translation`: the DfVitW network's learnt output scales.

If the network does not learn the speed from its true value within the steps a run trains, the
self-supervised objective cannot be what keeps it from learning it (README, "the speed it does
not teach"). Writes JSON (with the command) and a markdown table beside it.

  python tools/dfv_motion_supervised_probe.py --gin_file=gin/experiments/synthetic/table1_a.gin \
      --gin_file=gin/options/dfv_forward_prior.gin --gin_bindings="DATA_DIR='/work/data_demo'" \
      --steps=1000 --output=runs/motion_supervised/probe.json
"""

import json
import os
import shlex
import sys

from absl import flags

from taskology_tf import files
import taskology_tf_tools
from taskology_tf_tools import experiment_for_probe

flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s) of the experiment.')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings applied after the files.')
flags.DEFINE_string('motion_task', 'motion', "Name of the experiment's DfV motion task.")
flags.DEFINE_integer('steps', 1000, 'Adam steps on the true translation.')
flags.DEFINE_list('record_at', ['0', '250', '500', '1000'], 'Steps at which to evaluate.')
flags.DEFINE_integer('max_clips', 100, 'Evaluation clips.')
flags.DEFINE_integer('seed', 0, 'Seed of the initialisation and the data order.')
flags.DEFINE_list(
    'plain_cnn_filters',
    [],
    "A reference network instead of the experiment's: the stacked pair through these 3x3 "
    'stride-2 ReLU convolutions (He-normal), a global mean and a dense layer to the translation '
    "(plus the task's translation_prior). Same data, loss and optimiser: tells the network "
    'from the pipeline.',
)
flags.DEFINE_string('output', None, 'Write the results as JSON here (and .md beside it).')
flags.mark_flag_as_required('output')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top

  from taskology_tf.metrics import egomotion_errors  # pylint: disable=g-import-not-at-top
  from taskology_tf.tasks.base import to_float_image  # pylint: disable=g-import-not-at-top

  record_at = taskology_tf_tools.parse_record_at(FLAGS.record_at, FLAGS.steps)
  try:
    plain_filters = [int(f) for f in FLAGS.plain_cnn_filters]
  except ValueError as e:
    raise ValueError(
        f'--plain_cnn_filters must be integers >= 1, got {FLAGS.plain_cnn_filters}'
    ) from e
  if any(f < 1 for f in plain_filters):
    raise ValueError(f'--plain_cnn_filters must be integers >= 1, got {plain_filters}')
  if FLAGS.max_clips < 1:
    raise ValueError(f'--max_clips must be >= 1, got {FLAGS.max_clips}')
  experiment, task = experiment_for_probe(
      FLAGS.gin_file, FLAGS.gin_bindings, 'motion_task', FLAGS.motion_task
  )
  if task.input_tasks:
    raise ValueError(
        f'--motion_task={FLAGS.motion_task!r} takes the predictions of {task.input_tasks} as '
        'inputs; this probe trains the motion network alone'
    )
  for source, name in ((experiment.mediator_clips, 'mediator'), (experiment.evaluation_clips, '')):
    if source is None or 'egomotion' not in source().element_spec:
      raise ValueError(
          f'{FLAGS.gin_file}: the {name or "evaluation"} clips carry no ground-truth '
          '"egomotion"; probe on synthetic-world clips'
      )
  keras.utils.set_random_seed(FLAGS.seed)
  # First after seeding: the initialisation depends on the seed only.
  if FLAGS.plain_cnn_filters:
    model = _plain_cnn(task, plain_filters)
  else:
    model = task.build_network()
  train = (
      experiment.mediator_clips()
      .repeat()
      .shuffle(256, seed=FLAGS.seed)
      .batch(experiment.mediator_batch_size, drop_remainder=True)
  )
  eval_batches = list(experiment.evaluation_clips().take(FLAGS.max_clips).batch(10))
  optimizer = experiment.config(FLAGS.motion_task).optimizer()

  def forward_translation(image, training):
    if FLAGS.plain_cnn_filters:
      pairs = task.serving_inputs({'image': image})
      a, b = (to_float_image(pairs[k]) for k in ('image_a', 'image_b'))
      t = model([a, b], training=training)
      if task.translation_prior is not None:
        t = t + tf.constant(task.translation_prior, tf.float32)
      return tf.reshape(t, [tf.shape(image)[0], -1, 3])
    return task.predict_mediator(model, {'image': image}, training=training)['translation']

  @tf.function
  def step(image, egomotion):
    with tf.GradientTape() as tape:
      error = forward_translation(image, True) - tf.cast(egomotion[..., :3, 3], tf.float32)
      loss = tf.reduce_mean(tf.square(error))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None]
    )
    return loss

  predict = tf.function(lambda image: forward_translation(image, False))

  def evaluate():
    pred, true = [], []
    for batch in eval_batches:
      pred.append(predict(batch['image']).numpy().reshape(-1, 3))
      true.append(batch['egomotion'][..., :3, 3].numpy().reshape(-1, 3))
    pred, true = np.concatenate(pred).astype(np.float64), np.concatenate(true).astype(np.float64)
    eye = np.tile(np.eye(3), (len(pred), 1, 1))
    summary = egomotion_errors.summarise(
        egomotion_errors.compare_egomotion(eye, pred, eye, true, eye)
    )
    norms = np.linalg.norm(pred, axis=-1)
    # The DfVitW network's learnt output scales (scale/rotation, scale/translation): a
    # translation scale pressed to its floor (0.001) leaves the network one speed.
    scales = {} if FLAGS.plain_cnn_filters else task.scalar_summaries(model)
    return {
        **scales,
        'speed_slope': summary['speed_slope'],
        'speed_corr': summary['speed_corr'],
        'translation_mse': float(np.mean(np.square(pred - true))),
        'prediction_log_std': float(np.std(np.log(np.maximum(norms, 1e-12)))),
        'true_log_std': summary['true_translation_log_std'],
    }

  records = {}
  iterator = iter(train)
  if 0 in record_at:
    records['0'] = evaluate()
    print(0, json.dumps(records['0']), flush=True)
  losses = []
  for s in range(1, FLAGS.steps + 1):
    batch = next(iterator)
    losses.append(step(batch['image'], batch['egomotion']))
    if s in record_at:
      # The training batches' MSE since the last record: falling while the evaluation's does
      # not means the network fits its training pairs without measuring the speed.
      records[str(s)] = {**evaluate(), 'train_mse': float(tf.reduce_mean(tf.stack(losses)))}
      losses = []
      print(s, json.dumps(records[str(s)]), flush=True)
  command = 'python tools/dfv_motion_supervised_probe.py ' + shlex.join(sys.argv[1:])
  out = {'records': records, 'command': command, 'task': task.name}
  files.write_json_atomic(FLAGS.output, out, sort_keys=True)
  lines = [
      f'Motion network trained on the true translation (`{command}`).',
      '',
      '| step | speed slope (1: learnt, 0: one speed) | speed corr | translation MSE (m^2) | '
      'training MSE since the last row | std of log norm(t_pred) (truth) | translation scale |',
      '|---|---|---|---|---|---|---|',
  ]
  for s, r in records.items():
    train_mse = f"{r['train_mse']:.4f}" if 'train_mse' in r else '-'
    scale = f"{r['scale/translation']:.4f}" if 'scale/translation' in r else '-'
    lines.append(
        f"| {s} | {r['speed_slope']:.3f} | {r['speed_corr']:.3f} | {r['translation_mse']:.4f} "
        f"| {train_mse} | {r['prediction_log_std']:.3f} ({r['true_log_std']:.3f}) | {scale} |"
    )
  text = '\n'.join(lines) + '\n'
  files.write_text_atomic(os.path.splitext(FLAGS.output)[0] + '.md', text)
  print(text)
  return 0


def _plain_cnn(task, filters):
  """The reference regressor of --plain_cnn_filters: (image_a, image_b) -> translation [B, 3]."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top

  a = keras.Input((task.height, task.width, 3), name='image_a')
  b = keras.Input((task.height, task.width, 3), name='image_b')
  x = keras.layers.Concatenate()([a, b])
  for f in filters:
    x = keras.layers.Conv2D(f, 3, 2, 'same', activation='relu', kernel_initializer='he_normal')(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model([a, b], keras.layers.Dense(3)(x), name='plain_cnn')


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
