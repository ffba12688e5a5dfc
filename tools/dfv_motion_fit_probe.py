r"""Does the DfV objective tell the ego-motion, for a fixed depth? A free-motion fit (no networks).

Every consecutive pair of every synthetic-world clip gets its own free rotation and translation
(both frame orders, `taskology_tf/metrics/motion_fit.py`), started as a randomly initialised
motion head starts (zero rotation, a small translation in a random direction), and Adam fits
them to `DfvConsistency` (Table 1's counted-pixel objective by default) for a depth that does
not change:

- `ground_truth`: the world's depth;
- `constant_median`: each frame's median true depth everywhere (the depth network's plateau);
- `ground_plane`: `dfv.ground_plane_depth` (the motion warm-up's prior);
- `network`: a trained run's depth network (`--depth_run_dir`, its experiment's `--gin_file`):
  does the objective, at the depth the run learnt, ask for the speed its motion network does
  not learn (`speed_slope` 1), or for one speed (0)?

At the recorded steps it compares the fitted forward ego-motion with the truth
(`metrics/egomotion_errors.py`: rotation error, translation direction error, |t| ratio). If the
fit finds the motion for the ground truth and for the constant depth within a few hundred
steps, the objective identifies the ego-motion even at the plateau, and a motion network that
does not is slow for reasons of its own.

Writes JSON (with the command), a markdown table beside it, a PNG of the median direction
error against the step, and per depth the last step's per-pair errors
(`<output>_<depth>_pairs.csv`) with the pairs off by > 30 deg compared with the rest.

  python tools/dfv_motion_fit_probe.py --data_dir=/work/data_demo --height=48 --width=64 \
      --output=runs/motion_fit/probe.json
"""

import json
import os
import shlex
import sys

from absl import flags

import taskology_tf_tools  # also quiets the TF start-up

DEPTHS = ('ground_truth', 'constant_median', 'ground_plane', 'network')

flags.DEFINE_string('domain', 'real', 'sim or real.')
flags.DEFINE_string('split', 'test', 'TFDS split.')
flags.DEFINE_integer('height', 48, 'Built config height.')
flags.DEFINE_integer('width', 64, 'Built config width.')
flags.DEFINE_string('data_dir', 'data/tensorflow_datasets', 'TFDS data dir.')
flags.DEFINE_integer('max_clips', 100, 'Clips to fit (all in one batch).')
flags.DEFINE_list('depths', list(DEPTHS[:3]), f'Fixed depths to fit the motion to; of {DEPTHS}.')
flags.DEFINE_string(
    'depth_run_dir', None, "The run (or checkpoint) whose depth network gives 'network' depth."
)
flags.DEFINE_multi_string('gin_file', [], "Gin files of --depth_run_dir's experiment.")
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings applied after the files.')
flags.DEFINE_string('depth_task', 'depth', "Name of --depth_run_dir's depth task.")
flags.DEFINE_list(
    'init_translation_prior',
    None,
    'Start every forward translation at these 3 numbers (m, cam_{t+1}_from_cam_t; the backward '
    'one at their negative), as DfvMotionTask.translation_prior starts the network, instead of '
    'random directions of norm --init_translation.',
)
flags.DEFINE_integer('steps', 400, 'Adam steps per fit.')
flags.DEFINE_float('learning_rate', 0.01, 'Adam learning rate of the translations (m / step).')
flags.DEFINE_float(
    'rotation_learning_rate', 0.001, 'Adam learning rate of the rotations (rad / step).'
)
flags.DEFINE_float('init_translation', 0.01, 'Norm (m) of the random start translations.')
flags.DEFINE_integer('seed', 0, 'Seed of the start directions.')
flags.DEFINE_float('counted_pixel_floor', 0.25, 'DfvConsistency.counted_pixel_floor.')
flags.DEFINE_float('occlusion_tolerance', 1e9, 'DfvConsistency.occlusion_tolerance.')
flags.DEFINE_list('record_at', ['0', '25', '50', '100', '200', '400'], 'Steps to record.')
flags.DEFINE_string('output', None, 'Write the results as JSON here (.md and .png beside it).')
flags.mark_flag_as_required('output')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from taskology_tf import files  # pylint: disable=g-import-not-at-top
  from taskology_tf.consistency import dfv  # pylint: disable=g-import-not-at-top
  from taskology_tf.datasets.loader import load_synthetic_world  # pylint: disable=g-import-not-at-top
  from taskology_tf.metrics import egomotion_errors  # pylint: disable=g-import-not-at-top
  from taskology_tf.metrics import motion_fit  # pylint: disable=g-import-not-at-top

  unknown = sorted(set(FLAGS.depths) - set(DEPTHS))
  if unknown:
    raise ValueError(f'--depths: unknown {unknown}; choose from {DEPTHS}')
  if ('network' in FLAGS.depths) != bool(FLAGS.depth_run_dir):
    raise ValueError(
        '--depths=network needs --depth_run_dir (and its --gin_file), and --depth_run_dir is '
        f'only read for it; got --depths={FLAGS.depths}, --depth_run_dir={FLAGS.depth_run_dir!r}'
    )
  prior = None
  if FLAGS.init_translation_prior is not None:
    try:
      prior = np.array([float(v) for v in FLAGS.init_translation_prior], np.float32)
    except ValueError as e:
      raise ValueError(
          f'--init_translation_prior must be 3 numbers, got {FLAGS.init_translation_prior}'
      ) from e
    if prior.shape != (3,):
      raise ValueError(
          f'--init_translation_prior must be 3 numbers, got {FLAGS.init_translation_prior}'
      )
  record_at = taskology_tf_tools.parse_record_at(FLAGS.record_at, FLAGS.steps)
  if FLAGS.max_clips < 1:
    raise ValueError(f'--max_clips must be >= 1, got {FLAGS.max_clips}')
  b = next(
      iter(
          load_synthetic_world(FLAGS.domain, FLAGS.split, FLAGS.data_dir, FLAGS.height, FLAGS.width)
          .take(FLAGS.max_clips)
          .batch(FLAGS.max_clips)
      )
  )
  batch = {'image': tf.cast(b['image'], tf.float32) / 255.0, 'intrinsics': b['intrinsics']}
  true_depth = tf.cast(b['depth'], tf.float32)
  num_clips, num_frames = true_depth.shape[0], true_depth.shape[1]
  flat = tf.reshape(true_depth, [num_clips, num_frames, -1]).numpy()
  fixed = {
      'ground_truth': true_depth,
      'constant_median': tf.ones_like(true_depth)
      * np.median(flat, axis=-1)[:, :, None, None, None].astype(np.float32),
      'ground_plane': tf.tile(
          dfv.ground_plane_depth(b['intrinsics'], FLAGS.height, FLAGS.width)[:, tf.newaxis],
          [1, num_frames, 1, 1, 1],
      ),
  }
  if 'network' in FLAGS.depths:
    from taskology_tf.training import frozen  # pylint: disable=g-import-not-at-top
    from taskology_tf_tools import experiment_for_probe  # pylint: disable=g-import-not-at-top

    _, depth_task = experiment_for_probe(
        FLAGS.gin_file, FLAGS.gin_bindings, 'depth_task', FLAGS.depth_task
    )
    depth_model, depth_info = frozen.load_frozen_network(depth_task, FLAGS.depth_run_dir)
    fixed['network'] = depth_task.predict_mediator(depth_model, {'image': b['image']})['depth']
    if tuple(fixed['network'].shape) != tuple(true_depth.shape):
      raise ValueError(
          f'--depth_run_dir={FLAGS.depth_run_dir}: its depth network predicts '
          f'{tuple(fixed["network"].shape)}, the clips need {tuple(true_depth.shape)} (--height, '
          "--width and the run's size must agree)"
      )
    print(f"network depth: {depth_info['source']} (step {depth_info['step']})", flush=True)
  relation = dfv.DfvConsistency(
      counted_pixel_floor=FLAGS.counted_pixel_floor, occlusion_tolerance=FLAGS.occlusion_tolerance
  )
  init = motion_fit.initial_motion(num_clips, num_frames - 1, FLAGS.init_translation, FLAGS.seed)
  if prior is not None:
    init['translation'] = np.broadcast_to(prior, init['translation'].shape).copy()
    init['translation_backward'] = np.broadcast_to(-prior, init['translation'].shape).copy()
  results = {}
  for name in FLAGS.depths:
    fits = motion_fit.fit_free_motion(
        relation,
        fixed[name],
        batch,
        init,
        FLAGS.steps,
        FLAGS.learning_rate,
        record_at,
        rotation_learning_rate=FLAGS.rotation_learning_rate,
    )
    results[name] = {}
    for step, m in fits.items():
      errors = motion_fit.ego_errors(
          m['rotation'], m['translation'], m['rotation_backward'], b['egomotion']
      )
      s = egomotion_errors.summarise(errors)
      results[name][str(step)] = {
          'loss': m['loss'],
          'rotation_error_deg': s['rotation_error_deg'],
          'true_rotation_deg': s['rotation_deg'],
          'translation_direction_error_deg_median': s['translation_direction_error_deg_median'],
          'translation_direction_off_30deg': s['translation_direction_off_30deg'],
          'translation_scale_ratio_median': s['translation_scale_ratio_median'],
          'speed_slope': s['speed_slope'],
      }
      print(name, step, json.dumps(results[name][str(step)]), flush=True)
    # Per pair at the last recorded step: which pairs the fit leaves off, and what they share.
    last = max(fits)
    errors = motion_fit.ego_errors(
        fits[last]['rotation'],
        fits[last]['translation'],
        fits[last]['rotation_backward'],
        b['egomotion'],
    )
    moving = errors['moving']
    pairs = {
        'direction_error_deg': errors['translation_direction_error_deg'],
        'true_rotation_deg': errors['rotation_deg'][moving],
        'true_translation_m': errors['true_translation_norm'],
        'scale_ratio': errors['translation_scale_ratio'],
    }
    off = pairs['direction_error_deg'] > 30.0
    results[name]['off_30deg_vs_rest_at_' + str(last)] = {
        k: [float(np.mean(v[off])) if off.any() else None, float(np.mean(v[~off]))]
        for k, v in pairs.items()
        if k != 'direction_error_deg'
    }
    rows = ['pair,' + ','.join(pairs)] + [
        f'{i},' + ','.join(f'{pairs[k][i]:.5g}' for k in pairs) for i in range(len(off))
    ]
    files.write_text_atomic(
        os.path.splitext(FLAGS.output)[0] + f'_{name}_pairs.csv', '\n'.join(rows) + '\n'
    )
  out = {
      'fits': results,
      'clips': int(num_clips),
      'command': 'python tools/dfv_motion_fit_probe.py ' + shlex.join(sys.argv[1:]),
  }
  files.write_json_atomic(FLAGS.output, out)
  lines = [
      f'Free ego-motion fitted to a fixed depth, {num_clips} clips (`{out["command"]}`).',
      '',
      '| depth | step | loss | rotation error (deg) | direction error, median (deg) | '
      'pairs off > 30 deg | median norm(t) ratio | speed slope (1: learnt, 0: one speed) |',
      '|---|---|---|---|---|---|---|---|',
  ]
  for name, by_step in results.items():
    for step, r in by_step.items():
      if not step.isdigit():
        continue
      lines.append(
          f"| {name} | {step} | {r['loss']:.4f} | {r['rotation_error_deg']:.2f} "
          f"(truth {r['true_rotation_deg']:.2f}) | {r['translation_direction_error_deg_median']:.1f}"
          f" | {100 * r['translation_direction_off_30deg']:.0f}% | "
          f"{r['translation_scale_ratio_median']:.3f} | {r['speed_slope']:.3f} |"
      )
  lines += ['', 'Pairs off by > 30 deg at the last step against the rest (means: off / rest):', '']
  for name, by_step in results.items():
    for key, cmp in by_step.items():
      if not key.isdigit():
        lines.append(
            f'- {name}, {key}: '
            + '; '.join(
                f'{k} {"-" if v[0] is None else f"{v[0]:.3f}"} / {v[1]:.3f}' for k, v in cmp.items()
            )
        )
  stem = os.path.splitext(FLAGS.output)[0]
  files.write_text_atomic(stem + '.md', '\n'.join(lines) + '\n')
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(5, 3.5))
  for name, by_step in results.items():
    steps = [int(s) for s in by_step if s.isdigit()]
    ax.plot(
        steps,
        [by_step[str(s)]['translation_direction_error_deg_median'] for s in steps],
        marker='o',
        label=name,
    )
  ax.set_xlabel('Adam step')
  ax.set_ylabel('median translation direction error (deg)')
  ax.set_title('free ego-motion fitted to a fixed depth')
  ax.legend()
  fig.tight_layout()
  files.save_figure_atomic(fig, stem + '.png')
  print('\n'.join(lines))
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
