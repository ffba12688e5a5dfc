r"""Per-image log-depth statistics of ground truth and of a trained depth network.

Measures what `AnchoredDepthNormalsConsistency` (consistency/depth_normals_anchored.py) anchors to:
per image, the mean m_i and the standard deviation s_i of log depth over the pixels below
--max_depth. On the experiment's evaluation clips (rebind `real_test/synthetic_world_clips` to
read another domain or split), it prints for the ground truth the mean over images of m_i and
s_i and quantiles of s_i, and for each --run_dir the same for the run's depth predictions (over
the pixels the relation counts: predicted depth below --max_depth), the mean log ratio
log(pred / gt) over valid ground-truth pixels (the scale error), Abs Rel with and without
per-image median scaling (how much of the error is scale), and the mean angle between the normals
the predicted depth implies (geometry/normals.py, what Eq. 6 compares) and the ground-truth
normals, beside the normals network's own mean angle (which of the two could teach the other).

  python tools/depth_statistics.py \
      --gin_file=gin/experiments/synthetic/depth_normals_baseline.gin \
      --gin_bindings="DATA_DIR='/work/data_demo'" \
      --gin_bindings="real_test/synthetic_world_clips.domain='sim'" \
      --gin_bindings="real_test/synthetic_world_clips.split='train[:50%]'"
"""

import json
import sys

from absl import flags

import taskology_tf_tools
from taskology_tf_tools import GIN_SEARCH_DIRS

flags.DEFINE_multi_string('gin_file', [], 'Gin file(s) of the experiment.')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.')
flags.DEFINE_multi_string('run_dir', [], 'Run directories whose depth network is measured.')
flags.DEFINE_float('max_depth', 80.0, 'Pixels at or beyond this depth (sky) are ignored.')
flags.DEFINE_integer('max_batches', 0, 'Stop after this many evaluation batches (0: all).')
FLAGS = flags.FLAGS


def _moments(log_depth, mask):
  """Per-image (mean, population std) of log depth over mask; None without pixels."""
  import numpy as np

  if not mask.any():
    return None
  values = log_depth[mask]
  return float(values.mean()), float(np.sqrt(np.mean((values - values.mean()) ** 2)))


def _summary(moments):
  import numpy as np

  m = np.array([x[0] for x in moments])
  s = np.array([x[1] for x in moments])
  return {
      'images': len(moments),
      'log_depth_mean': float(m.mean()),
      'log_depth_mean_std_over_images': float(m.std()),
      'log_depth_std': float(s.mean()),
      'log_depth_std_quantiles': {
          q: float(np.quantile(s, float(q))) for q in ('0.05', '0.1', '0.25', '0.5')
      },
  }


def main(argv):
  del argv
  import numpy as np

  from taskology_tf.geometry import normals as normals_lib
  from taskology_tf.training import experiment as experiment_lib

  experiment_lib.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings, search_dirs=GIN_SEARCH_DIRS)
  experiment = experiment_lib.Experiment()
  out = {}
  targets = FLAGS.run_dir or [None]
  for run_dir in targets:
    trainer = experiment.build_trainer(run_dir or '/tmp/depth_statistics_unused')
    if run_dir:
      trainer.restore()
    gt_moments, pred_moments, log_ratio, abs_rel, abs_rel_median = [], [], [], [], []
    angles, net_angles = [], []
    for index, batch in enumerate(trainer.evaluation):
      if FLAGS.max_batches and index >= FLAGS.max_batches:
        break
      gt = batch['depth'].numpy()[..., 0]
      if run_dir:
        pred = (
            trainer.setups['depth']
            .task.call(trainer.models['depth'], {'image': batch['image']})['depth']
            .numpy()[..., 0]
        )
        derived = normals_lib.depth_to_normals(pred[..., None], batch['intrinsics']).numpy()
        net = (
            trainer.setups['normals']
            .task.call(trainer.models['normals'], {'image': batch['image']})['normals']
            .numpy()
        )
        net = net / np.maximum(np.linalg.norm(net, axis=-1, keepdims=True), 1e-12)
        gt_normals = batch['normals'].numpy()
        sky = gt >= FLAGS.max_depth
        for pred_normals, store in ((derived, angles), (net, net_angles)):
          cos = np.clip(np.sum(pred_normals * gt_normals, -1), -1.0, 1.0)
          store.append(np.degrees(np.arccos(cos))[~sky])
      for i in range(len(gt)):
        valid = (gt[i] > 0) & (gt[i] < FLAGS.max_depth)
        moments = _moments(np.log(np.maximum(gt[i], 1e-6)), valid)
        if moments is None:
          continue
        gt_moments.append(moments)
        if not run_dir:
          continue
        counted = pred[i] < FLAGS.max_depth
        pm = _moments(np.log(pred[i]), counted)
        if pm is not None:
          pred_moments.append(pm)
        g, p = gt[i][valid], np.clip(pred[i][valid], 1e-3, FLAGS.max_depth)
        log_ratio.append(np.mean(np.log(p / g)))
        abs_rel.append(np.abs(p - g) / g)
        scaled = np.clip(p * np.median(g) / np.median(p), 1e-3, FLAGS.max_depth)
        abs_rel_median.append(np.abs(scaled - g) / g)
    entry = {'ground_truth': _summary(gt_moments)}
    if run_dir:
      entry['prediction'] = _summary(pred_moments)
      entry['mean_log_ratio'] = float(np.mean(log_ratio))
      entry['std_log_ratio_over_images'] = float(np.std(log_ratio))
      entry['abs_rel'] = float(np.mean(np.concatenate(abs_rel)))
      entry['abs_rel_median_scaled'] = float(np.mean(np.concatenate(abs_rel_median)))
      entry['depth_derived_normals_mean_angle'] = float(np.mean(np.concatenate(angles)))
      entry['normals_network_mean_angle'] = float(np.mean(np.concatenate(net_angles)))
    out[run_dir or 'ground_truth_only'] = entry
  print(json.dumps(out, indent=2))
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
