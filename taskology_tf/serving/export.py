"""SavedModel snapshots in TensorFlow Serving's on-disk layout.

A task trainer writes a snapshot every N steps with a `SnapshotWriter`. Each snapshot lands in

    <snapshot_root>/<model_name>/<version>/saved_model.pb
                                          /variables/...

which is the layout `tensorflow_model_server --model_base_path=<snapshot_root>/<model_name>`
(and our own `taskology_tf.serving.server.ModelServer`) polls for new versions.

Atomicity: the SavedModel is first written into a hidden sibling directory whose name is
not a number (`.tmp-<version>-<uuid>`), which TF Serving's file-system source ignores, and
only then renamed to `<version>`. On a local (POSIX) file system the rename is atomic, so a
server never sees a half-written numeric directory. On object stores (gs://) a directory
rename is a copy followed by a delete and is *not* atomic; the server then relies on its
load-failure handling (a failed version is skipped and retried once its files change).

Staleness: with `extra_outputs=True` the serving signature gains two scalar outputs,
`snapshot_version` (int64, the version number) and `snapshot_unix_time` (float64, export
wall-clock time in seconds since the epoch), so every Predict answer tells the caller how
stale the peer is, in steps and in seconds. Both are ordinary signature outputs, so a stock
TF Serving passes them through too; `taskology_tf.serving.client` strips them from the
outputs it hands to the trainer.
"""

import inspect
import time
import uuid

from absl import logging
import tensorflow as tf
import tf_keras

SNAPSHOT_VERSION_KEY = 'snapshot_version'
SNAPSHOT_TIME_KEY = 'snapshot_unix_time'
SERVING_SIGNATURE_KEY = 'serving_default'

# Temporary directories are hidden and non-numeric, so TF Serving never treats them as a
# version; `_TMP_PREFIX` is also how pruning recognises leftovers of crashed exports.
_TMP_PREFIX = '.tmp-'
_OLD_PREFIX = '.old-'
# A temp dir older than this is assumed to belong to a crashed export (a live export of
# even a large model finishes well within it).
STALE_TMP_SECONDS = 15 * 60


def _join(*parts):
  """Joins path parts, tolerating a trailing '/' on directory names (gs:// listings)."""
  return '/'.join([parts[0].rstrip('/')] + [p.strip('/') for p in parts[1:]])


def _is_version_name(name):
  """Whether a directory entry names a servable version (a non-negative integer)."""
  return name.isdigit()


def list_versions(base_path):
  """Lists the numeric version directories of a model's base path.

  Args:
    base_path: str, `<snapshot_root>/<model_name>` (local path or gs:// URL).

  Returns:
    Sorted list of int versions; empty if `base_path` does not exist. Non-numeric
    entries (temporary export directories, stray files) are ignored, as TF Serving does.
  """
  if not tf.io.gfile.isdir(base_path):
    return []
  versions = []
  for entry in tf.io.gfile.listdir(base_path):
    name = entry.rstrip('/')
    if _is_version_name(name) and tf.io.gfile.isdir(_join(base_path, name)):
      versions.append(int(name))
  return sorted(versions)


def _serving_input_names(serving_fn):
  """Python parameter names of `serving_fn`, aligned with its input_signature."""
  if not isinstance(serving_fn, tf.types.experimental.PolymorphicFunction):
    raise TypeError(
        'serving_fn must be a tf.function with an input_signature, got %r' % (serving_fn,)
    )
  input_signature = serving_fn.input_signature
  if input_signature is None:
    raise ValueError(
        'serving_fn %r has no input_signature; serving signatures need fixed '
        'input specs (e.g. image: uint8 [None, H, W, 3]).' % serving_fn.name
    )
  if any(not isinstance(spec, tf.TensorSpec) for spec in input_signature):
    raise ValueError(
        'serving_fn input_signature must be a flat list of tf.TensorSpec, got '
        '%r' % (input_signature,)
    )
  params = list(inspect.signature(serving_fn.python_function).parameters.values())
  if any(p.kind == p.VAR_KEYWORD for p in params):
    raise ValueError('serving_fn must not take **kwargs.')
  if any(p.kind == p.VAR_POSITIONAL for p in params):
    # `def serve(*args)`: the signature's input names can only come from the specs.
    names = [spec.name for spec in input_signature]
    if not all(names):
      raise ValueError(
          'serving_fn takes *args, so every TensorSpec in its input_signature '
          'needs a name (the signature input key), got %r' % (input_signature,)
      )
    return names, input_signature
  # A method decorated with tf.function may still expose `self`; the input signature
  # describes the trailing parameters.
  params = params[len(params) - len(input_signature) :]
  return [p.name for p in params], input_signature


def _with_snapshot_outputs(serving_fn, version_var, time_var):
  """Wraps serving_fn so its output dict also carries the snapshot's version and time.

  Args:
    serving_fn: tf.function with an input_signature, returning a dict of tensors.
    version_var: scalar int64 tf.Variable holding the snapshot version.
    time_var: scalar float64 tf.Variable holding the export time (seconds since the epoch).

  Returns:
    A tf.function with the same input signature (and hence the same signature input
    names) whose outputs add `snapshot_version` and `snapshot_unix_time`. The two are read
    from variables, so one trace serves every version: a writer assigns them, then saves.
  """
  names, input_signature = _serving_input_names(serving_fn)

  def serve_with_snapshot_info(*args):
    outputs = serving_fn(*args)
    if not isinstance(outputs, dict):
      raise TypeError('serving_fn must return a dict of tensors, got %r' % type(outputs))
    for key in (SNAPSHOT_VERSION_KEY, SNAPSHOT_TIME_KEY):
      if key in outputs:
        raise ValueError(
            'serving_fn output %r clashes with the snapshot metadata output; '
            'rename it or pass extra_outputs=False.' % key
        )
    outputs = dict(outputs)
    outputs[SNAPSHOT_VERSION_KEY] = tf.identity(version_var)
    outputs[SNAPSHOT_TIME_KEY] = tf.identity(time_var)
    return outputs

  # Same parameter names as the original, so the SavedModel signature's input keys are
  # exactly the ones serving_fn alone would produce (TensorSpec names, else arg names).
  serve_with_snapshot_info.__signature__ = inspect.Signature(
      [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
  )
  return tf.function(serve_with_snapshot_info, input_signature=input_signature)


def _mtime_seconds(path):
  try:
    return tf.io.gfile.stat(path).mtime_nsec / 1e9
  except tf.errors.OpError:
    return None


def _prune(base_path, keep_last, protect_version):
  """Deletes all but the newest `keep_last` versions and stale temp directories."""
  versions = list_versions(base_path)
  if keep_last is not None and keep_last > 0:
    for old in versions[:-keep_last]:
      if old == protect_version:
        continue
      path = _join(base_path, str(old))
      try:
        tf.io.gfile.rmtree(path)
        logging.info('Pruned snapshot %s (keep_last=%d).', path, keep_last)
      except tf.errors.OpError as e:
        # A concurrent pruner or a server reading it: pruning is best effort.
        logging.warning('Could not prune snapshot %s: %s', path, e)
  now = time.time()
  for entry in tf.io.gfile.listdir(base_path):
    name = entry.rstrip('/')
    if not (name.startswith(_TMP_PREFIX) or name.startswith(_OLD_PREFIX)):
      continue
    path = _join(base_path, name)
    mtime = _mtime_seconds(path)
    if mtime is not None and now - mtime > STALE_TMP_SECONDS:
      try:
        tf.io.gfile.rmtree(path)
        logging.info('Removed stale temporary export directory %s.', path)
      except tf.errors.OpError as e:
        logging.warning('Could not remove stale temporary directory %s: %s', path, e)


class SnapshotWriter:
  """Writes successive snapshots of one live network, tracing its signature only once.

  A trainer exporting every few steps keeps one writer: the serving signature (with the
  snapshot metadata outputs, read from two variables) is traced at the first `write`, and
  each later `write` only assigns the version and time and serialises. For a tf_keras model
  only its variables are attached to the SavedModel's root, not the Keras object, which
  spares tf.saved_model.save from tracing and serialising every layer's call functions:
  on the 48x64 Table 3 U-Net that makes an export 11x and a server load 3x faster
  (`tools/benchmark_export.py`, BENCHMARKS.md). The signature is all TF Serving reads, so
  nothing it needs is lost.

  Args:
    module: tf.Module (e.g. a tf_keras Model) owning every variable serving_fn reads. A
      tf_keras Model contributes its variables; any other module is attached whole, so
      resources it owns (tables, ...) are saved too.
    serving_fn: tf.function with a fixed input_signature taking named tensors (e.g.
      `image: [None, H, W, 3] uint8`) and returning a dict of float32 tensors. Exported
      as the 'serving_default' signature.
    snapshot_root: str, root directory of all models' snapshots (tf.io.gfile path, so
      gs:// works).
    model_name: str, the model's name; its base path is `<snapshot_root>/<model_name>`.
    keep_last: int or None; keep only this many newest numeric versions (the new one
      included) and delete older ones. None or 0 keeps everything.
    extra_outputs: bool; append the scalar outputs `snapshot_version` [] int64 and
      `snapshot_unix_time` [] float64 (seconds since the epoch at export) to the
      signature.
  """

  def __init__(
      self, module, serving_fn, snapshot_root, model_name, keep_last=5, extra_outputs=True
  ):
    _serving_input_names(serving_fn)  # Argument checks before anything is written.
    self.base_path = _join(snapshot_root, model_name)
    self.keep_last = keep_last
    self._root = tf.Module()
    self._keras_model = module if isinstance(module, tf_keras.Model) else None
    if self._keras_model is None:
      self._root.model = module
    if extra_outputs:
      self._root.snapshot_version = tf.Variable(
          0, dtype=tf.int64, trainable=False, name=SNAPSHOT_VERSION_KEY
      )
      self._root.snapshot_unix_time = tf.Variable(
          0.0, dtype=tf.float64, trainable=False, name=SNAPSHOT_TIME_KEY
      )
      self._root.serve = _with_snapshot_outputs(
          serving_fn, self._root.snapshot_version, self._root.snapshot_unix_time
      )
    else:
      self._root.serve = serving_fn
    self._extra_outputs = extra_outputs
    self._concrete = None

  def write(self, version, overwrite=False):
    """Exports the module's current weights as snapshot `version`, atomically.

    Args:
      version: int >= 0, the version directory name; by convention the training step.
      overwrite: bool. If `<version>` already exists: False (default) leaves it untouched
        and returns its path (a restarted trainer re-exporting a step it already exported;
        servers that loaded it would not reload it anyway); True swaps the new snapshot in
        by renaming the old directory to a hidden name first and deleting it afterwards,
        so the numeric path only ever holds a complete SavedModel.

    Returns:
      str, the path of the version directory `<snapshot_root>/<model_name>/<version>`.

    Raises:
      ValueError/TypeError: for a negative version or a serving_fn without dict outputs
        (raised while tracing). Whatever the failure, no numeric directory is left
        half-written: the temporary directory is removed.
    """
    version = int(version)
    if version < 0:
      raise ValueError('version must be >= 0, got %d' % version)
    base_path = self.base_path
    final_path = _join(base_path, str(version))
    tf.io.gfile.makedirs(base_path)

    if tf.io.gfile.exists(final_path) and not overwrite:
      logging.info('Snapshot %s already exists; not overwriting.', final_path)
      _prune(base_path, self.keep_last, protect_version=version)
      return final_path

    if self._concrete is None:
      self._concrete = self._root.serve.get_concrete_function()
      if self._keras_model is not None:
        # After the trace, so a model first built by it has its variables by now.
        self._root.model_variables = list(self._keras_model.variables)
    if self._extra_outputs:
      self._root.snapshot_version.assign(version)
      self._root.snapshot_unix_time.assign(time.time())

    tmp_path = _join(base_path, '%s%d-%s' % (_TMP_PREFIX, version, uuid.uuid4().hex))
    try:
      tf.saved_model.save(self._root, tmp_path, signatures={SERVING_SIGNATURE_KEY: self._concrete})
      if tf.io.gfile.exists(final_path):
        # overwrite=True: move the old version out of the way under a hidden name; the
        # numeric path is briefly absent but never holds a partial model.
        old_path = _join(base_path, '%s%d-%s' % (_OLD_PREFIX, version, uuid.uuid4().hex))
        tf.io.gfile.rename(final_path, old_path)
        tf.io.gfile.rename(tmp_path, final_path)
        tf.io.gfile.rmtree(old_path)
      else:
        tf.io.gfile.rename(tmp_path, final_path)
    except BaseException:
      if tf.io.gfile.exists(tmp_path):
        tf.io.gfile.rmtree(tmp_path)
      raise
    logging.info('Exported snapshot %s (signature %r).', final_path, SERVING_SIGNATURE_KEY)
    _prune(base_path, self.keep_last, protect_version=version)
    return final_path


def export_snapshot(
    module,
    serving_fn,
    snapshot_root,
    model_name,
    version,
    keep_last=5,
    extra_outputs=True,
    overwrite=False,
):
  """Exports one SavedModel snapshot of a task network, atomically.

  A one-off `SnapshotWriter(...).write(version)`; a trainer exporting repeatedly keeps a
  `SnapshotWriter` so the signature is traced once. Arguments as there.

  Returns:
    str, the path of the version directory `<snapshot_root>/<model_name>/<version>`.
  """
  writer = SnapshotWriter(
      module,
      serving_fn,
      snapshot_root,
      model_name,
      keep_last=keep_last,
      extra_outputs=extra_outputs,
  )
  return writer.write(version, overwrite=overwrite)
