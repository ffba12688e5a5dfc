"""tools/dfv_motion_supervised_probe.py end to end on the tiny synthetic world."""

import json
import os

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.conftest import run_tool

GIN = 'gin/experiments/synthetic/table1_a.gin'


@pytest.mark.timeout(1800)
def test_trains_on_the_true_translation_and_reports_the_speed(tiny_world, tmp_path):
  import gin  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top

  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  files = [GIN, 'gin/options/dfv_forward_prior.gin', 'gin/tests/tiny.gin']
  bindings = [f"DATA_DIR = '{tiny_world}'"]
  out = str(tmp_path / 'probe' / 'sup.json')
  proc = run_tool(
      'dfv_motion_supervised_probe',
      [f'--gin_file={f}' for f in files]
      + [f'--gin_bindings={b}' for b in bindings]
      + ['--steps=3', '--record_at=0,1,3', '--max_clips=2', f'--output={out}'],
      timeout=900,  # Generous: a loaded machine starts TF and traces slowly.
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = json.load(open(out))['records']
  assert sorted(records) == ['0', '1', '3']
  # Step 0 is the seeded initialisation, before any update: the same network built here with
  # the same seed (the first thing the tool builds after seeding) scores the same MSE against
  # the true forward translation of the evaluation clips. Its translation is the prior plus
  # 0.01 x a raw output of ~1e-4: one speed for every pair, so the log-speed spread is ~0.
  gin.clear_config()
  try:
    experiment_lib.parse_gin(files, bindings, search_dirs=[REPO_ROOT])
    experiment = experiment_lib.Experiment()
    task = experiment.config('motion').task
    keras.utils.set_random_seed(0)
    model = task.build_network()
    clips = list(experiment.evaluation_clips().take(2).batch(10))
    # The tool's first training batch: the same pipeline under the same seeds.
    first_batch = next(
        iter(
            experiment.mediator_clips()
            .repeat()
            .shuffle(256, seed=0)
            .batch(experiment.mediator_batch_size, drop_remainder=True)
        )
    )
  finally:
    gin.clear_config()
  errors = []
  for clip in clips:
    pred = task.predict_mediator(model, {'image': clip['image']})['translation'].numpy()
    errors.append((pred - clip['egomotion'][..., :3, 3].numpy()).reshape(-1, 3))
  expected = float(np.mean(np.square(np.concatenate(errors))))
  assert records['0']['translation_mse'] == pytest.approx(expected, rel=1e-4)
  assert records['0']['prediction_log_std'] < 1e-3
  assert records['0']['scale/translation'] == pytest.approx(0.01)  # the published init
  assert records['3']['translation_mse'] != records['0']['translation_mse']  # it trained
  # Row 1's training MSE is step 1's loss: the initial network on the first training batch.
  pred = task.predict_mediator(model, {'image': first_batch['image']}, training=True)
  first_loss = np.mean(
      np.square(pred['translation'].numpy() - first_batch['egomotion'][..., :3, 3].numpy())
  )
  assert records['1']['train_mse'] == pytest.approx(float(first_loss), rel=1e-4)
  assert 'train_mse' not in records['0'] and records['3']['train_mse'] > 0
  assert '| 3 |' in open(os.path.splitext(out)[0] + '.md').read()
  bad = run_tool(
      'dfv_motion_supervised_probe',
      [f'--gin_file={f}' for f in files]
      + [f'--gin_bindings={b}' for b in bindings]
      + ['--steps=3', '--record_at=5', f'--output={out}'],
      timeout=900,
  )
  assert bad.returncode != 0 and '--record_at: [5]' in bad.stderr


@pytest.mark.timeout(1800)
def test_plain_cnn_reference_trains_on_the_same_pipeline(tiny_world, tmp_path):
  # --plain_cnn_filters swaps the DfVitW network for a plain regressor (He-normal convolutions,
  # a dense head with bias): its initial translations already vary between pairs, unlike the
  # DfVitW network's (0.01 output scale, ~0 spread; the test above).
  files = [GIN, 'gin/options/dfv_forward_prior.gin', 'gin/tests/tiny.gin']
  out = str(tmp_path / 'plain.json')
  args = [f'--gin_file={f}' for f in files] + [f"--gin_bindings=DATA_DIR = '{tiny_world}'"]
  proc = run_tool(
      'dfv_motion_supervised_probe',
      args + ['--plain_cnn_filters=4,8', '--steps=2', '--record_at=0,2', f'--output={out}'],
      timeout=900,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = json.load(open(out))['records']
  assert records['0']['prediction_log_std'] > 1e-3
  assert 'scale/translation' not in records['0']  # no DfVitW scales in the plain network
  assert np.isfinite(records['2']['train_mse'])
  bad = run_tool(
      'dfv_motion_supervised_probe',
      args + ['--plain_cnn_filters=4,0', '--steps=2', '--record_at=0,2', f'--output={out}'],
      timeout=900,
  )
  assert bad.returncode != 0 and '--plain_cnn_filters must be integers >= 1' in bad.stderr
