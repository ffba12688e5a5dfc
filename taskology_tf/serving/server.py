"""A TensorFlow-Serving-compatible gRPC model server, in Python.

Serves SavedModel snapshots written by `taskology_tf.serving.export` (or by anything else
that writes TF Serving's `<base_path>/<version>/saved_model.pb` layout) over TF Serving's
own gRPC API (`tensorflow.serving.PredictionService` and `tensorflow.serving.ModelService`,
from the tensorflow-serving-api protos), configured by TF Serving's `models.config`
(`ModelServerConfig` text proto). A stock `tensorflow_model_server` can therefore replace
it without changing trainers or config files.

What it implements:

* PredictionService.Predict: inputs validated against the signature (names, dtypes,
  shapes), `output_filter`, optional `model_spec.version`; the response's model_spec
  carries name, version and signature name.
* PredictionService.GetModelMetadata: the `signature_def` field (a SignatureDefMap packed
  in an Any), as TF Serving returns it.
* ModelService.GetModelStatus: AVAILABLE for served versions, LOADING while loading, END
  (with the error) for versions that failed to load or were unloaded.
* ModelService.HandleReloadConfigRequest: replaces the model list.
* Classify, Regress and MultiInference answer UNIMPLEMENTED.

Version management follows TF Serving's availability-preserving policy: a background
thread polls every base path each `poll_wait_seconds` (TF Serving's
`--file_system_poll_wait_seconds`), loads the versions the model's `model_version_policy`
asks for (latest{num_versions} by default 1, all, or specific{versions}) and only then
unloads the ones no longer wanted. A version that fails to load (truncated
saved_model.pb, missing variables, ...) is logged with its path and reason and skipped;
the previous version keeps serving. It is retried only once its files change (size or
mtime), not at every poll.

Requests in flight are never broken by a swap: a request takes a reference to the loaded
version it runs on, the served set is replaced under a lock, and an old version is
unloaded only by dropping the server's reference to it.

Differences from tensorflow_model_server (documented, deliberate): binds 127.0.0.1 by
default instead of 0.0.0.0; version labels are not supported (INVALID_ARGUMENT); a model
whose versions have all disappeared from disk keeps serving its last loaded versions; a
failed load is retried when its files change instead of `--max_num_load_retries` times.
"""

import concurrent.futures
import threading
import time

from absl import logging
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from taskology_tf.serving import export as export_lib

DEFAULT_SIGNATURE = 'serving_default'
SIGNATURE_DEF_FIELD = 'signature_def'
_SERVE_TAG = 'serve'
_State = get_model_status_pb2.ModelVersionStatus.State


class ServingError(Exception):
  """A request error carrying the gRPC status code it should be answered with."""

  def __init__(self, code, message):
    super().__init__(message)
    self.code = code
    self.message = message


# ----------------------------------------------------------------------------- config


def load_model_config_file(path):
  """Parses a TF Serving `models.config` file (ModelServerConfig text proto).

  Args:
    path: str, local path or gs:// URL of the text proto.

  Returns:
    model_server_config_pb2.ModelServerConfig, validated (see `validate_config`).

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: a parse error or an invalid config; the message names the file.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError('model config file %s does not exist' % path)
  with tf.io.gfile.GFile(path, 'r') as f:
    text = f.read()
  config = model_server_config_pb2.ModelServerConfig()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as e:
    raise ValueError('Invalid ModelServerConfig text proto in %s: %s' % (path, e)) from e
  try:
    validate_config(config)
  except ValueError as e:
    raise ValueError('Invalid model config file %s: %s' % (path, e)) from e
  return config


def single_model_config(model_name, base_path):
  """The config `--model_name/--model_base_path` stand for, as in TF Serving.

  Args:
    model_name: str.
    base_path: str, directory holding the numeric version directories.

  Returns:
    model_server_config_pb2.ModelServerConfig with one tensorflow-platform model.
  """
  config = model_server_config_pb2.ModelServerConfig()
  model = config.model_config_list.config.add()
  model.name = model_name
  model.base_path = base_path
  model.model_platform = 'tensorflow'
  return config


def _ssl_config_message_class():
  """TF Serving's `tensorflow.serving.SSLConfig`, built from its four-field schema.

  tensorflow-serving-api does not ship ssl_config_pb2, so the message is declared here
  (in a private descriptor pool) to parse the same text files tensorflow_model_server's
  --ssl_config_file reads: server_key, server_cert and custom_ca hold PEM *contents*;
  client_verify asks for client certificates.
  """
  file_proto = descriptor_pb2.FileDescriptorProto(
      name='taskology_tf/serving/ssl_config.proto', package='tensorflow.serving', syntax='proto3'
  )
  message = file_proto.message_type.add(name='SSLConfig')
  field = descriptor_pb2.FieldDescriptorProto
  for number, (name, kind) in enumerate(
      [
          ('server_key', field.TYPE_STRING),
          ('server_cert', field.TYPE_STRING),
          ('custom_ca', field.TYPE_STRING),
          ('client_verify', field.TYPE_BOOL),
      ],
      start=1,
  ):
    message.field.add(name=name, number=number, type=kind, label=field.LABEL_OPTIONAL)
  pool = descriptor_pool.DescriptorPool()
  pool.Add(file_proto)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName('tensorflow.serving.SSLConfig'))


SSLConfig = _ssl_config_message_class()


def load_ssl_config_file(path):
  """Reads a TF Serving SSLConfig text proto into gRPC server credentials.

  Args:
    path: str, file with `server_key: "<PEM>" server_cert: "<PEM>"` and optionally
      `custom_ca: "<PEM>" client_verify: true`.

  Returns:
    grpc.ServerCredentials.

  Raises:
    ValueError: parse error or incomplete config, naming the file.
  """
  with tf.io.gfile.GFile(path, 'r') as f:
    text = f.read()
  config = SSLConfig()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as e:
    raise ValueError('Invalid SSLConfig text proto in %s: %s' % (path, e)) from e
  if not config.server_key or not config.server_cert:
    raise ValueError('SSL config %s needs both server_key and server_cert' % path)
  if config.client_verify and not config.custom_ca:
    raise ValueError('SSL config %s: client_verify needs custom_ca to verify clients' % path)
  return grpc.ssl_server_credentials(
      [(config.server_key.encode(), config.server_cert.encode())],
      root_certificates=config.custom_ca.encode() if config.custom_ca else None,
      require_client_auth=config.client_verify,
  )


def parse_grpc_channel_arguments(text):
  """Parses TF Serving's --grpc_channel_arguments ('k1=v1,k2=v2') into gRPC options.

  Values that parse as integers are passed as ints, others as strings (as TF Serving).

  Args:
    text: str, possibly empty.

  Returns:
    list of (key, value) tuples.

  Raises:
    ValueError: an item without '='.
  """
  options = []
  for item in filter(None, (part.strip() for part in text.split(','))):
    key, sep, value = item.partition('=')
    if not sep or not key:
      raise ValueError('grpc channel argument %r is not key=value' % item)
    try:
      options.append((key.strip(), int(value)))
    except ValueError:
      options.append((key.strip(), value.strip()))
  return options


def validate_config(config):
  """Checks a ModelServerConfig is one this server can serve.

  Args:
    config: model_server_config_pb2.ModelServerConfig.

  Raises:
    ValueError: naming the offending model and field.
  """
  if config.HasField('custom_model_config'):
    raise ValueError('custom_model_config is not supported; use model_config_list')
  names = set()
  for model in config.model_config_list.config:
    if not model.name:
      raise ValueError('a model in model_config_list has no name')
    if model.name in names:
      raise ValueError('model name %r appears twice in model_config_list' % model.name)
    names.add(model.name)
    if not model.base_path:
      raise ValueError('model %r has no base_path' % model.name)
    if model.model_platform not in ('', 'tensorflow'):
      raise ValueError(
          'model %r: model_platform %r is not supported (only "tensorflow")'
          % (model.name, model.model_platform)
      )
    policy = model.model_version_policy
    if policy.WhichOneof('policy_choice') == 'specific' and not policy.specific.versions:
      raise ValueError('model %r: model_version_policy specific{} lists no versions' % model.name)
    if model.version_labels:
      logging.warning('model %r: version_labels are not supported and are ignored.', model.name)


def _aspired_versions(policy, candidates):
  """Applies a ServableVersionPolicy to the loadable versions on disk.

  Args:
    policy: FileSystemStoragePathSourceConfig.ServableVersionPolicy.
    candidates: iterable of int versions present on disk and not known to be broken.

  Returns:
    Sorted list of the versions to serve.
  """
  candidates = sorted(set(candidates))
  choice = policy.WhichOneof('policy_choice')
  if choice == 'all':
    return candidates
  if choice == 'specific':
    wanted = set(policy.specific.versions)
    return [v for v in candidates if v in wanted]
  # Default (unset) is latest{num_versions: 1}; num_versions 0 means the default too.
  num = policy.latest.num_versions if choice == 'latest' else 0
  num = max(int(num), 1)
  return candidates[-num:]


# --------------------------------------------------------------------------- loading


class _Signature:
  """One callable signature of a loaded version and its input/output specs."""

  def __init__(self, name, fn):
    self.name = name
    self.fn = fn
    _, kwargs = fn.structured_input_signature
    self.inputs = dict(kwargs)  # name -> tf.TensorSpec
    self.outputs = sorted(fn.structured_outputs.keys())


class _LoadedVersion:
  """A loaded SavedModel version. Unloading is dropping the last reference to it."""

  def __init__(self, version, path, saved_model, signature_defs, load_seconds):
    self.version = version
    self.path = path
    self.saved_model = saved_model  # Keeps the restored variables alive.
    self.signature_defs = signature_defs  # name -> meta_graph_pb2.SignatureDef
    self.signatures = {name: _Signature(name, fn) for name, fn in saved_model.signatures.items()}
    self.load_seconds = load_seconds


def _fingerprint(path):
  """What identifies the current content of a version directory, for retry decisions.

  A failed version is retried only when this changes (a file added, resized or touched),
  so a permanently broken directory costs one listing per poll, not one load per poll.
  """
  entries = []
  try:
    entries.append(('.', tf.io.gfile.stat(path).mtime_nsec))
    for dirpath, _, files in tf.io.gfile.walk(path):
      for name in files:
        full = export_lib._join(dirpath, name)  # pylint: disable=protected-access
        st = tf.io.gfile.stat(full)
        entries.append((full, st.length, st.mtime_nsec))
  except tf.errors.OpError:
    pass  # Vanished while listing; the next poll sees the new state.
  return tuple(sorted(entries))


def _load_version(version, path):
  """Loads one version directory.

  Args:
    version: int.
    path: str, the version directory.

  Returns:
    _LoadedVersion.

  Raises:
    Exception: anything that makes the version unusable, with a readable message.
  """
  start = time.time()
  pb_path = export_lib._join(path, 'saved_model.pb')  # pylint: disable=protected-access
  if not tf.io.gfile.exists(pb_path):
    raise FileNotFoundError('no saved_model.pb in %s (half-written or not a SavedModel)' % path)
  with tf.io.gfile.GFile(pb_path, 'rb') as f:
    data = f.read()
  proto = saved_model_pb2.SavedModel()
  try:
    proto.ParseFromString(data)
  except Exception as e:  # google.protobuf.message.DecodeError
    raise ValueError(
        'cannot parse %s (%d bytes; truncated or corrupt?): %s' % (pb_path, len(data), e)
    ) from e
  meta_graphs = [m for m in proto.meta_graphs if _SERVE_TAG in m.meta_info_def.tags]
  if not meta_graphs:
    raise ValueError('%s has no MetaGraph tagged %r' % (pb_path, _SERVE_TAG))
  signature_defs = dict(meta_graphs[0].signature_def)
  saved_model = tf.saved_model.load(path, tags=[_SERVE_TAG])
  loaded = _LoadedVersion(version, path, saved_model, signature_defs, time.time() - start)
  if not loaded.signatures:
    raise ValueError('%s has no callable signatures' % path)
  return loaded


class _ModelState:
  """Per-model bookkeeping. `serving` is replaced, never mutated, under `lock`."""

  def __init__(self, model_config):
    self.config = model_config
    self.lock = threading.Lock()
    self.serving = {}  # version -> _LoadedVersion
    self.failed = {}  # version -> (fingerprint, message)
    self.status = {}  # version -> (state, error_code, message)
    self.kept_without_aspired = False

  @property
  def name(self):
    return self.config.name

  def snapshot(self):
    with self.lock:
      return self.serving

  def set_status(self, version, state, error_code=0, message=''):
    with self.lock:
      self.status[version] = (state, error_code, message)


def _error_code(exc):
  """tensorflow.error.Code of an exception (UNKNOWN unless it is a tf OpError)."""
  if isinstance(exc, tf.errors.OpError):
    return exc.error_code
  if isinstance(exc, FileNotFoundError):
    return tf.errors.NOT_FOUND
  return tf.errors.UNKNOWN


# ------------------------------------------------------------------------- servicers


def _format_shape(shape):
  dims = tf.TensorShape(shape).as_list() if tf.TensorShape(shape).rank is not None else None
  if dims is None:
    return '<unknown rank>'
  return '[%s]' % ','.join('?' if d is None else str(d) for d in dims)


def _dtype_name(enum_value):
  try:
    return tf.dtypes.as_dtype(enum_value).name
  except TypeError:
    return 'DataType(%d)' % enum_value


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """tensorflow.serving.PredictionService backed by a ModelServer."""

  def __init__(self, server):
    self._server = server

  def _answer(self, context, method, fn, request):
    try:
      return fn(request)
    except ServingError as e:
      error = e
    except Exception as e:  # pylint: disable=broad-except
      # One bad request never takes the server down.
      logging.exception('%s failed unexpectedly', method)
      error = ServingError(grpc.StatusCode.INTERNAL, '%s: %s: %s' % (method, type(e).__name__, e))
    logging.vlog(1, '%s failed: %s', method, error.message)
    context.abort(error.code, error.message)

  def Predict(self, request, context):
    return self._answer(context, 'Predict', self._server.predict, request)

  def GetModelMetadata(self, request, context):
    return self._answer(context, 'GetModelMetadata', self._server.get_model_metadata, request)

  def Classify(self, request, context):
    context.abort(
        grpc.StatusCode.UNIMPLEMENTED, 'Classify is not implemented by this ' 'server; use Predict'
    )

  def Regress(self, request, context):
    context.abort(
        grpc.StatusCode.UNIMPLEMENTED, 'Regress is not implemented by this ' 'server; use Predict'
    )

  def MultiInference(self, request, context):
    context.abort(
        grpc.StatusCode.UNIMPLEMENTED,
        'MultiInference is not implemented by ' 'this server; use Predict',
    )


class _ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """tensorflow.serving.ModelService backed by a ModelServer."""

  def __init__(self, server):
    self._server = server

  def GetModelStatus(self, request, context):
    try:
      return self._server.get_model_status(request)
    except ServingError as e:
      context.abort(e.code, e.message)

  def HandleReloadConfigRequest(self, request, context):
    response = model_management_pb2.ReloadConfigResponse()
    try:
      self._server.reload_config(request.config)
    except ValueError as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, 'invalid config: %s' % e)
    response.status.error_code = 0
    return response


# ---------------------------------------------------------------------------- server


class ModelServer:
  """An in-process, TF-Serving-compatible gRPC model server.

  Example:
    config = load_model_config_file('models.config')
    server = ModelServer(config, port=8500)
    port = server.start()
    ...
    server.stop(grace=1.0)
  """

  def __init__(
      self,
      config,
      port=0,
      host='127.0.0.1',
      poll_wait_seconds=1.0,
      max_message_bytes=64 << 20,
      server_credentials=None,
      max_workers=8,
      grpc_options=(),
  ):
    """Creates the server; nothing is loaded or bound until `start`.

    Args:
      config: model_server_config_pb2.ModelServerConfig (model_config_list).
      port: int, gRPC port; 0 picks a free ephemeral port.
      host: str, address to bind; loopback by default. '0.0.0.0' serves every interface.
      poll_wait_seconds: float, seconds between file-system polls for new versions;
        <= 0 polls once at start only (as TF Serving's flag with 0).
      max_message_bytes: int, maximum gRPC message size in both directions.
      server_credentials: optional grpc.ServerCredentials (grpc.ssl_server_credentials)
        to serve TLS instead of plaintext.
      max_workers: int, gRPC handler threads (TF Serving's --grpc_max_threads).
      grpc_options: extra (key, value) gRPC server channel arguments (TF Serving's
        --grpc_channel_arguments); they override the message size options.
    """
    validate_config(config)
    self._config = model_server_config_pb2.ModelServerConfig()
    self._config.CopyFrom(config)
    self._requested_port = int(port)
    self._host = host
    self._poll_wait_seconds = float(poll_wait_seconds)
    self._max_message_bytes = int(max_message_bytes)
    self._credentials = server_credentials
    self._max_workers = int(max_workers)
    self._grpc_options = list(grpc_options)
    self._models_lock = threading.Lock()
    self._models = {}
    self._apply_config(self._config)
    self._poll_lock = threading.Lock()
    self._stop_event = threading.Event()
    self._poll_thread = None
    self._grpc_server = None
    self._port = None

  # -- lifecycle

  @property
  def port(self):
    """int, the bound port (None before `start`)."""
    return self._port

  @property
  def address(self):
    """str, 'host:port' a client can dial."""
    return '%s:%d' % (_bracket_host(self._host), self._port)

  def start(self):
    """Loads the initial versions, binds the port and starts serving.

    Like tensorflow_model_server, the first poll runs before the port opens, so a client
    that connects finds every version present on disk at start-up already loaded.

    Returns:
      int, the bound port.

    Raises:
      RuntimeError: if the server is already started or the address cannot be bound.
    """
    if self._grpc_server is not None:
      raise RuntimeError('ModelServer already started on port %d' % self._port)
    self._stop_event.clear()
    self.poll_once()
    defaults = [
        ('grpc.max_send_message_length', self._max_message_bytes),
        ('grpc.max_receive_message_length', self._max_message_bytes),
        # Without this, a second server could silently share the port on Linux.
        ('grpc.so_reuseport', 0),
    ]
    overridden = {key for key, _ in self._grpc_options}
    options = [o for o in defaults if o[0] not in overridden] + self._grpc_options
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix='model-server'
        ),
        options=options,
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionServicer(self), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelServicer(self), server)
    address = '%s:%d' % (_bracket_host(self._host), self._requested_port)
    try:
      if self._credentials is not None:
        port = server.add_secure_port(address, self._credentials)
      else:
        port = server.add_insecure_port(address)
    except RuntimeError as e:
      raise RuntimeError('ModelServer cannot bind %s: %s' % (address, e)) from e
    if not port:
      raise RuntimeError('ModelServer cannot bind %s (port in use?)' % address)
    server.start()
    self._grpc_server = server
    self._port = port
    if self._poll_wait_seconds > 0:
      self._poll_thread = threading.Thread(
          target=self._poll_loop, name='model-server-poll', daemon=True
      )
      self._poll_thread.start()
    logging.info(
        'ModelServer serving %s on %s (%s).',
        sorted(self._models),
        self.address,
        'TLS' if self._credentials else 'plaintext',
    )
    return port

  def stop(self, grace=None):
    """Stops serving and unloads every version.

    Args:
      grace: optional float seconds to let in-flight RPCs finish; None aborts them.
    """
    self._stop_event.set()
    if self._poll_thread is not None:
      self._poll_thread.join()
      self._poll_thread = None
    if self._grpc_server is not None:
      self._grpc_server.stop(grace).wait()
      self._grpc_server = None
      logging.info('ModelServer on port %s stopped.', self._port)
    with self._models_lock:
      for state in self._models.values():
        with state.lock:
          state.serving = {}

  def __enter__(self):
    self.start()
    return self

  def __exit__(self, *exc_info):
    self.stop(grace=1.0)

  # -- inspection helpers (tests, tools)

  def served_versions(self, model_name):
    """Sorted list of int versions currently served for `model_name`."""
    return sorted(self._model(model_name).snapshot())

  def load_failures(self, model_name):
    """Dict version -> reason of versions that failed to load (and were not retried)."""
    state = self._model(model_name)
    with state.lock:
      return {v: msg for v, (_, msg) in state.failed.items()}

  def wait_until_version(self, model_name, version, timeout=30.0):
    """Blocks until `version` of `model_name` is served.

    Args:
      model_name: str.
      version: int.
      timeout: float seconds.

    Raises:
      TimeoutError: naming what is served and any load failure of that version.
    """
    deadline = time.monotonic() + timeout
    while True:
      if version in self.served_versions(model_name):
        return
      if time.monotonic() > deadline:
        raise TimeoutError(
            'model %r version %d not served after %.1fs; serving %s; failure: %s'
            % (
                model_name,
                version,
                timeout,
                self.served_versions(model_name),
                self.load_failures(model_name).get(version),
            )
        )
      time.sleep(0.02)

  # -- version management

  def _apply_config(self, config):
    """Installs a new model list, keeping loaded versions of unchanged base paths."""
    with self._models_lock:
      models = {}
      for model_config in config.model_config_list.config:
        old = self._models.get(model_config.name)
        if old is not None and old.config.base_path == model_config.base_path:
          old.config = model_config  # New version policy applies at the next poll.
          models[model_config.name] = old
        else:
          models[model_config.name] = _ModelState(model_config)
      for name in set(self._models) - set(models):
        logging.info('Model %r removed from the config; unloading it.', name)
      self._models = models

  def reload_config(self, config):
    """Replaces the served models (ModelService.HandleReloadConfigRequest).

    Models whose base_path is unchanged keep their loaded versions; the others are
    (re)loaded before this returns.

    Args:
      config: model_server_config_pb2.ModelServerConfig.

    Raises:
      ValueError: if the config is invalid (nothing changes then).
    """
    validate_config(config)
    self._apply_config(config)
    self.poll_once()

  def _poll_loop(self):
    while not self._stop_event.wait(self._poll_wait_seconds):
      try:
        self.poll_once()
      except Exception:  # pylint: disable=broad-except
        logging.exception('ModelServer poll failed; will retry.')

  def poll_once(self):
    """Polls every model's base path once and loads/unloads versions accordingly."""
    with self._poll_lock:
      with self._models_lock:
        states = list(self._models.values())
      for state in states:
        if self._stop_event.is_set():
          return
        self._poll_model(state)

  def _poll_model(self, state):
    base_path = state.config.base_path
    try:
      on_disk = export_lib.list_versions(base_path)
    except tf.errors.OpError as e:
      logging.warning('Cannot list base path %s of model %r: %s', base_path, state.name, e)
      return
    # Versions that failed before are skipped until their files change.
    candidates = []
    for version in on_disk:
      failure = state.failed.get(version)
      if failure is not None:
        fingerprint = _fingerprint(export_lib._join(base_path, str(version)))  # pylint: disable=protected-access
        if fingerprint == failure[0]:
          continue
        logging.info(
            'Model %r version %d changed on disk since it failed; retrying.', state.name, version
        )
        with state.lock:
          del state.failed[version]
      candidates.append(version)

    current = state.snapshot()
    aspired = _aspired_versions(state.config.model_version_policy, candidates)
    while True:
      to_load = [v for v in reversed(aspired) if v not in current]
      if not to_load:
        break
      # Newest first, and each version is served as soon as it has loaded (as TF Serving's
      # aspired-versions manager does), not after every aspired version has: a peer that
      # exports often must not wait behind the loads of versions already superseded.
      version = to_load[0]
      loaded = self._try_load(state, version)
      if loaded is None:
        candidates.remove(version)
        # Re-apply the policy without it (e.g. fall back to the next newest).
        aspired = _aspired_versions(state.config.model_version_policy, candidates)
        continue
      current = self._publish(state, aspired, {**current, version: loaded})

    if not any(v in current for v in aspired) and current:
      # Availability first: never go from serving something to serving nothing because
      # the aspired versions vanished or failed.
      if not state.kept_without_aspired:
        logging.warning(
            'Model %r: no loadable aspired version on disk (%s); keeping ' 'versions %s.',
            state.name,
            on_disk,
            sorted(current),
        )
        state.kept_without_aspired = True
      return
    state.kept_without_aspired = False
    self._publish(state, aspired, current)

  def _publish(self, state, aspired, loaded):
    """Serves the aspired versions among `loaded` (version -> _LoadedVersion); returns them.

    Versions no longer aspired are unloaded, unless none of the aspired ones is loaded yet
    (then `loaded` is served as it is: availability first).
    """
    current = state.snapshot()
    new_serving = {v: loaded[v] for v in aspired if v in loaded}
    if not new_serving:
      return dict(loaded)
    if set(new_serving) == set(current):
      return new_serving
    with state.lock:
      state.serving = new_serving
      for version in new_serving:
        state.status[version] = (_State.AVAILABLE, 0, '')
      for version in set(current) - set(new_serving):
        state.status[version] = (_State.END, 0, '')
    for version in sorted(set(new_serving) - set(current)):
      logging.info(
          'Model %r: serving version %d from %s (loaded in %.2fs).',
          state.name,
          version,
          new_serving[version].path,
          new_serving[version].load_seconds,
      )
    for version in sorted(set(current) - set(new_serving)):
      logging.info('Model %r: unloaded version %d.', state.name, version)
    return new_serving

  def _try_load(self, state, version):
    """Loads a version, recording (and logging once) why it failed. None on failure."""
    path = export_lib._join(state.config.base_path, str(version))  # pylint: disable=protected-access
    fingerprint = _fingerprint(path)
    state.set_status(version, _State.LOADING)
    try:
      return _load_version(version, path)
    except Exception as e:  # pylint: disable=broad-except
      message = '%s: %s' % (type(e).__name__, e)
      logging.error(
          'Model %r: failed to load version %d from %s: %s. Keeping the '
          'previously loaded versions; will retry only if its files change.',
          state.name,
          version,
          path,
          message,
      )
      with state.lock:
        state.failed[version] = (fingerprint, message)
        state.status[version] = (_State.END, _error_code(e), message)
      return None

  # -- request handling (called from gRPC threads)

  def _model(self, name):
    with self._models_lock:
      state = self._models.get(name)
    if state is None:
      raise ServingError(
          grpc.StatusCode.NOT_FOUND,
          'Servable not found: model %r is not configured on this server' % name,
      )
    return state

  def _resolve(self, model_spec):
    """Finds the loaded version a request's ModelSpec asks for (a reference to it)."""
    if not model_spec.name:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, 'model_spec.name is required')
    if model_spec.version_label:
      raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          'model_spec.version_label (%r) is not supported by this server; '
          'use model_spec.version' % model_spec.version_label,
      )
    state = self._model(model_spec.name)
    serving = state.snapshot()
    if model_spec.HasField('version'):
      version = model_spec.version.value
      loaded = serving.get(version)
      if loaded is None:
        raise ServingError(
            grpc.StatusCode.NOT_FOUND,
            'Servable not found: model %r version %d is not served '
            '(serving versions %s)' % (model_spec.name, version, sorted(serving)),
        )
      return loaded
    if not serving:
      raise ServingError(
          grpc.StatusCode.NOT_FOUND,
          'Servable not found: model %r has no loaded version yet '
          '(base path %s)' % (model_spec.name, state.config.base_path),
      )
    return serving[max(serving)]

  def predict(self, request):
    """Answers a PredictRequest (the work behind PredictionService.Predict).

    Args:
      request: predict_pb2.PredictRequest.

    Returns:
      predict_pb2.PredictResponse.

    Raises:
      ServingError: with INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION.
    """
    loaded = self._resolve(request.model_spec)
    signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = loaded.signatures.get(signature_name)
    if signature is None:
      # TF Serving answers FAILED_PRECONDITION for an unknown signature key.
      raise ServingError(
          grpc.StatusCode.FAILED_PRECONDITION,
          'Serving signature key %r not found in model %r version %d '
          '(available: %s)'
          % (signature_name, request.model_spec.name, loaded.version, sorted(loaded.signatures)),
      )
    unknown = sorted(set(request.inputs) - set(signature.inputs))
    missing = sorted(set(signature.inputs) - set(request.inputs))
    if unknown or missing:
      raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          'signature %r of model %r: %s%s; expected inputs %s'
          % (
              signature_name,
              request.model_spec.name,
              ('unknown input(s) %s' % unknown) if unknown else '',
              (('; ' if unknown else '') + 'missing input(s) %s' % missing) if missing else '',
              sorted(signature.inputs),
          ),
      )
    output_keys = list(request.output_filter) or signature.outputs
    bad_filter = sorted(set(output_keys) - set(signature.outputs))
    if bad_filter:
      raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          'output_filter names %s, which signature %r does not produce '
          '(outputs: %s)' % (bad_filter, signature_name, signature.outputs),
      )

    feeds = {}
    for name, spec in signature.inputs.items():
      tensor_proto = request.inputs[name]
      if tensor_proto.dtype != spec.dtype.as_datatype_enum:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            'input %r: expected dtype %s, got %s'
            % (name, spec.dtype.name, _dtype_name(tensor_proto.dtype)),
        )
      try:
        array = tf.make_ndarray(tensor_proto)
      except Exception as e:  # pylint: disable=broad-except
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT, 'input %r: malformed TensorProto: %s' % (name, e)
        ) from e
      if not spec.shape.is_compatible_with(array.shape):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            'input %r: expected shape %s, got %s'
            % (name, _format_shape(spec.shape), _format_shape(array.shape)),
        )
      feeds[name] = tf.convert_to_tensor(array, dtype=spec.dtype)

    try:
      outputs = signature.fn(**feeds)
    except tf.errors.InvalidArgumentError as e:
      raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          'model %r version %d rejected the inputs: %s'
          % (request.model_spec.name, loaded.version, e.message),
      ) from e

    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = loaded.version
    response.model_spec.signature_name = signature_name
    for key in output_keys:
      response.outputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(outputs[key])))
    return response

  def get_model_metadata(self, request):
    """Answers a GetModelMetadataRequest (signature_def only, as TF Serving).

    Args:
      request: get_model_metadata_pb2.GetModelMetadataRequest.

    Returns:
      get_model_metadata_pb2.GetModelMetadataResponse.

    Raises:
      ServingError.
    """
    loaded = self._resolve(request.model_spec)
    fields = list(request.metadata_field)
    if not fields:
      raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          'GetModelMetadataRequest must name at least one metadata_field '
          '(supported: %r)' % SIGNATURE_DEF_FIELD,
      )
    for field in fields:
      if field != SIGNATURE_DEF_FIELD:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            'Metadata field %r is not supported (supported: %r)' % (field, SIGNATURE_DEF_FIELD),
        )
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in loaded.signature_defs.items():
      signature_def_map.signature_def[name].CopyFrom(signature_def)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = loaded.version
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map)
    return response

  def get_model_status(self, request):
    """Answers a GetModelStatusRequest.

    Args:
      request: get_model_status_pb2.GetModelStatusRequest.

    Returns:
      get_model_status_pb2.GetModelStatusResponse listing every version this server has
      seen (AVAILABLE, LOADING, or END with the load error), or only the requested one.

    Raises:
      ServingError: NOT_FOUND for an unknown model, a model with no version seen yet
        (as TF Serving), or an unknown requested version.
    """
    if not request.model_spec.name:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, 'model_spec.name is required')
    state = self._model(request.model_spec.name)
    with state.lock:
      status = dict(state.status)
    if request.model_spec.HasField('version'):
      version = request.model_spec.version.value
      if version not in status:
        raise ServingError(
            grpc.StatusCode.NOT_FOUND,
            'Could not find version %d of model %r' % (version, state.name),
        )
      status = {version: status[version]}
    if not status:
      raise ServingError(
          grpc.StatusCode.NOT_FOUND, 'Could not find any versions of model %r' % state.name
      )
    response = get_model_status_pb2.GetModelStatusResponse()
    for version in sorted(status):
      state_enum, code, message = status[version]
      entry = response.model_version_status.add()
      entry.version = version
      entry.state = state_enum
      entry.status.error_code = code
      entry.status.error_message = message
    return response


def _bracket_host(host):
  """IPv6 literals need brackets in a gRPC address."""
  if ':' in host and not host.startswith('['):
    return '[%s]' % host
  return host
