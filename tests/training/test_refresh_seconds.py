"""Refresh by seconds of wall-clock time (Fig. 5's "peers refreshed every T minutes").

Every test drives an injected clock: no sleeps, no timed assertions.
"""

import types

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.tasks.depth import DepthTask
from taskology_tf.training import distributed
from taskology_tf.training.experiment import Experiment
from taskology_tf.training.experiment import TaskConfig
from taskology_tf.training.grpc_peers import GrpcPeers
from taskology_tf.training.peers import StaleCopyPeers

H, W = 16, 24


class _Clock:

  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def _mediator():
  rng = np.random.default_rng(0)
  return {
      'image': tf.constant(rng.integers(0, 255, (1, 3, H, W, 3), dtype=np.uint8)),
      'intrinsics': tf.eye(3, batch_shape=[1]),
  }


def test_stale_copies_refresh_every_t_seconds():
  # T = 60 s. Steps at t = 0, 30, 60, 100, 125 (seconds after the first): refreshes at t = 0
  # (the first step) and t = 60 (60 >= T), not at 30 (age 30) or 100 (age 40); 125 (age 65)
  # refreshes again. Staleness in steps counts from the refreshing step.
  task = DepthTask(H, W, base_filters=4, levels=2)
  live = task.build_network()
  clock = _Clock()
  peers = StaleCopyPeers([task], {'depth': live}, refresh_seconds=60.0, clock=clock)
  mediator = _mediator()
  seen = {}
  for step, t in enumerate((0.0, 30.0, 60.0, 100.0, 125.0)):
    clock.now = 1000.0 + t
    out, info = peers.predictions(step, mediator)
    seen[step] = (out['depth']['depth'].numpy(), info)
    for v in live.trainable_variables:  # The live network moves on after every step.
      v.assign_add(0.05 * tf.ones_like(v))
  versions = {s: s - int(info['staleness_steps/depth']) for s, (_, info) in seen.items()}
  assert versions == {0: 0, 1: 0, 2: 2, 3: 2, 4: 4}
  ages = {s: info['staleness_seconds/depth'] for s, (_, info) in seen.items()}
  assert ages == {0: 0.0, 1: 30.0, 2: 0.0, 3: 40.0, 4: 0.0}
  np.testing.assert_array_equal(seen[1][0], seen[0][0])  # Same copy, same answer.
  assert not np.allclose(seen[2][0], seen[1][0])  # Refreshed from the moved live network.
  np.testing.assert_array_equal(seen[3][0], seen[2][0])


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(refresh_seconds=0.0), 'refresh_seconds must be > 0'),
        (dict(refresh_seconds=-5.0), 'refresh_seconds must be > 0'),
        (dict(refresh_steps=3, refresh_seconds=60.0), 'exactly one'),
        (dict(), 'exactly one'),
    ],
)
def test_stale_copies_validate_the_cadence(kwargs, match):
  task = DepthTask(H, W, base_filters=4, levels=2)
  with pytest.raises(ValueError, match=match):
    StaleCopyPeers([task], {'depth': task.build_network()}, **kwargs)


def _experiment(**kwargs):
  task = DepthTask(H, W, base_filters=4, levels=2)
  config = TaskConfig(task=task, optimizer=lambda: None)
  return Experiment(tasks=[config], **kwargs)


def test_bindings_are_validated_and_errors_name_them():
  with pytest.raises(ValueError, match=r'Experiment\.peer_refresh_seconds must be > 0'):
    _experiment(peer_gradients=False, peer_refresh_seconds=0.0)
  with pytest.raises(ValueError, match=r'Experiment\.peer_refresh_steps or Experiment\.peer_'):
    _experiment(peer_gradients=False, peer_refresh_steps=5, peer_refresh_seconds=60.0)
  with pytest.raises(ValueError, match=r'peer_refresh_seconds.*peer_gradients = False'):
    _experiment(peer_gradients=True, peer_refresh_seconds=60.0)
  assert _experiment(peer_gradients=False, peer_refresh_seconds=60.0).peer_refresh_seconds == 60
  for name in ('export_every_seconds', 'peer_refresh_seconds'):
    with pytest.raises(ValueError, match=rf'DistributedConfig\.{name} must be > 0'):
      distributed.DistributedConfig(**{name: 0.0})
  with pytest.raises(ValueError, match=r'pin_versions.*DistributedConfig\.peer_refresh_seconds'):
    distributed.DistributedConfig(pin_versions=True, peer_refresh_seconds=60.0, export_every=1)
  with pytest.raises(ValueError, match='every_seconds must be > 0'):
    distributed.SnapshotExporter('depth', '/tmp/unused', 1, 1, every_seconds=-1.0)


def test_snapshot_export_every_t_seconds():
  # T = 60 s; hook calls after steps 0..5 at t = 0, 20, 61, 90, 121, 130 (num_steps 5): exports
  # at 0 (the start), 61 (61 s after 0), 121 (60 s after 61) and 5 (the end, always).
  clock = _Clock()
  exporter = distributed.SnapshotExporter(
      'depth', '/tmp/unused', 1, 1, every_seconds=60.0, clock=clock
  )
  written = []
  exporter._writer = types.SimpleNamespace(write=written.append)  # No SavedModel needed here.
  trainer = types.SimpleNamespace(loop=types.SimpleNamespace(num_steps=5), is_chief=True)
  for step, t in enumerate((0.0, 20.0, 61.0, 90.0, 121.0, 130.0)):
    clock.now = 1000.0 + t
    exporter(step, trainer)
  assert written == [0, 2, 4, 5]


def test_grpc_peers_refresh_the_version_every_t_seconds(dead_port):
  # The server's latest version grows by one per look-up; with T = 60 s the source looks it up
  # at t = 0, 60 and 125 only, and answers with the version it holds in between.
  clock = _Clock()
  task = DepthTask(H, W, base_filters=4, levels=2)
  peers = GrpcPeers([task], f'127.0.0.1:{dead_port}', refresh_seconds=60.0, clock=clock)
  lookups = []
  real_status_client = peers._status_clients['depth']
  peers._status_clients['depth'] = types.SimpleNamespace(
      latest_version=lambda: lookups.append(1) or 10 * len(lookups)
  )
  try:
    versions = []
    for step, t in enumerate((0.0, 30.0, 60.0, 100.0, 125.0)):
      clock.now = 1000.0 + t
      versions.append(peers._version_for('depth', step))
    assert versions == [10, 10, 20, 20, 30]
    with pytest.raises(ValueError, match='refresh_seconds must be > 0'):
      GrpcPeers([task], f'127.0.0.1:{dead_port}', refresh_seconds=0.0)
  finally:
    peers._status_clients['depth'] = real_status_client
    peers.close()
