"""Peer client: query a stale copy of another task's network over TF Serving's gRPC API.

Built on the stock `prediction_service_pb2_grpc.PredictionServiceStub` and
`model_service_pb2_grpc.ModelServiceStub`, so it talks to our `ModelServer` and to a real
`tensorflow_model_server` alike.

Failure semantics a trainer can rely on:
  * every RPC carries a deadline (`timeout_seconds`), so no call blocks forever;
  * UNAVAILABLE and DEADLINE_EXCEEDED (peer down, restarting, overloaded) are retried
    with exponential backoff, then raise `PeerUnavailableError`: the trainer may skip the
    consistency term for this step and carry on;
  * any other error (INVALID_ARGUMENT, NOT_FOUND, ...) is a caller or deployment bug and
    raises `PeerRequestError` at once, without retrying.

Staleness: snapshots exported by `taskology_tf.serving.export` answer with two extra
outputs, `snapshot_version` and `snapshot_unix_time`; they are stripped from
`PeerResult.outputs` and reported as `PeerResult.version` / `.snapshot_unix_time`.
"""

import concurrent.futures
import dataclasses
import threading
import time
from typing import Dict, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from taskology_tf.serving import export as export_lib

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE


# ----------------------------------------------------------------------------- errors


class PeerError(Exception):
  """Base class of peer query failures."""

  def __init__(self, message, target=None, model_name=None, code=None):
    super().__init__(message)
    self.target = target
    self.model_name = model_name
    self.code = code  # grpc.StatusCode or None.


class PeerUnavailableError(PeerError):
  """The peer could not be reached (after retries) or did not answer in time."""


class PeerRequestError(PeerError):
  """The peer answered with a non-retryable error (bad request, unknown model/version)."""


# ----------------------------------------------------------------------- tensor protos


def to_tensor_proto(array):
  """Encodes a numpy array as a TensorProto (raw little-endian `tensor_content`).

  Args:
    array: array-like of a numeric or bool dtype (strings go through
      tf.make_tensor_proto).

  Returns:
    tensor_pb2.TensorProto.
  """
  array = np.asarray(array)
  if array.dtype.kind in 'USO':
    return tf.make_tensor_proto(array)
  dtype = tf.dtypes.as_dtype(array.dtype)
  proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
  for size in array.shape:
    proto.tensor_shape.dim.add().size = size
  # TensorProto.tensor_content is little-endian on every platform TF supports.
  if array.dtype.byteorder == '>':
    array = array.astype(array.dtype.newbyteorder('<'))
  proto.tensor_content = np.ascontiguousarray(array).tobytes()
  return proto


def from_tensor_proto(proto):
  """Decodes a TensorProto into a (writable) numpy array.

  Args:
    proto: tensor_pb2.TensorProto, with `tensor_content` or typed `*_val` fields.

  Returns:
    np.ndarray.
  """
  if proto.tensor_content:
    dtype = np.dtype(tf.dtypes.as_dtype(proto.dtype).as_numpy_dtype).newbyteorder('<')
    shape = [d.size for d in proto.tensor_shape.dim]
    return (
        np.frombuffer(proto.tensor_content, dtype=dtype)
        .reshape(shape)
        .astype(dtype.newbyteorder('='), copy=True)
    )
  return tf.make_ndarray(proto)


# ----------------------------------------------------------------------------- client


@dataclasses.dataclass
class PeerResult:
  """One peer answer.

  Attributes:
    outputs: dict name -> np.ndarray, the signature outputs without the snapshot
      metadata.
    version: int, the model version that answered (from the response's model_spec).
    snapshot_unix_time: float or None, when that version was exported (seconds since
      the epoch), if the snapshot carries it.
    latency_seconds: float, wall time of the successful RPC (serialisation included).
    request_bytes: int, serialized PredictRequest size (bandwidth accounting).
    response_bytes: int, serialized PredictResponse size.
    received_unix_time: float, when the answer arrived.
  """

  outputs: Dict[str, np.ndarray]
  version: int
  snapshot_unix_time: Optional[float]
  latency_seconds: float
  request_bytes: int
  response_bytes: int
  received_unix_time: float = 0.0

  @property
  def age_seconds(self):
    """Seconds between the snapshot's export and this answer (None if unknown)."""
    if self.snapshot_unix_time is None:
      return None
    return self.received_unix_time - self.snapshot_unix_time


class PeerClient:
  """Queries one model of a TF-Serving-compatible server.

  Thread-safe: one client (one gRPC channel) may be shared by several threads.
  """

  def __init__(
      self,
      target,
      model_name,
      signature_name='serving_default',
      timeout_seconds=10.0,
      max_message_bytes=64 << 20,
      retries=3,
      backoff_seconds=0.2,
      channel_credentials=None,
  ):
    """Opens a channel (lazily connected).

    Args:
      target: str, 'host:port' of the server.
      model_name: str, model name in the server's config.
      signature_name: str, signature to call.
      timeout_seconds: float, deadline of every single RPC attempt.
      max_message_bytes: int, maximum gRPC message size in both directions.
      retries: int, extra attempts after the first for UNAVAILABLE/DEADLINE_EXCEEDED.
      backoff_seconds: float, sleep before the first retry; doubles at each retry.
      channel_credentials: optional grpc.ChannelCredentials (grpc.ssl_channel_credentials)
        for a TLS server.
    """
    self.target = target
    self.model_name = model_name
    self.signature_name = signature_name
    self._timeout = float(timeout_seconds)
    self._retries = int(retries)
    self._backoff = float(backoff_seconds)
    options = [
        ('grpc.max_send_message_length', max_message_bytes),
        ('grpc.max_receive_message_length', max_message_bytes),
        # gRPC's default reconnect backoff grows to 120 s, which would keep a channel
        # failing long after a restarted peer is back; cap it at 1 s.
        ('grpc.initial_reconnect_backoff_ms', 100),
        ('grpc.min_reconnect_backoff_ms', 100),
        ('grpc.max_reconnect_backoff_ms', 1000),
    ]
    if channel_credentials is not None:
      self._channel = grpc.secure_channel(target, channel_credentials, options=options)
    else:
      self._channel = grpc.insecure_channel(target, options=options)
    self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

  def close(self):
    """Closes the channel."""
    self._channel.close()

  def wait_until_ready(self, timeout_seconds):
    """Blocks until the channel is connected, at most `timeout_seconds`; returns whether it is.

    A channel that lost its server reconnects on its own (backoff capped at 1 s); this is for
    callers that want to know it has, e.g. a trainer waiting for the model server at start-up.
    """
    try:
      grpc.channel_ready_future(self._channel).result(timeout=timeout_seconds)
      return True
    except grpc.FutureTimeoutError:
      return False

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()

  def _call(self, method, request):
    """Calls a unary RPC with a deadline, retrying transient failures.

    Args:
      method: a stub's unary-unary multicallable.
      request: the request proto.

    Returns:
      The response proto.

    Raises:
      PeerUnavailableError: after `retries` retries of UNAVAILABLE/DEADLINE_EXCEEDED.
      PeerRequestError: at once for any other status.
    """
    delay = self._backoff
    attempts = self._retries + 1
    for attempt in range(attempts):
      try:
        return method(request, timeout=self._timeout)
      except grpc.RpcError as e:
        code = e.code() if hasattr(e, 'code') else grpc.StatusCode.UNKNOWN
        details = e.details() if hasattr(e, 'details') else str(e)
        if code not in _RETRYABLE:
          raise PeerRequestError(
              'peer %s (model %r) rejected the request: %s: %s'
              % (self.target, self.model_name, code.name, details),
              target=self.target,
              model_name=self.model_name,
              code=code,
          ) from e
        if attempt + 1 == attempts:
          raise PeerUnavailableError(
              'peer %s (model %r) unavailable after %d attempt(s): %s: %s'
              % (self.target, self.model_name, attempts, code.name, details),
              target=self.target,
              model_name=self.model_name,
              code=code,
          ) from e
        time.sleep(delay)
        delay *= 2

  def make_request(self, inputs, version=None):
    """Builds (and so snapshots) a PredictRequest.

    Args:
      inputs: dict name -> np.ndarray matching the signature (e.g. `image`:
        [B, H, W, 3] uint8).
      version: optional int, a specific version; None asks for the latest.

    Returns:
      predict_pb2.PredictRequest.
    """
    request = predict_pb2.PredictRequest()
    request.model_spec.name = self.model_name
    request.model_spec.signature_name = self.signature_name
    if version is not None:
      request.model_spec.version.value = int(version)
    for name, value in inputs.items():
      request.inputs[name].CopyFrom(to_tensor_proto(value))
    return request

  def predict_request(self, request):
    """Sends a request built by `make_request`.

    Args:
      request: predict_pb2.PredictRequest.

    Returns:
      PeerResult.

    Raises:
      PeerUnavailableError, PeerRequestError.
    """
    request_bytes = request.ByteSize()
    start = time.perf_counter()
    response = self._call(self._prediction.Predict, request)
    latency = time.perf_counter() - start
    received = time.time()
    outputs = {k: from_tensor_proto(v) for k, v in response.outputs.items()}
    snapshot_version = outputs.pop(export_lib.SNAPSHOT_VERSION_KEY, None)
    snapshot_time = outputs.pop(export_lib.SNAPSHOT_TIME_KEY, None)
    if response.model_spec.HasField('version'):
      version = int(response.model_spec.version.value)
    elif snapshot_version is not None:
      version = int(snapshot_version)
    else:
      version = -1
    return PeerResult(
        outputs=outputs,
        version=version,
        snapshot_unix_time=None if snapshot_time is None else float(snapshot_time),
        latency_seconds=latency,
        request_bytes=request_bytes,
        response_bytes=response.ByteSize(),
        received_unix_time=received,
    )

  def predict(self, inputs, version=None):
    """Runs the peer's signature on `inputs`.

    Args:
      inputs: dict name -> np.ndarray (e.g. `image`: [B, H, W, 3] uint8).
      version: optional int; None means the latest version the server has loaded.

    Returns:
      PeerResult.

    Raises:
      PeerUnavailableError: peer unreachable/too slow after retries.
      PeerRequestError: bad inputs, unknown model or version (not retried).
    """
    return self.predict_request(self.make_request(inputs, version))

  def available_versions(self):
    """Sorted list of the versions the server reports AVAILABLE ([] if none yet).

    Raises:
      PeerUnavailableError, PeerRequestError (other than NOT_FOUND).
    """
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = self.model_name
    try:
      response = self._call(self._models.GetModelStatus, request)
    except PeerRequestError as e:
      # TF Serving answers NOT_FOUND while a model has no version yet.
      if e.code == grpc.StatusCode.NOT_FOUND:
        return []
      raise
    return sorted(s.version for s in response.model_version_status if s.state == _AVAILABLE)

  def latest_version(self):
    """The newest AVAILABLE version, or None if the server has none yet."""
    versions = self.available_versions()
    return versions[-1] if versions else None

  def signature_def(self, version=None):
    """The SignatureDef of `signature_name` (GetModelMetadata).

    Args:
      version: optional int.

    Returns:
      meta_graph_pb2.SignatureDef.
    """
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = self.model_name
    if version is not None:
      request.model_spec.version.value = int(version)
    request.metadata_field.append('signature_def')
    response = self._call(self._prediction.GetModelMetadata, request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata['signature_def'].Unpack(signature_map)
    if self.signature_name not in signature_map.signature_def:
      raise PeerRequestError(
          'peer %s model %r has no signature %r'
          % (self.target, self.model_name, self.signature_name),
          target=self.target,
          model_name=self.model_name,
      )
    return signature_map.signature_def[self.signature_name]


class PrefetchingPeerClient:
  """Overlaps peer queries with training: submit the next batch's query, train, collect.

  Example:
    prefetch = PrefetchingPeerClient(PeerClient('host:8500', 'depth'))
    prefetch.submit(step + 1, {'image': next_images})
    ...train on step...
    peer = prefetch.result(step + 1, timeout=30)
  """

  def __init__(self, client, max_in_flight=2):
    """Wraps a client.

    Args:
      client: PeerClient (not closed by this object).
      max_in_flight: int, queries running concurrently; further submissions queue.
    """
    self._client = client
    self._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=max_in_flight, thread_name_prefix='peer-prefetch'
    )
    self._futures = {}
    self._lock = threading.Lock()

  def submit(self, key, inputs, version=None):
    """Starts a query in the background.

    The request is serialized before this returns, so the caller may reuse `inputs`.

    Args:
      key: hashable, how `result` finds it (e.g. the step it is for).
      inputs: dict name -> np.ndarray.
      version: optional int.

    Raises:
      KeyError: if `key` is already pending.
    """
    request = self._client.make_request(inputs, version)
    with self._lock:
      if key in self._futures:
        raise KeyError('a query with key %r is already pending' % (key,))
      self._futures[key] = self._executor.submit(self._client.predict_request, request)

  def pending(self):
    """Keys submitted and not yet collected."""
    with self._lock:
      return list(self._futures)

  def result(self, key, timeout=None):
    """Collects a submitted query's answer.

    Args:
      key: the key given to `submit`.
      timeout: optional float seconds to wait. Even with None the wait is bounded by
        the client's deadlines and retries.

    Returns:
      PeerResult.

    Raises:
      KeyError: unknown key.
      PeerUnavailableError: the query failed to reach the peer or timed out here.
      PeerRequestError: the peer rejected the request.
    """
    with self._lock:
      if key not in self._futures:
        raise KeyError('no pending query with key %r' % (key,))
      future = self._futures.pop(key)
    try:
      return future.result(timeout)
    except concurrent.futures.TimeoutError as e:
      future.cancel()
      raise PeerUnavailableError(
          'peer %s (model %r): no answer for key %r within %.1fs'
          % (self._client.target, self._client.model_name, key, timeout),
          target=self._client.target,
          model_name=self._client.model_name,
          code=grpc.StatusCode.DEADLINE_EXCEEDED,
      ) from e

  def close(self):
    """Cancels queued queries and stops the worker threads (does not close the client)."""
    with self._lock:
      self._futures.clear()
    self._executor.shutdown(wait=False, cancel_futures=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()
