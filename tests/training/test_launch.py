"""tools/launch.py: model server + one trainer per task on loopback, end to end."""

import json
import os
import subprocess
import sys

from google.protobuf import text_format
import pytest
from tensorflow_serving.config import model_server_config_pb2

from taskology_tf.training import distributed
from tests.conftest import REPO_ROOT

GIN_FILE = 'gin/experiments/synthetic/depth_normals_sim2real.gin'


def _launch(run_dir, data_dir, extra=()):
  cmd = [
      sys.executable,
      os.path.join(REPO_ROOT, 'tools', 'launch.py'),
      f'--run_dir={run_dir}',
      f'--gin_file={GIN_FILE}',
      '--gin_file=gin/tests/tiny.gin',
      '--poll_seconds=0.2',
      f"--gin_bindings=synthetic_world_clips.data_dir='{data_dir}'",
      '--gin_bindings=NUM_STEPS=4',
      '--gin_bindings=DistributedConfig.export_every=2',
      *extra,
  ]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=REPO_ROOT)


@pytest.mark.timeout(450)
def test_launch_runs_server_and_one_trainer_per_task(tiny_world, tmp_path):
  run_dir = str(tmp_path / 'run')
  result = _launch(run_dir, tiny_world)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert 'TensorBoard: tensorboard --logdir=' in result.stdout
  config = text_format.Parse(
      open(os.path.join(run_dir, 'models.config')).read(),
      model_server_config_pb2.ModelServerConfig(),
  )
  assert sorted(c.name for c in config.model_config_list.config) == ['depth', 'normals']
  # Trainers take their peers' latest snapshot, so only the newest version is kept loaded.
  assert [c.model_version_policy.latest.num_versions for c in config.model_config_list.config] == [
      1,
      1,
  ]
  for task in ('depth', 'normals'):
    with open(os.path.join(run_dir, task, 'eval_results.json')) as f:
      assert task in json.load(f)['metrics']
    versions = sorted(
        int(v) for v in os.listdir(os.path.join(run_dir, 'snapshots', task)) if v.isdigit()
    )
    assert versions[-1] == 4
    assert os.path.exists(os.path.join(run_dir, 'logs', f'trainer_{task}.log'))
  # Each trainer logged how stale its peer was: TensorBoard scalars exist for staleness.
  log = open(os.path.join(run_dir, 'logs', 'trainer_depth.log')).read()
  assert 'staleness_steps/normals' in log or 'consistency skipped' in log


@pytest.mark.timeout(300)
def test_launch_fails_when_a_trainer_fails(tiny_world, tmp_path):
  # A trainer that cannot even start (its data does not exist) makes the launcher exit non-zero.
  result = _launch(
      str(tmp_path / 'bad2'), str(tmp_path / 'no_data'), extra=['--tasks=depth', '--tasks=normals']
  )
  assert result.returncode != 0
  assert 'trainer depth failed' in result.stdout or 'trainer normals failed' in result.stdout


def test_serving_plan_keeps_snapshots_loaded_when_versions_are_pinned():
  # Trainers that take the latest peer need one version loaded; pinned versions may be any
  # snapshot still on disk.
  assert distributed.versions_to_keep_loaded(distributed.DistributedConfig()) == 1
  pinned = distributed.DistributedConfig(
      export_every=10, peer_refresh_steps=100, pin_versions=True, keep_snapshots=12
  )
  assert distributed.versions_to_keep_loaded(pinned) == 12
  text = distributed.models_config_text('/snap', ['depth', 'normals'], 12)
  config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
  assert [
      (c.name, c.base_path, c.model_version_policy.latest.num_versions)
      for c in config.model_config_list.config
  ] == [('depth', '/snap/depth', 12), ('normals', '/snap/normals', 12)]
  # Pinned with every snapshot kept on disk (keep_snapshots=0): serve them all.
  keep_all = distributed.DistributedConfig(
      export_every=10, peer_refresh_steps=100, pin_versions=True, keep_snapshots=0
  )
  assert distributed.versions_to_keep_loaded(keep_all) is None
  config = text_format.Parse(
      distributed.models_config_text('/snap', ['depth'], None),
      model_server_config_pb2.ModelServerConfig(),
  )
  assert (
      config.model_config_list.config[0].model_version_policy.WhichOneof('policy_choice') == 'all'
  )
  with pytest.raises(ValueError, match='num_versions must be >= 1'):
    distributed.models_config_text('/snap', ['depth'], 0)


@pytest.mark.parametrize(
    'kwargs, culprit',
    [
        ({'export_every': 0}, 'DistributedConfig.export_every'),
        ({'keep_snapshots': -1}, 'DistributedConfig.keep_snapshots'),
        ({'peer_refresh_steps': 0}, 'DistributedConfig.peer_refresh_steps'),
        ({'peer_timeout_seconds': 0}, 'DistributedConfig.peer_timeout_seconds'),
    ],
)
def test_distributed_config_rejects_bad_values_naming_the_binding(kwargs, culprit):
  with pytest.raises(ValueError, match=culprit):
    distributed.DistributedConfig(**kwargs)
