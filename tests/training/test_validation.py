"""Bad values are refused before any work starts, with an error naming the binding or file."""

import os
import subprocess
import sys

import pytest
import tf_keras as keras

from taskology_tf.inputs.pipelines import MixingSchedule
from taskology_tf.tasks.depth import DepthTask
from taskology_tf.training.experiment import Experiment
from taskology_tf.training.experiment import TaskConfig
from taskology_tf.training.trainer import LoopConfig
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    'field, value',
    [
        ('num_steps', 0),
        ('num_steps', -3),
        ('log_every', 0),
        ('summary_every', -1),
        ('image_every', -1),
        ('checkpoint_every', 0),
        ('keep_checkpoints', 0),
        ('eval_every', -10),
    ],
)
def test_loop_config_rejects_bad_cadences(field, value):
  with pytest.raises(ValueError, match=f'LoopConfig.{field} must be an integer >= '):
    LoopConfig(**{field: value})


def _task_config(**kwargs):
  return TaskConfig(
      task=DepthTask(16, 24, base_filters=4, levels=2),
      optimizer=lambda: keras.optimizers.SGD(0.1),
      **kwargs,
  )


def test_task_config_rejects_bad_batch_sizes_and_label_fractions():
  for batch_size in (0, -2):
    with pytest.raises(ValueError, match="TaskConfig.batch_size of task 'depth' must be >= 1"):
      _task_config(batch_size=batch_size)
  for fraction in (0.0, -0.1, 1.5):
    with pytest.raises(
        ValueError, match=r"TaskConfig.label_fraction of task 'depth' must be in \(0, 1\]"
    ):
      _task_config(label_fraction=fraction)
  assert _task_config(label_fraction=1.0).label_fraction == 1.0  # The boundary is allowed.


def test_experiment_rejects_bad_mediator_batch_and_schedule():
  with pytest.raises(ValueError, match='Experiment.mediator_batch_size must be >= 1'):
    Experiment(tasks=[_task_config()], mediator_batch_size=0)
  with pytest.raises(ValueError, match='MixingSchedule: mode must be "alternate" or "joint"'):
    MixingSchedule(mode='interleaved')


def _run(tool, *args):
  return subprocess.run(
      [sys.executable, '-m', f'taskology_tf_tools.{tool}', *args],
      capture_output=True,
      text=True,
      timeout=240,
      cwd=REPO_ROOT,
  )


@pytest.mark.timeout(300)
def test_train_tool_refuses_zero_steps_before_training(tmp_path):
  # Before: num_steps = 0 trained nothing, evaluated and exited 0.
  run_dir = tmp_path / 'run'
  proc = _run(
      'train',
      f'--run_dir={run_dir}',
      '--gin_file=gin/experiments/synthetic/depth_normals_sim2real.gin',
      '--gin_bindings=LoopConfig.num_steps = 0',
  )
  assert proc.returncode != 0
  assert 'LoopConfig.num_steps must be an integer >= 1, got 0' in proc.stderr
  assert not os.path.exists(run_dir / 'checkpoints')  # Nothing was built or trained.


@pytest.mark.timeout(300)
def test_serve_tool_names_missing_or_malformed_config_in_one_line(tmp_path):
  missing = tmp_path / 'missing.config'
  bad = tmp_path / 'bad.config'
  bad.write_text('model_config_list { config { name: "x" base_path: "/x" } bogus: 1 }\n')
  for path, problem in ((missing, 'does not exist'), (bad, 'no field named "bogus"')):
    proc = _run('serve', '--port=0', f'--model_config_file={path}')
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and str(path) in last and problem in last, last
