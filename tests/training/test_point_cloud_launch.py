"""Detector and box flow as two trainers against the model server (tools/launch.py), on a Waymo
build of generated Frames, with the full-scale Waymo Table 2 file under tiny overrides: 2 steps
each, loopback, every wait bounded."""

import json
import os
import subprocess
import sys

from google.protobuf import text_format
import pytest
import tensorflow_datasets as tfds
from tensorflow_serving.config import model_server_config_pb2

from taskology_tf.datasets.waymo import builder as waymo
from taskology_tf.datasets.waymo import generated
from tests.conftest import REPO_ROOT

GIN_FILE = 'gin/experiments/waymo/table2_labels5_consistency.gin'
# Segments of 8 frames at 10 Hz, sequences of 3 frames 0.2 s apart: 4 per segment.
CONFIG = dict(num_frames=3, time_step=0.2, max_boxes=4)


@pytest.mark.timeout(900)
def test_detector_and_box_flow_train_as_two_trainers_against_the_server(tmp_path):
  raw = generated.build_raw_dir(str(tmp_path / 'raw'), num_segments=(2, 1), num_frames=8)
  data_dir = str(tmp_path / 'tfds')
  waymo.Waymo(config=waymo.make_config(**CONFIG), data_dir=data_dir).download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=raw)
  )
  run_dir = str(tmp_path / 'run')
  cmd = [
      sys.executable,
      os.path.join(REPO_ROOT, 'tools', 'launch.py'),
      f'--run_dir={run_dir}',
      f'--gin_file={GIN_FILE}',
      '--gin_file=gin/tests/tiny.gin',
      '--gin_file=gin/tests/tiny_point_clouds.gin',
      '--poll_seconds=0.2',
      '--server_start_timeout=120',
      f"--gin_bindings=WAYMO_DATA_DIR='{data_dir}'",
      '--gin_bindings=waymo_point_cloud_clips.time_step = 0.2',
      '--gin_bindings=waymo_point_cloud_clips.max_boxes = 4',
      '--gin_bindings=NUM_STEPS = 2',
      '--gin_bindings=DistributedConfig.export_every = 1',
      '--gin_bindings=DistributedConfig.peer_timeout_seconds = 30',
  ]
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=800, cwd=REPO_ROOT)
  logs = ''
  for name in sorted(os.listdir(os.path.join(run_dir, 'logs'))):
    logs += f'--- {name}\n' + open(os.path.join(run_dir, 'logs', name)).read()[-2500:]
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:] + logs
  config = text_format.Parse(
      open(os.path.join(run_dir, 'models.config')).read(),
      model_server_config_pb2.ModelServerConfig(),
  )
  assert sorted(c.name for c in config.model_config_list.config) == ['box_flow', 'detection3d']
  for task in ('detection3d', 'box_flow'):
    with open(os.path.join(run_dir, task, 'eval_results.json')) as f:
      results = json.load(f)
    assert task in results['metrics']
    versions = sorted(
        int(v) for v in os.listdir(os.path.join(run_dir, 'snapshots', task)) if v.isdigit()
    )
    assert versions[-1] == 2, versions
  assert (
      0.0
      <= json.load(open(os.path.join(run_dir, 'detection3d', 'eval_results.json')))['metrics'][
          'detection3d'
      ]['3d_LEVEL_1_AP']
      <= 1.0
  )
