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


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top

  from taskology_tf.networks import dfv_depth  # pylint: disable=g-import-not-at-top
  from taskology_tf.tasks.base import to_float_image  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import frozen  # pylint: disable=g-import-not-at-top

  if FLAGS.max_clips < 1:
    raise ValueError(f'--max_clips must be >= 1, got {FLAGS.max_clips}')
  experiment, task = experiment_for_probe(
      FLAGS.gin_file, FLAGS.gin_bindings, 'depth_task', FLAGS.depth_task
  )
  batch = next(iter(experiment.evaluation_clips().take(FLAGS.max_clips).batch(FLAGS.max_clips)))
  image = to_float_image(batch['image'][:, batch['image'].shape[1] // 2])
  prefixes = FLAGS.checkpoint
  if not prefixes:
    directory = os.path.join(FLAGS.run_dir, 'checkpoints')
    state = tf.train.get_checkpoint_state(directory)
    if state is None:
      raise ValueError(f'--run_dir={FLAGS.run_dir!r}: no checkpoints in {directory}')
    prefixes = list(state.all_model_checkpoint_paths)

  def probe(label, model):
    return {'state': label, 'activity': dfv_depth.decoder_activity(model, image)}

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
