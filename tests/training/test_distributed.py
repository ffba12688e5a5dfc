"""Distributed mode on loopback: peers over gRPC, server outages, SIGKILLed trainers."""

import glob
import os
import signal
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.serving.client import PeerClient
from taskology_tf.serving.export import export_snapshot
from taskology_tf.serving.server import ModelServer
from taskology_tf.serving.server import single_model_config
from taskology_tf.tasks.normals import NormalsTask
from taskology_tf.training import distributed
from taskology_tf.training import experiment as experiment_lib
from tests.conftest import REPO_ROOT
from tests.conftest import TINY_HEIGHT
from tests.conftest import TINY_WIDTH

GIN_FILE = 'gin/experiments/synthetic/depth_normals_sim2real.gin'


def _experiment(data_dir, num_steps):
  gin.clear_config()
  experiment_lib.parse_gin(
      [GIN_FILE, 'gin/tests/tiny.gin'],
      [f"synthetic_world_clips.data_dir = '{data_dir}'", f'NUM_STEPS = {num_steps}'],
      search_dirs=[REPO_ROOT],
  )
  # The config stays in force: the experiment's clip sources read it when datasets are built.
  return experiment_lib.Experiment()


@pytest.fixture(autouse=True)
def _clear_gin():
  yield
  gin.clear_config()


@pytest.mark.timeout(1200)
def test_server_outage_skips_then_resumes_consistency(tiny_world, tmp_path):
  snapshot_root = str(tmp_path / 'snapshots')
  # A normals peer snapshot at version 0, as the normals trainer would export at its start.
  task = NormalsTask(TINY_HEIGHT, TINY_WIDTH, base_filters=16, levels=4)
  peer = task.build_network()
  export_snapshot(peer, task.serving_function(peer), snapshot_root, 'normals', 0)
  config = single_model_config('normals', os.path.join(snapshot_root, 'normals'))
  server = ModelServer(config, port=0, poll_wait_seconds=0.2)
  port = server.start()  # Bound by the server itself; the restart below rebinds this port.
  server.wait_until_version('normals', 0, timeout=300)
  state = {'server': server}
  log = {}

  def outage(step, trainer):
    log[step] = dict(getattr(trainer, 'last_scalars', {}))
    if step == 2:
      state['server'].stop(grace=0)
    if step == 5:
      state['server'] = ModelServer(config, port=port, poll_wait_seconds=0.2)
      state['server'].start()
      state['server'].wait_until_version('normals', 0, timeout=300)
      # The trainer's channel reconnects by itself within its 1 s backoff cap; waiting for it
      # here makes "step 6's request (sent after this hook) is answered" independent of timing.
      assert trainer.peer_source._clients['normals'].wait_until_ready(60)
      # A fresh server's first Predict traces the loaded signature, which can take seconds on a
      # busy machine; answer one here (generously bounded) so the trainer's next request is not
      # the one that pays for it.
      with PeerClient(f'127.0.0.1:{port}', 'normals', timeout_seconds=120, retries=0) as warm:
        warm.predict({'image': np.zeros([1, TINY_HEIGHT, TINY_WIDTH, 3], np.uint8)})

  experiment = _experiment(tiny_world, num_steps=8)
  trainer = distributed.build_task_trainer(
      experiment,
      'depth',
      str(tmp_path / 'depth'),
      distributed.DistributedConfig(
          server=f'127.0.0.1:{port}',
          snapshot_root=snapshot_root,
          export_every=2,
          peer_timeout_seconds=60,
      ),
  )
  trainer.hooks.append(outage)
  try:
    trainer.train()
  finally:
    state['server'].stop(grace=0)
  assert int(trainer.step.numpy()) == 8
  # Steps 1-2: peer answered (version 0, so staleness = step - 1 at the step's start).
  assert 'consistency/depth_normals/depth' in log[1]
  assert log[2]['staleness_steps/normals'] == 1.0
  # Server down after step 2, back after step 5. Step 3's answer was prefetched during step 2;
  # steps 4 and 5 (whose requests went out while it was down) skip consistency and go on.
  for step in (4, 5):
    assert log[step].get('consistency_skipped') == 1.0, log[step]
    assert 'supervised/depth' in log[step]
    assert 'consistency/depth_normals/depth' not in log[step]
  # Back: consistency resumed.
  for step in (7, 8):
    assert 'consistency/depth_normals/depth' in log[step], log[step]
  # The depth trainer exported its own snapshots in TF Serving's layout.
  assert sorted(int(os.path.basename(p)) for p in glob.glob(f'{snapshot_root}/depth/*')) == [
      0,
      2,
      4,
      6,
      8,
  ]


@pytest.mark.timeout(1200)
def test_sigkilled_trainer_resumes_same_step_and_optimizer_state(tiny_world, tmp_path, dead_port):
  run_dir = str(tmp_path / 'depth')
  cmd = [
      sys.executable,
      os.path.join(REPO_ROOT, 'tools', 'train.py'),
      f'--run_dir={run_dir}',
      '--task=depth',
      f'--gin_file={GIN_FILE}',
      '--gin_file=gin/tests/tiny.gin',
      f"--gin_bindings=synthetic_world_clips.data_dir='{tiny_world}'",
      '--gin_bindings=NUM_STEPS=100000',
      '--gin_bindings=LoopConfig.checkpoint_every=3',
      # No model server: the peer is unreachable, so consistency is skipped throughout.
      f"--gin_bindings=DistributedConfig.server='127.0.0.1:{dead_port}'",
      f"--gin_bindings=DistributedConfig.snapshot_root='{tmp_path}/snapshots'",
  ]
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)

  # Wait on the manager's state file, not on `ckpt-6.index`: the index is written before the
  # state file names it, so a kill between the two leaves ckpt-3 as the latest.
  def latest_step():
    latest = tf.train.latest_checkpoint(f'{run_dir}/checkpoints')
    return int(latest.rsplit('-', 1)[1]) if latest else 0

  deadline = time.monotonic() + 240
  try:
    while time.monotonic() < deadline:
      if latest_step() >= 6:
        break
      assert proc.poll() is None, 'trainer exited early'
      time.sleep(0.5)
    else:
      pytest.fail('no checkpoint at step 6 within 240 s')
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
  latest = tf.train.latest_checkpoint(f'{run_dir}/checkpoints')
  saved_step = int(latest.rsplit('-', 1)[1])
  assert saved_step >= 6 and saved_step % 3 == 0
  reader = tf.train.load_checkpoint(latest)
  # Relaunch (in-process) and check the restored state is the checkpoint's, exactly.
  experiment = _experiment(tiny_world, num_steps=saved_step + 2)
  trainer = distributed.build_task_trainer(
      experiment,
      'depth',
      run_dir,
      distributed.DistributedConfig(
          server=f'127.0.0.1:{dead_port}',
          snapshot_root=str(tmp_path / 'snapshots'),
          export_every=1000,
      ),
  )
  assert trainer.restore() == saved_step
  optimizer = trainer.optimizers['depth']
  assert int(optimizer.iterations.numpy()) == saved_step
  # Everything restored is what the killed process saved, bit for bit: write the restored
  # state out again and compare every variable (weights, Adam moments, counters).
  copy = trainer.checkpoint.write(str(tmp_path / 'restored' / 'ckpt'))
  again = tf.train.load_checkpoint(copy)
  keys = [n for n, _ in tf.train.list_variables(latest) if n.endswith('VARIABLE_VALUE')]
  assert any(k.startswith('optimizer_depth/_iterations') for k in keys)
  # Adam's first and second moments: two slots per trainable weight.
  moments = [k for k in keys if k.startswith('optimizer_depth/_variables/')]
  assert len(moments) == 2 * len(trainer.models['depth'].trainable_variables)
  for key in keys:
    np.testing.assert_array_equal(again.get_tensor(key), reader.get_tensor(key), err_msg=key)
  trainer.train()
  assert int(trainer.step.numpy()) == saved_step + 2
  assert int(optimizer.iterations.numpy()) == saved_step + 2


@pytest.mark.timeout(1200)
def test_grpc_peers_train_exactly_like_in_process_peers(tiny_world, tmp_path):
  """The wire path changes nothing: a depth trainer fed normals over gRPC takes the same steps
  as one fed the same normals network in-process (a frozen copy)."""
  from taskology_tf.training.peers import StaleCopyPeers  # pylint: disable=g-import-not-at-top

  snapshot_root = str(tmp_path / 'snapshots')
  experiment = _experiment(tiny_world, num_steps=3)
  task = experiment.config('normals').task
  peer = task.build_network()
  export_snapshot(peer, task.serving_function(peer), snapshot_root, 'normals', 0)
  server = ModelServer(
      single_model_config('normals', os.path.join(snapshot_root, 'normals')),
      port=0,
      poll_wait_seconds=0.2,
  )
  port = server.start()
  server.wait_until_version('normals', 0, timeout=300)
  try:
    # A fresh server's first Predict traces the loaded signature, which can outlast a request
    # deadline on a busy machine; answer one here (generously bounded), so no trainer step
    # skips consistency for it and the two runs take the same steps.
    with PeerClient(f'127.0.0.1:{port}', 'normals', timeout_seconds=300, retries=0) as warm:
      warm.predict({'image': np.zeros([1, TINY_HEIGHT, TINY_WIDTH, 3], np.uint8)})
    remote = distributed.build_task_trainer(
        experiment,
        'depth',
        str(tmp_path / 'remote'),
        distributed.DistributedConfig(
            server=f'127.0.0.1:{port}', snapshot_root=snapshot_root, export_every=1000
        ),
    )
    remote.train()
  finally:
    server.stop(grace=0)
  experiment = _experiment(tiny_world, num_steps=3)
  experiment.peer_gradients = False
  local = experiment.build_trainer(
      str(tmp_path / 'local'),
      live=['depth'],
      peer_source=StaleCopyPeers([task], {'normals': peer}, refresh_steps=10**9),
  )
  local.train()
  for a, b in zip(remote.models['depth'].weights, local.models['depth'].weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
  # And the consistency really was applied (the steps differ from supervised-only ones).
  experiment = _experiment(tiny_world, num_steps=3)
  experiment.relations = []
  alone = experiment.build_trainer(str(tmp_path / 'alone'), live=['depth'])
  alone.train()
  diff = max(
      float(np.abs(a.numpy() - b.numpy()).max())
      for a, b in zip(alone.models['depth'].weights, local.models['depth'].weights)
  )
  assert diff > 1e-6
