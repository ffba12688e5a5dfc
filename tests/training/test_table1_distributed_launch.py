"""Table 1 E at synthetic scale as three trainers (depth, motion, segmentation) against the model
server (tools/launch.py), under tiny overrides: 2 steps each, a snapshot every step, loopback,
every wait bounded."""

import json
import os
import subprocess
import sys

from google.protobuf import text_format
import pytest
from tensorflow_serving.config import model_server_config_pb2

from tests.conftest import REPO_ROOT

GIN_FILE = 'gin/experiments/synthetic/table1_e_distributed.gin'
TASKS = ['depth', 'motion', 'segmentation']


@pytest.mark.timeout(900)
def test_distributed_table1_e_trains_as_three_trainers_against_the_server(tiny_world, tmp_path):
  run_dir = str(tmp_path / 'run')
  cmd = [
      sys.executable,
      os.path.join(REPO_ROOT, 'tools', 'launch.py'),
      f'--run_dir={run_dir}',
      f'--gin_file={GIN_FILE}',
      '--gin_file=gin/tests/tiny.gin',
      '--poll_seconds=0.2',
      '--server_start_timeout=120',
      f"--gin_bindings=DATA_DIR='{tiny_world}'",
      '--gin_bindings=NUM_STEPS = 2',
      # Step 2 of each trainer asks for its peers' version 1, which every trainer exports after
      # its first step; a peer that is slower than the timeout only skips one consistency term.
      '--gin_bindings=DistributedConfig.export_every = 1',
      '--gin_bindings=DistributedConfig.peer_timeout_seconds = 30',
      '--gin_bindings=Experiment.evaluation_max_clips = 2',
  ]
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=800, cwd=REPO_ROOT)
  logs = ''
  log_dir = os.path.join(run_dir, 'logs')
  for name in sorted(os.listdir(log_dir)) if os.path.isdir(log_dir) else []:
    logs += f'--- {name}\n' + open(os.path.join(log_dir, name)).read()[-2500:]
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:] + logs
  config = text_format.Parse(
      open(os.path.join(run_dir, 'models.config')).read(),
      model_server_config_pb2.ModelServerConfig(),
  )
  # The server serves every task's snapshots, and each trainer exported both of its steps.
  assert sorted(c.name for c in config.model_config_list.config) == TASKS
  for task in TASKS:
    versions = sorted(
        int(v) for v in os.listdir(os.path.join(run_dir, 'snapshots', task)) if v.isdigit()
    )
    assert versions[-1] == 2, (task, versions)
  # Each trainer evaluated its own network on the `real` test clips at the end.
  with open(os.path.join(run_dir, 'depth', 'eval_results.json')) as f:
    depth = json.load(f)['metrics']['depth']
  assert depth['abs_rel'] > 0, depth
  with open(os.path.join(run_dir, 'segmentation', 'eval_results.json')) as f:
    segmentation = json.load(f)['metrics']['segmentation']
  # The synthetic world's 5 classes (not the project class set): mIoU and pixel accuracy.
  assert 0.0 <= segmentation['miou'] <= 1.0 and 0.0 <= segmentation['pixel_accuracy'] <= 1.0
