r"""The value each consistency relation takes on ground truth: its floor on a dataset.

A relation whose ground truth is not its minimum (occlusion boundaries, discretisation, sensor
noise) pulls predictions away from the truth once they get close; comparing this floor with the
value a trained run reaches tells whether the networks "over-agree".

  python tools/relation_floor.py --domain=real --split=test --height=48 --width=64

Relations scored: depth-normals (Eq. 6) on ground-truth depth and normals; photometric (Eq. 3)
on ground-truth depth, ego-motion and object motion.
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
flags.DEFINE_float('max_depth', 80.0, 'Depth-normals relation max_depth (as in the gin files).')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import numpy as np
  import tensorflow as tf

  from taskology_tf.consistency.depth_normals import DepthNormalsConsistency
  from taskology_tf.consistency.photometric import PhotometricConsistency
  from taskology_tf.datasets.loader import load_synthetic_world
  from taskology_tf.geometry import transforms

  clips = load_synthetic_world(
      FLAGS.domain, FLAGS.split, FLAGS.data_dir, FLAGS.height, FLAGS.width
  ).batch(16)
  depth_normals = DepthNormalsConsistency(max_depth=FLAGS.max_depth)
  photometric = PhotometricConsistency()
  sums = {'depth_normals': [], 'photometric': [], 'photometric_static_scene': []}
  for b in clips:
    batch = {'image': tf.cast(b['image'], tf.float32) / 255.0, 'intrinsics': b['intrinsics']}
    loss, _ = depth_normals(
        {'depth': {'depth': b['depth']}, 'normals': {'normals': b['normals']}}, batch
    )
    sums['depth_normals'].append(float(loss))
    motion = {
        'rotation': transforms.matrix_to_axis_angle(b['egomotion'][..., :3, :3]),
        'translation': b['egomotion'][..., :3, 3],
    }
    loss, _ = photometric(
        {
            'depth': {'depth': b['depth']},
            'egomotion': {**motion, 'object_motion': b['object_motion']},
        },
        batch,
    )
    sums['photometric'].append(float(loss))
    loss, _ = photometric({'depth': {'depth': b['depth']}, 'egomotion': motion}, batch)
    sums['photometric_static_scene'].append(float(loss))
  result = {k: float(np.mean(v)) for k, v in sums.items()}
  result['command'] = 'python tools/relation_floor.py ' + shlex.join(sys.argv[1:])
  print(json.dumps(result, indent=2))
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
