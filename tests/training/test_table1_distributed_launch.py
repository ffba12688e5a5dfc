"""Table 1 E at synthetic scale as three trainers (depth, motion, segmentation) against the model
server (tools/launch.py), under tiny overrides: 2 steps each, a snapshot every step, loopback,
every wait bounded."""

import pytest

from tests.training import launch_helpers

GIN_FILE = 'gin/experiments/synthetic/table1_e_distributed.gin'
TASKS = ['depth', 'motion', 'segmentation']


@pytest.mark.timeout(900)
def test_distributed_table1_e_trains_as_three_trainers_against_the_server(tiny_world, tmp_path):
  run_dir = str(tmp_path / 'run')
  launch_helpers.launch(
      run_dir,
      [GIN_FILE, 'gin/tests/tiny.gin'],
      bindings=[
          f"DATA_DIR='{tiny_world}'",
          'NUM_STEPS = 2',
          # Step 2 of each trainer asks for its peers' version 1, which every trainer exports
          # after its first step; a peer slower than the timeout only skips one consistency term.
          'DistributedConfig.export_every = 1',
          'DistributedConfig.peer_timeout_seconds = 30',
          'Experiment.evaluation_max_clips = 2',
      ],
      flags=['--server_start_timeout=120'],
  )
  # The server serves every task's snapshots, and each trainer exported both of its steps.
  assert launch_helpers.served_models(run_dir) == TASKS
  for task in TASKS:
    versions = launch_helpers.snapshot_versions(run_dir, task)
    assert versions[-1] == 2, (task, versions)
  # Each trainer evaluated its own network on the `real` test clips at the end.
  depth = launch_helpers.eval_metrics(run_dir, 'depth')['depth']
  assert depth['abs_rel'] > 0, depth
  segmentation = launch_helpers.eval_metrics(run_dir, 'segmentation')['segmentation']
  # The synthetic world's 5 classes (not the project class set): mIoU and pixel accuracy.
  assert 0.0 <= segmentation['miou'] <= 1.0 and 0.0 <= segmentation['pixel_accuracy'] <= 1.0
