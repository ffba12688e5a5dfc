"""Detector and box flow as two trainers against the model server (tools/launch.py), on a Waymo
build of generated Frames, with the full-scale Waymo Table 2 file under tiny overrides: 2 steps
each, loopback, every wait bounded."""

import pytest
import tensorflow_datasets as tfds

from taskology_tf.datasets.waymo import builder as waymo
from taskology_tf.datasets.waymo import generated
from tests.training import launch_helpers

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
  launch_helpers.launch(
      run_dir,
      [GIN_FILE, 'gin/tests/tiny.gin', 'gin/tests/tiny_point_clouds.gin'],
      bindings=[
          f"WAYMO_DATA_DIR='{data_dir}'",
          'waymo_point_cloud_clips.time_step = 0.2',
          'waymo_point_cloud_clips.max_boxes = 4',
          'NUM_STEPS = 2',
          'DistributedConfig.export_every = 1',
          'DistributedConfig.peer_timeout_seconds = 30',
      ],
      flags=['--server_start_timeout=120'],
  )
  assert launch_helpers.served_models(run_dir) == ['box_flow', 'detection3d']
  for task in ('detection3d', 'box_flow'):
    assert task in launch_helpers.eval_metrics(run_dir, task)
    versions = launch_helpers.snapshot_versions(run_dir, task)
    assert versions[-1] == 2, (task, versions)
  ap = launch_helpers.eval_metrics(run_dir, 'detection3d')['detection3d']['3d_LEVEL_1_AP']
  assert 0.0 <= ap <= 1.0, ap
