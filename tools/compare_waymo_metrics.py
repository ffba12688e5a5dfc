r"""Our Waymo-style AP / APH (metrics/detection3d.py) against the official metric ops.

  python tools/compare_waymo_metrics.py [--venv=/tmp/waymo_official_venv] [--scenes=20]

The official ops (`waymo_open_dataset.metrics.ops.py_metrics_ops.detection_metrics`) do not
load with TF 2.20, so this tool builds a separate venv on demand (python3 -m venv; then
`tensorflow==2.13.0`, `waymo-open-dataset-tf-2-12-0==1.6.7 --no-deps`, `immutabledict`), writes
random scenes to an .npz, runs the official ops on them in that venv, and compares with ours:
3D and BEV (the official TYPE_2D: rotated footprints), LEVEL_1 and LEVEL_2, AP and APH. Prints
the largest absolute difference over the scenes. Not part of CI (it downloads TF 2.13).

A scene: `--frames` frames, each with 0..8 vehicles (random sizes, headings, positions within
40 m; point counts 1..200, so some are LEVEL_2), detections = the vehicles jittered (some with
heading off by up to pi), dropped at random, plus false positives, with random scores.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import flags
import numpy as np
import tensorflow as tf

import taskology_tf_tools

_VENV = flags.DEFINE_string('venv', '/tmp/waymo_official_venv', 'Venv with the official ops.')
_SCENES = flags.DEFINE_integer('scenes', 20, 'Random scenes compared.')
_FRAMES = flags.DEFINE_integer('frames', 4, 'Frames per scene.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the scenes.')
_RUN_DIR = flags.DEFINE_string(
    'run_dir',
    None,
    "Compare on a trained detector's detections instead of random scenes: the run directory "
    '(its checkpoints/), with --gin_file. Its evaluation clips, --frames at a time, are the scenes.',
)
_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin file(s) of the --run_dir run.')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings of that run.')

OFFICIAL_PACKAGES = (
    ['tensorflow==2.13.0', 'immutabledict'],
    ['--no-deps', 'waymo-open-dataset-tf-2-12-0==1.6.7'],
)

# Runs inside the official venv: reads scenes.npz, writes official.json.
OFFICIAL_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
from waymo_open_dataset import label_pb2
from waymo_open_dataset.metrics.ops import py_metrics_ops
from waymo_open_dataset.protos import breakdown_pb2, metrics_pb2

data = np.load(sys.argv[1])
out = []
for s in range(int(data['num_scenes'])):
  res = {}
  for kind, box_type in (('3d', label_pb2.Label.Box.TYPE_3D), ('bev', label_pb2.Label.Box.TYPE_2D)):
    config = metrics_pb2.Config()
    config.breakdown_generator_ids.append(breakdown_pb2.Breakdown.OBJECT_TYPE)
    d = config.difficulties.add()
    d.levels.append(label_pb2.Label.LEVEL_1)
    d.levels.append(label_pb2.Label.LEVEL_2)
    config.matcher_type = metrics_pb2.MatcherProto.TYPE_HUNGARIAN
    config.iou_thresholds.extend([0.0, 0.7, 0.5, 0.5, 0.5])
    config.box_type = box_type
    config.score_cutoffs.extend([i * 0.01 for i in range(100)])
    p = lambda k: data[f's{s}_{k}']
    r = py_metrics_ops.detection_metrics(
        prediction_bbox=tf.constant(p('pred_boxes'), tf.float32),
        prediction_type=tf.ones(len(p('pred_boxes')), tf.uint8),
        prediction_score=tf.constant(p('pred_scores'), tf.float32),
        prediction_frame_id=tf.constant(p('pred_frame'), tf.int64),
        prediction_overlap_nlz=tf.zeros(len(p('pred_boxes')), tf.bool),
        ground_truth_bbox=tf.constant(p('gt_boxes'), tf.float32),
        ground_truth_type=tf.ones(len(p('gt_boxes')), tf.uint8),
        ground_truth_frame_id=tf.constant(p('gt_frame'), tf.int64),
        ground_truth_difficulty=tf.constant(p('gt_difficulty'), tf.uint8),
        config=config.SerializeToString(),
    )
    ap, aph, breakdown = r.average_precision, r.average_precision_ha_weighted, r.breakdown
    for row, (a, h) in zip(breakdown.numpy().tolist(), zip(ap.numpy(), aph.numpy())):
      if row[1] == 0:  # OBJECT_TYPE shard 0: TYPE_VEHICLE
        res[f'{kind}_LEVEL_{row[2]}_AP'] = float(a)
        res[f'{kind}_LEVEL_{row[2]}_APH'] = float(h)
  out.append(res)
json.dump(out, open(sys.argv[2], 'w'))
"""


def ensure_venv(path: str) -> str:
  """The official venv's python, built on first use."""
  python = os.path.join(path, 'bin', 'python')
  probe = [python, '-c', 'from waymo_open_dataset.metrics.ops import py_metrics_ops']
  if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
    return python
  print(f'Building the official-metrics venv in {path} (tensorflow 2.13.0 + waymo 1.6.7) ...')
  subprocess.run(['python3', '-m', 'venv', path], check=True)
  for args in OFFICIAL_PACKAGES:
    subprocess.run([python, '-m', 'pip', 'install', '-q', *args], check=True)
  subprocess.run(probe, check=True)
  return python


def random_scene(rng, num_frames):
  """Per-frame dicts as metrics.detection3d.average_precision takes them."""
  frames = []
  for _ in range(num_frames):
    k = int(rng.integers(0, 9))
    gt = np.column_stack(
        [
            rng.uniform(-40, 40, (k, 2)),
            rng.uniform(0.5, 1.2, k),
            rng.uniform(3.8, 5.2, k),
            rng.uniform(1.7, 2.2, k),
            rng.uniform(1.4, 1.9, k),
            rng.uniform(-np.pi, np.pi, k),
        ]
    ).astype(np.float32)
    points = rng.integers(1, 200, k)
    points[rng.random(k) < 0.3] = rng.integers(1, 6)  # some LEVEL_2
    keep = rng.random(k) < 0.8
    pred = gt[keep].copy()
    pred[:, :3] += rng.normal(0, 0.15, (len(pred), 3))
    pred[:, 3:6] *= rng.uniform(0.92, 1.08, (len(pred), 3))
    flip = rng.random(len(pred)) < 0.2
    pred[flip, 6] += rng.uniform(0, np.pi, flip.sum())
    num_fp = int(rng.integers(0, 3))
    fp = np.column_stack(
        [rng.uniform(-40, 40, (num_fp, 2)), np.full(num_fp, 0.9), np.tile([4.5, 2, 1.6], (num_fp, 1)),
         rng.uniform(-np.pi, np.pi, num_fp)]
    ).astype(np.float32)  # fmt: skip
    pred = np.concatenate([pred, fp]).astype(np.float32)
    pred[:, 6] = (pred[:, 6] + np.pi) % (2 * np.pi) - np.pi
    frames.append(
        dict(
            pred_boxes=pred,
            pred_scores=rng.uniform(0.05, 1.0, len(pred)).astype(np.float32),
            gt_boxes=gt,
            gt_num_points=points,
            gt_difficulty=np.where(points <= 5, 2, 1),
        )
    )
  return frames


def detector_scenes(run_dir, gin_files, gin_bindings, frames_per_scene):
  """A trained run's frame-0 detections on its evaluation clips, as scenes of frames.

  Ground-truth boxes without lidar points (difficulty 0, not evaluated) are left out for both
  sides; ours then counts a detection of one as a false positive, as the official ops do for a
  prediction with no ground truth.
  """
  from taskology_tf.metrics import detection3d  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import point_cloud_experiment  # pylint: disable=g-import-not-at-top

  experiment_lib.parse_gin(gin_files, gin_bindings)
  trainer = point_cloud_experiment.experiment_from_gin().build_trainer(run_dir)
  step = trainer.restore()
  names = [n for n in trainer.live if isinstance(trainer.setups[n].task.new_metrics(),
                                                 detection3d.DetectionEvaluator)]  # fmt: skip
  if not names or trainer.evaluation is None:
    raise ValueError(f'{run_dir}: the run has no detection task with evaluation clips')
  task, model = trainer.setups[names[0]].task, trainer.models[names[0]]
  evaluator = detection3d.DetectionEvaluator(task)
  call = tf.function(lambda inputs: task.call(model, inputs))
  for batch in trainer.evaluation:
    evaluator.update(batch, call(task.dedicated_inputs(batch)))
  frames = []
  for f in evaluator.frames:
    level = detection3d.difficulty(f['gt_num_points'])
    keep = level > 0
    frames.append(
        dict(
            pred_boxes=f['pred_boxes'].astype(np.float32),
            pred_scores=f['pred_scores'].astype(np.float32),
            gt_boxes=f['gt_boxes'][keep].astype(np.float32),
            gt_num_points=f['gt_num_points'][keep],
            gt_difficulty=level[keep],
        )
    )
  scenes = [frames[i : i + frames_per_scene] for i in range(0, len(frames), frames_per_scene)]
  print(f'{run_dir} @ step {step}: {len(frames)} evaluation frames, {len(scenes)} scenes')
  return scenes


def main(argv):
  del argv
  from taskology_tf.metrics import detection3d  # pylint: disable=g-import-not-at-top

  if _RUN_DIR.value:
    if not _GIN_FILE.value:
      print("error: --run_dir needs --gin_file (the run's gin files)", file=sys.stderr)
      return 2
    scenes = detector_scenes(_RUN_DIR.value, _GIN_FILE.value, _GIN_BINDINGS.value, _FRAMES.value)
  else:
    rng = np.random.default_rng(_SEED.value)
    scenes = [random_scene(rng, _FRAMES.value) for _ in range(_SCENES.value)]
  arrays = {'num_scenes': np.int64(len(scenes))}
  ours = []
  for s, frames in enumerate(scenes):
    for name in ('pred_boxes', 'pred_scores', 'gt_boxes', 'gt_difficulty'):
      arrays[f's{s}_{name}'] = np.concatenate([f[name] for f in frames])
    for side, key in (('pred', 'pred_boxes'), ('gt', 'gt_boxes')):
      arrays[f's{s}_{side}_frame'] = np.concatenate(
          [np.full(len(f[key]), i, np.int64) for i, f in enumerate(frames)]
      )
    res = {}
    for kind, bev in (('3d', False), ('bev', True)):
      for k, v in detection3d.average_precision(frames, 0.7, bev).items():
        res[f'{kind}_{k.replace("/", "_")}'] = v
    ours.append(res)
  python = ensure_venv(_VENV.value)
  with tempfile.TemporaryDirectory() as tmp:
    np.savez(os.path.join(tmp, 'scenes.npz'), **arrays)
    with open(os.path.join(tmp, 'official.py'), 'w') as f:
      f.write(OFFICIAL_SCRIPT)
    subprocess.run(
        [python, os.path.join(tmp, 'official.py'), os.path.join(tmp, 'scenes.npz'),
         os.path.join(tmp, 'official.json')],
        check=True,
    )  # fmt: skip
    official = json.load(open(os.path.join(tmp, 'official.json')))
  keys = sorted(ours[0])
  what = (
      f'detector scenes of {_RUN_DIR.value}'
      if _RUN_DIR.value
      else f'random scenes (seed {_SEED.value})'
  )
  print(f'{len(scenes)} {what} of {_FRAMES.value} frames: ours vs official')
  print(f'{"metric":22s} {"max |diff|":>10s} {"mean ours":>10s} {"mean official":>14s}')
  worst = 0.0
  for k in keys:
    a = np.array([r[k] for r in ours])
    b = np.array([r.get(k, np.nan) for r in official])
    diff = float(np.nanmax(np.abs(a - b)))
    worst = max(worst, diff)
    print(f'{k:22s} {diff:10.4f} {a.mean():10.4f} {np.nanmean(b):14.4f}')
  print(f'largest difference: {worst:.4f}')
  return 0


def run():
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
