r"""Detects the trivial solution of the depth-normals relation (Eq. 6) in a trained run.

Constant (fronto-parallel) depth with normals facing the camera satisfies Eq. 6 exactly; networks
that can tell the mediator domain apart can fall into it there. This prints, on the run's
evaluation data, the fraction of pixels whose predicted normal faces the camera (n_z < -0.95) and
the per-image relative spread of predicted depth (std / mean), each beside the ground truth's.

  python tools/prediction_stats.py --gin_file=gin/experiments/synthetic/depth_normals_sim2real.gin \
      --run_dir=runs/table3_synthetic/consistency/seed_2
"""

import json
import sys

from absl import flags

import taskology_tf_tools
from taskology_tf_tools import GIN_SEARCH_DIRS

flags.DEFINE_multi_string('gin_file', [], 'Gin file(s) of the run.')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.')
flags.DEFINE_multi_string('run_dir', [], 'Run directories (repeatable).')
flags.DEFINE_float('max_depth', 80.0, 'Pixels with gt depth >= this (sky) are ignored.')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import numpy as np

  from taskology_tf.training import experiment as experiment_lib

  experiment_lib.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings, search_dirs=GIN_SEARCH_DIRS)
  experiment = experiment_lib.Experiment()
  out = {}
  for run_dir in FLAGS.run_dir:
    trainer = experiment.build_trainer(run_dir)
    trainer.restore()
    facing, facing_gt, spread, spread_gt, count = 0.0, 0.0, [], [], 0
    for batch in trainer.evaluation:
      gt = batch['depth'].numpy()[..., 0]
      mask = gt < FLAGS.max_depth
      depth = (
          trainer.setups['depth']
          .task.call(trainer.models['depth'], {'image': batch['image']})['depth']
          .numpy()[..., 0]
      )
      normals = (
          trainer.setups['normals']
          .task.call(trainer.models['normals'], {'image': batch['image']})['normals']
          .numpy()
      )
      facing += np.sum(normals[mask][:, 2] < -0.95)
      facing_gt += np.sum(batch['normals'].numpy()[mask][:, 2] < -0.95)
      count += mask.sum()
      for i in range(len(gt)):
        if mask[i].any():
          spread.append(depth[i][mask[i]].std() / depth[i][mask[i]].mean())
          spread_gt.append(gt[i][mask[i]].std() / gt[i][mask[i]].mean())
    out[run_dir] = {
        'normals_facing_camera': facing / count,
        'normals_facing_camera_gt': facing_gt / count,
        'depth_relative_spread': float(np.mean(spread)),
        'depth_relative_spread_gt': float(np.mean(spread_gt)),
    }
  print(json.dumps(out, indent=2))
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
