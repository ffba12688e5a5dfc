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
  # Generous waits for the answers that must come (a loaded machine serves slowly); the short
  # one only where the test wants the trainer to give up.
  peers = GrpcPeers([task], address, refresh_steps=2, pin_versions=True, timeout_seconds=60)
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
    peers.timeout_seconds = 1.5
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


def _two_model_config(root, names):
  configs = ''.join(
      f'config {{ name: "{n}" base_path: "{os.path.join(root, n)}" model_platform: "tensorflow"'
      ' model_version_policy { all {} } }'
      for n in names
  )
  return text_format.Parse(
      f'model_config_list {{ {configs} }}', model_server_config_pb2.ModelServerConfig()
  )


@pytest.mark.timeout(300)
def test_a_peer_fed_another_peer_is_asked_with_its_answer(tmp_path):
  # Motion fed the depth (DfvMotionTask.depth_input_task), both served: GrpcPeers asks the depth
  # first and sends its answer with the motion request, so the motion's answer equals the one
  # computed locally from the same two networks (tasks/base.predict_in_order), although the
  # tasks are listed downstream-first. The motion request cannot go out before the depth has
  # answered, so prefetch sends only the depth's.
  from taskology_tf.tasks import base as task_base  # pylint: disable=g-import-not-at-top
  from taskology_tf.tasks.dfv_depth import DfvDepthTask  # pylint: disable=g-import-not-at-top
  from taskology_tf.tasks.dfv_motion import DfvMotionTask  # pylint: disable=g-import-not-at-top

  depth = DfvDepthTask(H, W, filters_scale=0.25)
  motion = DfvMotionTask(H, W, filters_scale=0.25, depth_input_task='depth')
  tasks = {'motion': motion, 'depth': depth}
  models = {n: t.build_network() for n, t in tasks.items()}
  root = str(tmp_path / 'snapshots')
  for name, task in tasks.items():
    export_snapshot(models[name], task.serving_function(models[name]), root, name, 3)
  server = ModelServer(_two_model_config(root, tasks), poll_wait_seconds=0.1)
  port = server.start()
  server.wait_until_version('depth', 3, timeout=60)
  server.wait_until_version('motion', 3, timeout=60)
  rng = np.random.default_rng(0)
  mediator = {
      'image': tf.constant(rng.integers(0, 255, (1, 3, H, W, 3), dtype=np.uint8)),
      'intrinsics': tf.eye(3, batch_shape=[1]),
  }
  peers = GrpcPeers([motion, depth], f'127.0.0.1:{port}', timeout_seconds=30)
  try:
    peers.prefetch(0, mediator)
    assert peers._prefetch['depth'].pending() == [0]  # pylint: disable=protected-access
    assert not peers._prefetch['motion'].pending()  # pylint: disable=protected-access
    out, info = peers.predictions(0, mediator)
    assert info['peer_version/motion'] == 3.0 and info['peer_version/depth'] == 3.0
    local = task_base.predict_in_order(tasks, models, mediator)
    for key in ('translation', 'rotation', 'residual_translation'):
      np.testing.assert_allclose(
          out['motion'][key].numpy(), local['motion'][key].numpy(), rtol=1e-4, atol=1e-5
      )
    # The depth reached the motion network: fed a doubled depth, its answer differs.
    doubled = task_base.with_upstream(mediator, 'depth', {'depth': 2.0 * local['depth']['depth']})
    other = motion.predict_mediator(models['motion'], doubled)
    assert np.abs(other['residual_translation'] - local['motion']['residual_translation']).max() > 0
  finally:
    peers.close()
    server.stop(grace=0)
