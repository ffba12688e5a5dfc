"""Tests for taskology_tf.serving.client: results, staleness, retries, restarts, prefetch."""

import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.serving import client as client_lib
from taskology_tf.serving import server as server_lib
from tests.serving.test_export import export_affine

pytestmark = pytest.mark.timeout(60)


def _server(base_path, port=0):
  server = server_lib.ModelServer(
      server_lib.single_model_config('affine', str(base_path)), port=port, poll_wait_seconds=0.1
  )
  server.start()
  return server


@pytest.fixture
def served(tmp_path):
  """Model 'affine' version 1: y = 2x + 1, exported just before the server starts."""
  before = time.time()
  export_affine(tmp_path, 1, w=2.0, b=1.0)
  after = time.time()
  server = _server(tmp_path / 'affine')
  yield tmp_path, server, (before, after)
  server.stop()


def test_tensor_proto_round_trip():
  for array in (
      np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
      np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
      np.array([1.5, -2.25], np.float64),
      np.array(7, np.int64),
      np.array([[True, False]]),
      np.zeros([0, 3], np.float32),
      np.arange(4, dtype=np.float16),
  ):
    proto = client_lib.to_tensor_proto(array)
    np.testing.assert_array_equal(tf.make_ndarray(proto), array)
    decoded = client_lib.from_tensor_proto(proto)
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)
    decoded_tf = client_lib.from_tensor_proto(tf.make_tensor_proto(array))
    np.testing.assert_array_equal(decoded_tf, array)
  # Typed-value encoding (not tensor_content), with TF's repeat-the-last-value rule.
  proto = tf.make_tensor_proto(3.0, shape=[2, 2])
  np.testing.assert_array_equal(client_lib.from_tensor_proto(proto), np.full([2, 2], 3.0))


def test_predict_result_and_staleness(served):
  tmp_path, server, (before, after) = served
  with client_lib.PeerClient('127.0.0.1:%d' % server.port, 'affine') as client:
    result = client.predict({'x': np.array([[0.0, 1.0, 2.0]], np.float32)})
    np.testing.assert_allclose(result.outputs['y'], [[1.0, 3.0, 5.0]])  # y = 2x + 1.
    assert set(result.outputs) == {'y'}  # Snapshot metadata stripped.
    assert result.version == 1
    assert before <= result.snapshot_unix_time <= after
    assert result.age_seconds >= 0
    assert result.latency_seconds > 0
    assert (
        result.request_bytes
        == client.make_request({'x': np.array([[0.0, 1.0, 2.0]], np.float32)}).ByteSize()
    )
    assert result.response_bytes > 0
    assert client.available_versions() == [1]
    assert client.latest_version() == 1
    assert list(client.signature_def().inputs) == ['x']

    export_affine(tmp_path, 2, w=3.0, b=0.0)
    server.wait_until_version('affine', 2, timeout=20)
    result = client.predict({'x': np.ones([1, 3], np.float32)})
    assert result.version == 2 and result.snapshot_unix_time > after
    np.testing.assert_allclose(result.outputs['y'], [[3.0, 3.0, 3.0]])
    assert client.latest_version() == 2


def test_request_errors_are_not_retried(served):
  _, server, _ = served
  target = '127.0.0.1:%d' % server.port
  # A long backoff makes any retry visible in the elapsed time.
  with client_lib.PeerClient(target, 'affine', backoff_seconds=5.0) as client:
    with pytest.raises(client_lib.PeerRequestError) as info:
      client.predict({'x': np.ones([1, 3], np.int32)})
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'x'" in str(info.value) and target in str(info.value)
    with pytest.raises(client_lib.PeerRequestError) as info:
      client.predict({'x': np.ones([1, 3], np.float32)}, version=42)
    assert info.value.code == grpc.StatusCode.NOT_FOUND
  with client_lib.PeerClient(target, 'other', backoff_seconds=5.0) as client:
    with pytest.raises(client_lib.PeerRequestError, match='other'):
      client.predict({'x': np.ones([1, 3], np.float32)})


def test_no_versions_yet(tmp_path):
  server = _server(tmp_path / 'empty')
  try:
    with client_lib.PeerClient('127.0.0.1:%d' % server.port, 'affine') as client:
      assert client.latest_version() is None
      assert client.available_versions() == []
      with pytest.raises(client_lib.PeerRequestError) as info:
        client.predict({'x': np.ones([1, 3], np.float32)})
      assert info.value.code == grpc.StatusCode.NOT_FOUND
  finally:
    server.stop()


def test_no_server_fails_in_bounded_time(dead_port):
  target = '127.0.0.1:%d' % dead_port
  with client_lib.PeerClient(
      target, 'depth', retries=2, backoff_seconds=0.05, timeout_seconds=2.0
  ) as client:
    with pytest.raises(client_lib.PeerUnavailableError) as info:
      client.predict({'image': np.zeros([1, 2, 2, 3], np.uint8)})
    assert target in str(info.value) and "'depth'" in str(info.value)
    assert '3 attempt' in str(info.value)


def test_server_killed_and_restarted_on_same_port(served):
  tmp_path, server, _ = served
  port = server.port
  x = {'x': np.ones([1, 3], np.float32)}
  with client_lib.PeerClient(
      '127.0.0.1:%d' % port, 'affine', retries=2, backoff_seconds=0.1, timeout_seconds=2.0
  ) as client:
    assert client.predict(x).version == 1
    server.stop()
    with pytest.raises(client_lib.PeerUnavailableError):
      client.predict(x)

    restarted = _server(tmp_path / 'affine', port=port)
    try:
      # The channel reconnects on its own (reconnect backoff capped at 1 s); the
      # client's retries cover that window, so a bounded number of calls suffices.
      result = None
      for _ in range(5):
        try:
          result = client.predict(x)
          break
        except client_lib.PeerUnavailableError:
          continue
      assert result is not None and result.version == 1
      np.testing.assert_allclose(result.outputs['y'], [[3.0, 3.0, 3.0]])
      # Once the channel reports ready, the very next call is answered.
      restarted.stop()
      restarted = _server(tmp_path / 'affine', port=port)
      assert client.wait_until_ready(30)
      assert client.predict(x).version == 1
    finally:
      restarted.stop()


def test_wait_until_ready_without_server_returns_false(dead_port):
  with client_lib.PeerClient('127.0.0.1:%d' % dead_port, 'depth') as client:
    assert not client.wait_until_ready(0.5)


def test_prefetch_results_are_keyed(served):
  _, server, _ = served
  with client_lib.PeerClient('127.0.0.1:%d' % server.port, 'affine') as client:
    with client_lib.PrefetchingPeerClient(client, max_in_flight=2) as prefetch:
      inputs = np.zeros([1, 3], np.float32)
      for key in range(5):
        inputs[:] = key
        prefetch.submit(key, {'x': inputs})  # Reusing the buffer is safe.
      with pytest.raises(KeyError):
        prefetch.submit(0, {'x': inputs})
      for key in (3, 0, 4, 1, 2):
        result = prefetch.result(key, timeout=20)
        np.testing.assert_allclose(result.outputs['y'], np.full([1, 3], 2.0 * key + 1.0))
        assert result.version == 1
      assert prefetch.pending() == []
      with pytest.raises(KeyError):
        prefetch.result(0)


class _SlowClient:
  """Duck-typed stand-in for PeerClient whose answers take `delay` seconds."""

  target, model_name = 'fake:0', 'slow'

  def __init__(self, delay, error=None):
    self.delay, self.error = delay, error
    self.released = threading.Event()

  def make_request(self, inputs, version=None):
    return inputs

  def predict_request(self, request):
    self.released.wait(self.delay)
    if self.error is not None:
      raise self.error
    return request


def test_prefetch_timeout_and_failure_raise_unavailable():
  slow = _SlowClient(delay=10.0)
  prefetch = client_lib.PrefetchingPeerClient(slow)
  prefetch.submit('a', {'x': 1})
  with pytest.raises(client_lib.PeerUnavailableError, match="'a'"):
    prefetch.result('a', timeout=0.2)
  slow.released.set()
  prefetch.close()

  failing = _SlowClient(delay=0.0, error=client_lib.PeerUnavailableError('down'))
  with client_lib.PrefetchingPeerClient(failing) as prefetch:
    prefetch.submit('b', {'x': 1})
    with pytest.raises(client_lib.PeerUnavailableError, match='down'):
      prefetch.result('b', timeout=5)
