"""Tests for taskology_tf.serving.server, driven with TF Serving's stock gRPC stubs."""

import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from taskology_tf.serving import server as server_lib
from tests.serving.test_export import export_affine

pytestmark = pytest.mark.timeout(60)
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
_END = get_model_status_pb2.ModelVersionStatus.State.END


def _start(base_path, name='affine', poll=0.1, **kwargs):
  server = server_lib.ModelServer(
      server_lib.single_model_config(name, str(base_path)), poll_wait_seconds=poll, **kwargs
  )
  port = server.start()
  channel = grpc.insecure_channel('127.0.0.1:%d' % port)
  return (
      server,
      channel,
      prediction_service_pb2_grpc.PredictionServiceStub(channel),
      model_service_pb2_grpc.ModelServiceStub(channel),
  )


def _request(x, name='affine', version=None, input_name='x'):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = name
  if version is not None:
    request.model_spec.version.value = version
  request.inputs[input_name].CopyFrom(tf.make_tensor_proto(x))
  return request


def _predict_y(stub, x, **kwargs):
  response = stub.Predict(_request(x, **kwargs), timeout=10)
  return response, tf.make_ndarray(response.outputs['y'])


@pytest.fixture
def served(tmp_path):
  """A server for model 'affine' (y = 2x + 1, version 1) and stock stubs."""
  export_affine(tmp_path, 1, w=2.0, b=1.0)
  server, channel, predict_stub, model_stub = _start(tmp_path / 'affine')
  yield tmp_path, server, predict_stub, model_stub
  channel.close()
  server.stop()


def test_predict_metadata_status_with_stock_stubs(served):
  _, _, stub, model_stub = served
  x = np.array([[0.0, 1.0, 2.0]], np.float32)
  response, y = _predict_y(stub, x)
  np.testing.assert_allclose(y, [[1.0, 3.0, 5.0]])  # y = 2x + 1.
  assert response.model_spec.name == 'affine'
  assert response.model_spec.version.value == 1
  assert response.model_spec.signature_name == 'serving_default'
  assert set(response.outputs) == {'y', 'snapshot_version', 'snapshot_unix_time'}
  assert tf.make_ndarray(response.outputs['snapshot_version']) == 1

  request = _request(x)
  request.output_filter.append('y')
  assert set(stub.Predict(request, timeout=10).outputs) == {'y'}

  meta_request = get_model_metadata_pb2.GetModelMetadataRequest()
  meta_request.model_spec.name = 'affine'
  meta_request.metadata_field.append('signature_def')
  meta = stub.GetModelMetadata(meta_request, timeout=10)
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  assert meta.metadata['signature_def'].Unpack(signature_map)
  signature = signature_map.signature_def['serving_default']
  assert list(signature.inputs) == ['x']
  assert signature.inputs['x'].dtype == tf.float32.as_datatype_enum
  assert set(signature.outputs) == {'y', 'snapshot_version', 'snapshot_unix_time'}
  assert meta.model_spec.version.value == 1

  status_request = get_model_status_pb2.GetModelStatusRequest()
  status_request.model_spec.name = 'affine'
  status = model_stub.GetModelStatus(status_request, timeout=10)
  assert [(s.version, s.state) for s in status.model_version_status] == [(1, _AVAILABLE)]

  with pytest.raises(grpc.RpcError) as info:
    stub.Classify(classification_pb2.ClassificationRequest(), timeout=10)
  assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_new_version_is_served_after_poll(served):
  tmp_path, server, stub, model_stub = served
  x = np.ones([1, 3], np.float32)
  export_affine(tmp_path, 2, w=3.0, b=0.0)
  server.wait_until_version('affine', 2, timeout=20)
  response, y = _predict_y(stub, x)
  assert response.model_spec.version.value == 2
  np.testing.assert_allclose(y, [[3.0, 3.0, 3.0]])
  # latest{1} is the default policy: version 1 is unloaded once 2 serves.
  assert server.served_versions('affine') == [2]
  with pytest.raises(grpc.RpcError) as info:
    stub.Predict(_request(x, version=1), timeout=10)
  assert info.value.code() == grpc.StatusCode.NOT_FOUND
  status_request = get_model_status_pb2.GetModelStatusRequest()
  status_request.model_spec.name = 'affine'
  status = model_stub.GetModelStatus(status_request, timeout=10)
  assert [(s.version, s.state) for s in status.model_version_status] == [(1, _END), (2, _AVAILABLE)]


def test_requests_in_flight_survive_version_swaps(served):
  tmp_path, server, stub, _ = served
  x = np.ones([2, 3], np.float32)
  stop = threading.Event()
  errors, seen = [], [[] for _ in range(3)]

  def hammer(log):
    deadline = time.monotonic() + 30
    for _ in range(20000):  # Bounded in count and time even if the swaps stall.
      if time.monotonic() > deadline:
        return
      if stop.is_set():
        return
      try:
        response, y = _predict_y(stub, x)
        version = response.model_spec.version.value
        # Version v was exported with w = v + 1, b = 0, except v1 (w=2, b=1).
        expected = 3.0 if version == 1 else float(version + 1)
        if not np.allclose(y, expected):
          errors.append('version %d answered %s' % (version, y[0, 0]))
        log.append(version)
      except grpc.RpcError as e:
        errors.append('%s: %s' % (e.code(), e.details()))

  threads = [threading.Thread(target=hammer, args=(log,)) for log in seen]
  for t in threads:
    t.start()
  for version in (2, 3):
    export_affine(tmp_path, version, w=float(version + 1), b=0.0)
    server.wait_until_version('affine', version, timeout=20)
    time.sleep(0.2)
  stop.set()
  for t in threads:
    t.join(timeout=30)
  assert not errors, errors[:5]
  for log in seen:
    assert log and log == sorted(log)  # Never goes back to an older version.
  assert max(max(log) for log in seen) == 3


def test_corrupt_versions_are_skipped_and_logged(served, caplog):
  tmp_path, server, stub, model_stub = served
  caplog.set_level(logging.INFO)
  base = tmp_path / 'affine'
  x = np.ones([1, 3], np.float32)

  # Version 2: numeric dir with a truncated saved_model.pb.
  shutil.copytree(base / '1', base / 'tmp-copy')
  pb = (base / 'tmp-copy' / 'saved_model.pb').read_bytes()
  (base / 'tmp-copy' / 'saved_model.pb').write_bytes(pb[: len(pb) // 2])
  os.rename(base / 'tmp-copy', base / '2')
  # Version 3: saved_model.pb present, variables missing.
  shutil.copytree(base / '1', base / 'tmp-copy')
  shutil.rmtree(base / 'tmp-copy' / 'variables')
  os.rename(base / 'tmp-copy', base / '3')

  deadline = time.time() + 20
  while set(server.load_failures('affine')) != {2, 3} and time.time() < deadline:
    time.sleep(0.05)
  failures = server.load_failures('affine')
  assert 'truncated or corrupt' in failures[2]
  assert 'variables' in failures[3]
  assert server.served_versions('affine') == [1]
  response, _ = _predict_y(stub, x)
  assert response.model_spec.version.value == 1
  logs = caplog.text
  assert str(base / '2') in logs and str(base / '3') in logs

  # No retry while the files stay the same: a few more polls log nothing new.
  count = logs.count('failed to load version 3')
  time.sleep(0.5)
  assert caplog.text.count('failed to load version 3') == count == 1

  status_request = get_model_status_pb2.GetModelStatusRequest()
  status_request.model_spec.name = 'affine'
  status_request.model_spec.version.value = 3
  status = model_stub.GetModelStatus(status_request, timeout=10).model_version_status[0]
  assert status.state == _END and 'variables' in status.status.error_message

  # Repairing version 3 (its files change) gets it retried and served.
  shutil.copytree(base / '1' / 'variables', base / '3' / 'variables')
  server.wait_until_version('affine', 3, timeout=20)
  response, _ = _predict_y(stub, x)
  assert response.model_spec.version.value == 3


@pytest.mark.parametrize(
    'mutate, code, words',
    [
        (
            lambda r: r.inputs['x'].CopyFrom(tf.make_tensor_proto(np.ones([1, 3], np.int32))),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["'x'", 'float32', 'int32'],
        ),
        (
            lambda r: r.inputs['x'].CopyFrom(tf.make_tensor_proto(np.ones([1, 4], np.float32))),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["'x'", '[?,3]', '[1,4]'],
        ),
        (lambda r: r.inputs.pop('x'), grpc.StatusCode.INVALID_ARGUMENT, ['missing', "'x'"]),
        (
            lambda r: r.inputs['z'].CopyFrom(tf.make_tensor_proto(1.0)),
            grpc.StatusCode.INVALID_ARGUMENT,
            ['unknown', "'z'"],
        ),
        (
            lambda r: r.output_filter.append('nope'),
            grpc.StatusCode.INVALID_ARGUMENT,
            ['output_filter', 'nope'],
        ),
        (
            lambda r: setattr(r.model_spec, 'name', 'nomodel'),
            grpc.StatusCode.NOT_FOUND,
            ['nomodel'],
        ),
        (
            lambda r: setattr(r.model_spec, 'name', ''),
            grpc.StatusCode.INVALID_ARGUMENT,
            ['model_spec.name'],
        ),
        (
            lambda r: r.model_spec.version.CopyFrom(type(r.model_spec.version)(value=99)),
            grpc.StatusCode.NOT_FOUND,
            ['99'],
        ),
        (
            lambda r: setattr(r.model_spec, 'version_label', 'stable'),
            grpc.StatusCode.INVALID_ARGUMENT,
            ['version_label'],
        ),
        (
            lambda r: setattr(r.model_spec, 'signature_name', 'nosig'),
            grpc.StatusCode.FAILED_PRECONDITION,
            ['nosig'],
        ),
    ],
)
def test_malformed_requests_are_rejected_and_server_keeps_serving(served, mutate, code, words):
  _, _, stub, _ = served
  request = _request(np.ones([1, 3], np.float32))
  mutate(request)
  with pytest.raises(grpc.RpcError) as info:
    stub.Predict(request, timeout=10)
  assert info.value.code() == code, info.value.details()
  for word in words:
    assert word in info.value.details()
  _, y = _predict_y(stub, np.zeros([1, 3], np.float32))
  np.testing.assert_allclose(y, [[1.0, 1.0, 1.0]])


def test_config_file_version_policies_and_reload(tmp_path):
  for version in (1, 2, 3):
    export_affine(tmp_path, version, name='a')
  for version in (1, 2):
    export_affine(tmp_path, version, name='b')
  config_path = tmp_path / 'models.config'
  config_path.write_text("""
model_config_list {
  config { name: 'a' base_path: '%s' model_platform: 'tensorflow'
           model_version_policy { latest { num_versions: 2 } } }
  config { name: 'b' base_path: '%s' model_platform: 'tensorflow'
           model_version_policy { specific { versions: 1 } } }
}
""" % (tmp_path / 'a', tmp_path / 'b'))
  config = server_lib.load_model_config_file(str(config_path))
  server = server_lib.ModelServer(config, poll_wait_seconds=0)
  port = server.start()
  try:
    assert server.served_versions('a') == [2, 3]
    assert server.served_versions('b') == [1]
    channel = grpc.insecure_channel('127.0.0.1:%d' % port)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response, _ = _predict_y(stub, np.ones([1, 3], np.float32), name='a', version=2)
    assert response.model_spec.version.value == 2
    response, _ = _predict_y(stub, np.ones([1, 3], np.float32), name='b')
    assert response.model_spec.version.value == 1

    # HandleReloadConfigRequest: keep only 'b', now with the latest policy.
    reload_request = model_management_pb2.ReloadConfigRequest()
    model = reload_request.config.model_config_list.config.add()
    model.name, model.base_path = 'b', str(tmp_path / 'b')
    model_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    assert model_stub.HandleReloadConfigRequest(reload_request, timeout=30).status.error_code == 0
    assert server.served_versions('b') == [2]
    with pytest.raises(grpc.RpcError) as info:
      stub.Predict(_request(np.ones([1, 3], np.float32), name='a'), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()
  finally:
    server.stop()

  bad = tmp_path / 'bad.config'
  bad.write_text('model_config_list { config { name: "a" base_path: }')
  with pytest.raises(ValueError, match='bad.config'):
    server_lib.load_model_config_file(str(bad))
  with pytest.raises(FileNotFoundError, match='missing.config'):
    server_lib.load_model_config_file(str(tmp_path / 'missing.config'))


def test_newest_version_is_served_before_older_aspired_ones_load(tmp_path, monkeypatch):
  # latest{3} with versions 1..3 appearing at once: loads go newest first, and each version is
  # served as soon as it has loaded, so while version 2 (then 1) loads, 3 already answers.
  for version in (1, 2, 3):
    export_affine(tmp_path, version, name='a')
  config = server_lib.single_model_config('a', str(tmp_path / 'a'))
  config.model_config_list.config[0].model_version_policy.latest.num_versions = 3
  server = server_lib.ModelServer(config, poll_wait_seconds=0)
  served_while_loading = {}
  real_load = server_lib._load_version

  def recording_load(version, path):
    served_while_loading[version] = server.served_versions('a')
    return real_load(version, path)

  monkeypatch.setattr(server_lib, '_load_version', recording_load)
  server.start()
  try:
    assert served_while_loading == {3: [], 2: [3], 1: [2, 3]}
    assert server.served_versions('a') == [1, 2, 3]
  finally:
    server.stop()


def test_tls(tmp_path):
  key, cert = tmp_path / 'key.pem', tmp_path / 'cert.pem'
  subprocess.run(
      [
          'openssl',
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=localhost',
          '-addext',
          'subjectAltName=DNS:localhost',
          '-keyout',
          str(key),
          '-out',
          str(cert),
      ],
      check=True,
      capture_output=True,
      timeout=30,
  )
  export_affine(tmp_path, 1)
  # TF Serving's --ssl_config_file format: PEM contents inline.
  ssl_config = tmp_path / 'ssl.config'
  ssl_config.write_text(
      'server_key: "%s"\nserver_cert: "%s"\nclient_verify: false\n'
      % (key.read_text().replace('\n', '\\n'), cert.read_text().replace('\n', '\\n'))
  )
  credentials = server_lib.load_ssl_config_file(str(ssl_config))
  server = server_lib.ModelServer(
      server_lib.single_model_config('affine', str(tmp_path / 'affine')),
      poll_wait_seconds=0,
      server_credentials=credentials,
  )
  port = server.start()
  try:
    channel = grpc.secure_channel(
        '127.0.0.1:%d' % port,
        grpc.ssl_channel_credentials(cert.read_bytes()),
        options=[('grpc.ssl_target_name_override', 'localhost')],
    )
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    _, y = _predict_y(stub, np.zeros([1, 3], np.float32))
    np.testing.assert_allclose(y, [[1.0, 1.0, 1.0]])
    channel.close()
    # A plaintext client cannot talk to the TLS port.
    plain = grpc.insecure_channel('127.0.0.1:%d' % port)
    with pytest.raises(grpc.RpcError):
      prediction_service_pb2_grpc.PredictionServiceStub(plain).Predict(
          _request(np.zeros([1, 3], np.float32)), timeout=2
      )
    plain.close()
  finally:
    server.stop()


def test_parse_grpc_channel_arguments():
  assert server_lib.parse_grpc_channel_arguments('') == []
  assert server_lib.parse_grpc_channel_arguments(
      'grpc.max_connection_age_ms=2000, grpc.primary_user_agent=taskology'
  ) == [('grpc.max_connection_age_ms', 2000), ('grpc.primary_user_agent', 'taskology')]
  with pytest.raises(ValueError, match='novalue'):
    server_lib.parse_grpc_channel_arguments('novalue')


def test_serve_tool_runs_until_sigterm(tmp_path):
  export_affine(tmp_path, 1)
  repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  process = subprocess.Popen(
      [
          sys.executable,
          os.path.join('tools', 'serve.py'),
          '--port=0',
          '--model_name=affine',
          '--model_base_path=%s' % (tmp_path / 'affine'),
          '--file_system_poll_wait_seconds=0.5',
      ],
      cwd=repo_root,
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,
      text=True,
  )
  try:
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in process.stdout], daemon=True).start()
    port = None
    deadline = time.monotonic() + 45
    while port is None and time.monotonic() < deadline:
      try:
        line = lines.get(timeout=1)
      except queue.Empty:
        assert process.poll() is None, 'serve.py exited early'
        continue
      match = re.match(r'Running ModelServer at [^ ]+:(\d+)', line)
      port = int(match.group(1)) if match else None
    assert port, 'serve.py did not report its port'
    channel = grpc.insecure_channel('127.0.0.1:%d' % port)
    _, y = _predict_y(
        prediction_service_pb2_grpc.PredictionServiceStub(channel), np.zeros([1, 3], np.float32)
    )
    np.testing.assert_allclose(y, [[1.0, 1.0, 1.0]])
    channel.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
