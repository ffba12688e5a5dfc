"""tools/launch.py: model server + one trainer per task on loopback, end to end."""

import os

from google.protobuf import text_format
import pytest
from tensorflow_serving.config import model_server_config_pb2

from taskology_tf.training import distributed
from tests.training import launch_helpers

GIN_FILE = 'gin/experiments/synthetic/depth_normals_sim2real.gin'


def _launch(run_dir, data_dir, extra=(), check=True):
  return launch_helpers.launch(
      run_dir,
      [GIN_FILE, 'gin/tests/tiny.gin'],
      bindings=[
          f"synthetic_world_clips.data_dir='{data_dir}'",
          'NUM_STEPS=4',
          'DistributedConfig.export_every=2',
      ],
      flags=extra,
      timeout=400,
      check=check,
  )


@pytest.mark.timeout(450)
def test_launch_runs_server_and_one_trainer_per_task(tiny_world, tmp_path):
  run_dir = str(tmp_path / 'run')
  result = _launch(run_dir, tiny_world)
  assert 'TensorBoard: tensorboard --logdir=' in result.stdout
  config = launch_helpers.served_config(run_dir)
  assert launch_helpers.served_models(run_dir) == ['depth', 'normals']
  # Trainers take their peers' latest snapshot, so only the newest version is kept loaded.
  assert [c.model_version_policy.latest.num_versions for c in config.model_config_list.config] == [
      1,
      1,
  ]
  for task in ('depth', 'normals'):
    assert task in launch_helpers.eval_metrics(run_dir, task)
    assert launch_helpers.snapshot_versions(run_dir, task)[-1] == 4
    assert os.path.exists(os.path.join(run_dir, 'logs', f'trainer_{task}.log'))
  # Each trainer logged how stale its peer was: TensorBoard scalars exist for staleness.
  log = open(os.path.join(run_dir, 'logs', 'trainer_depth.log')).read()
  assert 'staleness_steps/normals' in log or 'consistency skipped' in log


@pytest.mark.timeout(300)
def test_launch_fails_when_a_trainer_fails(tiny_world, tmp_path):
  # A trainer that cannot even start (its data does not exist) makes the launcher exit non-zero.
  result = _launch(
      str(tmp_path / 'bad2'),
      str(tmp_path / 'no_data'),
      extra=['--tasks=depth', '--tasks=normals'],
      check=False,
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
