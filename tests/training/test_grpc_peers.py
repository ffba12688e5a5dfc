"""GrpcPeers against a live server on loopback: exact wire results, pinning, refresh, waiting."""

import os
import threading

from google.protobuf import text_format
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.config import model_server_config_pb2

from taskology_tf.serving.export import export_snapshot
from taskology_tf.serving.server import ModelServer
from taskology_tf.tasks.normals import NormalsTask
from taskology_tf.training.grpc_peers import GrpcPeers

H, W = 16, 24


def _config(base_path):
  return text_format.Parse(
      f"""
      model_config_list {{ config {{
        name: "normals" base_path: "{base_path}" model_platform: "tensorflow"
        model_version_policy {{ all {{}} }} }} }}""",
      model_server_config_pb2.ModelServerConfig(),
  )


@pytest.fixture
def served(tmp_path):
  """Normals snapshots at versions 0, 2, 4 (different weights each) behind a server."""
  task = NormalsTask(H, W, base_filters=4, levels=2)
  model = task.build_network()
  fn = task.serving_function(model)
  root = str(tmp_path / 'snapshots')
  weights = {}

  def export(version):
    for v in model.trainable_variables:  # Make each version's predictions distinct.
      v.assign_add(tf.fill(v.shape, 0.01 * (version + 1)))
    weights[version] = [v.numpy() for v in model.weights]
    export_snapshot(model, fn, root, 'normals', version, keep_last=None)

  for version in (0, 2, 4):
    export(version)
  server = ModelServer(_config(os.path.join(root, 'normals')), poll_wait_seconds=0.1)
  port = server.start()
  server.wait_until_version('normals', 4, timeout=60)
  yield task, model, weights, export, server, f'127.0.0.1:{port}'
  server.stop(grace=0)


def _mediator(seed=0):
  rng = np.random.default_rng(seed)
  return {
      'image': tf.constant(rng.integers(0, 255, (2, 1, H, W, 3), dtype=np.uint8)),
      'intrinsics': tf.eye(3, batch_shape=[2]),
  }


def _local(task, model, weights, version, mediator):
  current = [v.numpy() for v in model.weights]
  for v, w in zip(model.weights, weights[version]):
    v.assign(w)
  out = task.predict_mediator(model, mediator)['normals'].numpy()
  for v, w in zip(model.weights, current):
    v.assign(w)
  return out


@pytest.mark.timeout(300)
def test_pinned_versions_are_exact_and_wait_bounded(served):
  task, model, weights, export, _, address = served
  peers = GrpcPeers([task], address, refresh_steps=2, pin_versions=True, timeout_seconds=1.5)
  mediator = _mediator()
  try:
    # Step 3 -> version floor(3/2)*2 = 2: staleness 1, and the answer is version 2's, exactly.
    out, info = peers.predictions(3, mediator)
    assert info['peer_version/normals'] == 2.0 and info['staleness_steps/normals'] == 1.0
    np.testing.assert_allclose(
        out['normals']['normals'].numpy(), _local(task, model, weights, 2, mediator), atol=1e-5
    )
    assert out['normals']['normals'].shape == (2, 1, H, W, 3)
    out, info = peers.predictions(5, mediator)
    assert info['peer_version/normals'] == 4.0
    # Version 6 does not exist yet: the trainer waits at most timeout_seconds, then skips.
    out, info = peers.predictions(6, mediator)
    assert out is None and 'normals' in info['reason']
    # Exported while the trainer waits: picked up within the wait.
    timer = threading.Timer(0.5, export, args=(6,))
    timer.start()
    peers.timeout_seconds = 30
    out, info = peers.predictions(7, mediator)
    timer.join()
    assert info['peer_version/normals'] == 6.0 and info['staleness_steps/normals'] == 1.0
  finally:
    peers.close()


@pytest.mark.timeout(300)
def test_unpinned_refresh_period(served):
  task, _, _, export, server, address = served
  peers = GrpcPeers([task], address, refresh_steps=4, pin_versions=False, timeout_seconds=10)
  try:
    _, info = peers.predictions(0, _mediator())
    assert info['peer_version/normals'] == 4.0  # the latest
    export(8)
    server.wait_until_version('normals', 8, timeout=30)
    _, info = peers.predictions(1, _mediator())
    assert info['peer_version/normals'] == 4.0  # not refreshed until step 4
    # Prefetch for the next step goes out early and is collected by predictions().
    peers.prefetch(4, _mediator(1))
    _, info = peers.predictions(4, _mediator(1))
    assert info['peer_version/normals'] == 8.0
    assert info['peer_bytes_sent'] > 2 * H * W * 3  # uint8 images went over the wire
  finally:
    peers.close()
