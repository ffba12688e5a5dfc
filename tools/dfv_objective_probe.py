r"""How well the DfVitW objective tells good depth from bad on ground truth (no networks).

Scores `DfvConsistency` (+ the weighted depth-smoothness term) on synthetic-world clips with the
ground-truth ego-motion (and object motion as the residual field, no mask), for depth variants:
the ground truth, the ground truth blurred by a 9x9 box filter, a constant depth per frame (its
median), the ground truth doubled and halved, and the ground truth with zero motion. An
objective whose value barely moves between the ground truth and a blurred or constant depth
cannot drive depth towards the truth.

  python tools/dfv_objective_probe.py --domain=real --split=test --height=48 --width=64 \
      --data_dir=/work/data_demo
"""

import json
import shlex
import sys

from absl import flags

import taskology_tf_tools  # noqa: F401  (quiet TF start-up)

flags.DEFINE_string('domain', 'real', 'sim or real.')
flags.DEFINE_string('split', 'test', 'TFDS split.')
flags.DEFINE_integer('height', 48, 'Built config height.')
flags.DEFINE_integer('width', 64, 'Built config width.')
flags.DEFINE_string('data_dir', 'data/tensorflow_datasets', 'TFDS data dir.')
flags.DEFINE_float('smoothness_weight', 0.01, 'Weight of DfvDepthSmoothness (gin default).')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import numpy as np
  import tensorflow as tf

  from taskology_tf.consistency import dfv
  from taskology_tf.datasets.loader import load_synthetic_world
  from taskology_tf.geometry import transforms

  clips = load_synthetic_world(
      FLAGS.domain, FLAGS.split, FLAGS.data_dir, FLAGS.height, FLAGS.width
  ).batch(10)
  consistency = dfv.DfvConsistency()
  smoothness = dfv.DfvDepthSmoothness()

  def blur(depth):
    shape = tf.shape(depth)
    flat = tf.reshape(depth, tf.concat([[-1], shape[2:]], 0))
    padded = tf.pad(flat, [[0, 0], [4, 4], [4, 4], [0, 0]], mode='SYMMETRIC')
    out = tf.nn.avg_pool2d(padded, 9, 1, 'VALID')
    return tf.reshape(out, shape)

  def constant(depth):
    flat = tf.reshape(depth, tf.concat([tf.shape(depth)[:2], [-1]], 0)).numpy()
    median = np.median(flat, axis=-1)[:, :, None, None, None]
    return tf.ones_like(depth) * median

  variants = {
      'ground_truth': lambda d: d,
      'blurred_9x9': blur,
      'constant_median': constant,
      'doubled': lambda d: 2.0 * d,
      'halved': lambda d: 0.5 * d,
  }
  sums = {name: [] for name in list(variants) + ['zero_motion', 'static_scene']}
  terms = {name: {} for name in sums}
  for b in clips:
    batch = {'image': tf.cast(b['image'], tf.float32) / 255.0, 'intrinsics': b['intrinsics']}
    rot = b['egomotion'][..., :3, :3]
    trans = b['egomotion'][..., :3, 3]
    rot_inv = tf.linalg.matrix_transpose(rot)
    motion = {
        'rotation': transforms.matrix_to_axis_angle(rot),
        'translation': trans,
        'residual_translation': b['object_motion'],
        'rotation_backward': transforms.matrix_to_axis_angle(rot_inv),
        'translation_backward': -tf.linalg.matvec(rot_inv, trans),
        # Backward object motion ~ -R^T m at the same pixel (base.warp_consecutive_frames).
        'residual_translation_backward': -tf.linalg.matvec(
            rot_inv[:, :, tf.newaxis, tf.newaxis], b['object_motion']
        ),
    }
    zero = {k: tf.zeros_like(v) for k, v in motion.items()}
    static = dict(motion)
    static['residual_translation'] = tf.zeros_like(b['object_motion'])
    static['residual_translation_backward'] = tf.zeros_like(b['object_motion'])
    cases = {name: (fn(b['depth']), motion) for name, fn in variants.items()}
    cases['zero_motion'] = (b['depth'], zero)
    cases['static_scene'] = (b['depth'], static)
    for name, (depth, m) in cases.items():
      preds = {'depth': {'depth': depth}, 'motion': m}
      loss, metrics = consistency(preds, batch)
      smooth, _ = smoothness(preds, batch)
      sums[name].append(float(loss + FLAGS.smoothness_weight * smooth))
      for k, v in metrics.items():
        terms[name].setdefault(k, []).append(float(v))
      terms[name].setdefault('depth_smoothness', []).append(float(smooth))
  result = {
      name: {
          'objective': float(np.mean(v)),
          **{k: float(np.mean(t)) for k, t in terms[name].items()},
      }
      for name, v in sums.items()
  }
  result['command'] = 'python tools/dfv_objective_probe.py ' + shlex.join(sys.argv[1:])
  print(json.dumps(result, indent=2))
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
