"""tools/dfv_motion_fit_probe.py end to end: the free-motion fit against a trained run's depth
network (`--depths=network`) started at a translation prior, on the tiny synthetic world."""

import json
import os

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.conftest import run_tool
from tests.conftest import TINY_HEIGHT
from tests.conftest import TINY_WIDTH

GIN = 'gin/experiments/synthetic/dfv_depth_motion_counted.gin'


@pytest.mark.timeout(1800)
def test_fit_to_a_run_depth_network_from_a_prior(tiny_world, tmp_path):
  import gin  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from taskology_tf.consistency import dfv  # pylint: disable=g-import-not-at-top
  from taskology_tf.datasets.loader import load_synthetic_world  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  bindings = [f"DATA_DIR = '{tiny_world}'"]
  gin.clear_config()
  try:
    experiment_lib.parse_gin([GIN, 'gin/tests/tiny.gin'], bindings, search_dirs=[REPO_ROOT])
    task = experiment_lib.Experiment().config('depth').task
    net = task.build_network()
  finally:
    gin.clear_config()
  run_dir = str(tmp_path / 'run')
  checkpoint = tf.train.Checkpoint(model_depth=net, step=tf.Variable(7, dtype=tf.int64))
  tf.train.CheckpointManager(checkpoint, os.path.join(run_dir, 'checkpoints'), 1).save(7)
  out = str(tmp_path / 'fit' / 'fit.json')
  common = [
      f'--data_dir={tiny_world}',
      f'--height={TINY_HEIGHT}',
      f'--width={TINY_WIDTH}',
      '--max_clips=2',
      f'--gin_file={GIN}',
      '--gin_file=gin/tests/tiny.gin',
      f"--gin_bindings=DATA_DIR = '{tiny_world}'",
  ]
  proc = run_tool(
      'dfv_motion_fit_probe',
      common
      + [
          '--depths=network',
          f'--depth_run_dir={run_dir}',
          '--init_translation_prior=0,0,-0.9',
          '--steps=2',
          '--record_at=0,2',
          f'--output={out}',
      ],
      timeout=900,  # Generous: a loaded machine runs the tool's start-up and fit slowly.
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'ckpt-7 (step 7)' in proc.stdout
  fits = json.load(open(out))['fits']['network']
  # Step 0 is the start, before any update: every forward translation is the prior (0, 0, -0.9),
  # so the loss is DfvConsistency of the saved network's depth with that motion (zero rotations,
  # no object motion), and each pair's |t| ratio is 0.9 / |t_true|: one speed, slope 0.
  clips = next(
      iter(load_synthetic_world('real', 'test', tiny_world, TINY_HEIGHT, TINY_WIDTH).batch(2))
  )
  depth = task.predict_mediator(net, {'image': clips['image']})['depth']
  pairs = clips['image'].shape[1] - 1
  zeros = tf.zeros([2, pairs, 3])
  prior = tf.tile(tf.constant([[[0.0, 0.0, -0.9]]]), [2, pairs, 1])
  field = tf.zeros([2, pairs, TINY_HEIGHT, TINY_WIDTH, 3])
  motion = {
      'rotation': zeros,
      'translation': prior,
      'rotation_backward': zeros,
      'translation_backward': -prior,
      'residual_translation': field,
      'residual_translation_backward': field,
  }
  batch = {'image': tf.cast(clips['image'], tf.float32) / 255.0, 'intrinsics': clips['intrinsics']}
  relation = dfv.DfvConsistency(counted_pixel_floor=0.25, occlusion_tolerance=1e9)
  expected, _ = relation({'depth': {'depth': depth}, 'motion': motion}, batch)
  assert fits['0']['loss'] == pytest.approx(float(expected), rel=1e-4)
  true_speed = np.linalg.norm(clips['egomotion'][..., :3, 3].numpy().reshape(-1, 3), axis=-1)
  assert fits['0']['translation_scale_ratio_median'] == pytest.approx(
      float(np.median(0.9 / true_speed)), rel=1e-5
  )
  assert fits['0']['speed_slope'] == pytest.approx(0.0, abs=1e-6)
  assert fits['2']['loss'] == fits['2']['loss']  # the fit ran (not NaN)
  assert '| network | 2 |' in open(os.path.splitext(out)[0] + '.md').read()
  # A network depth without the run, and a prior that is not 3 numbers, are named.
  bad = run_tool(
      'dfv_motion_fit_probe', common + ['--depths=network', f'--output={out}'], timeout=900
  )
  assert bad.returncode != 0 and '--depths=network needs --depth_run_dir' in bad.stderr
  bad = run_tool(
      'dfv_motion_fit_probe',
      common + ['--init_translation_prior=0,0', '--depths=ground_truth', f'--output={out}'],
      timeout=900,
  )
  assert bad.returncode != 0 and '--init_translation_prior must be 3 numbers' in bad.stderr
