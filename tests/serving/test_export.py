"""Tests for taskology_tf.serving.export: layout, signature, atomicity, pruning."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.serving import export as export_lib

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')


class Affine(tf.Module):
  """y = x * w + b over float32 x: [B, 3]; outputs are exactly computable in a test."""

  def __init__(self, w=2.0, b=1.0):
    super().__init__()
    self.w = tf.Variable(w, dtype=tf.float32)
    self.b = tf.Variable(b, dtype=tf.float32)
    self.serve = tf.function(
        self._serve, input_signature=[tf.TensorSpec([None, 3], tf.float32, name='x')]
    )

  def _serve(self, x):
    return {'y': x * self.w + self.b}


class ImageMean(tf.Module):
  """uint8 image [B, 4, 4, 3] -> per-pixel mean over channels, scaled to [0, 1] times w."""

  def __init__(self, w=1.0):
    super().__init__()
    self.w = tf.Variable(w, dtype=tf.float32)

    # Keyword arguments named after the inputs via *args + named specs, the way
    # Task.serving_function builds its signature.
    @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 3], tf.uint8, name='image')])
    def serve(*args):
      image = tf.cast(args[0], tf.float32) / 255.0
      return {'mean': tf.reduce_mean(image, axis=-1, keepdims=True) * self.w}

    self.serve = serve


def export_affine(root, version, w=2.0, b=1.0, name='affine', **kwargs):
  module = Affine(w, b)
  return export_lib.export_snapshot(module, module.serve, str(root), name, version, **kwargs)


def test_layout_cli_and_reload(tmp_path):
  before = time.time()
  path = export_affine(tmp_path, 7, w=2.0, b=1.0)
  after = time.time()
  assert path == str(tmp_path / 'affine' / '7')
  assert os.path.isfile(os.path.join(path, 'saved_model.pb'))
  assert os.path.isdir(os.path.join(path, 'variables'))
  # Nothing but the numeric version is left in the base path.
  assert os.listdir(tmp_path / 'affine') == ['7']
  assert export_lib.list_versions(str(tmp_path / 'affine')) == [7]

  cli = subprocess.run(
      [SAVED_MODEL_CLI, 'show', '--dir', path, '--all'],
      capture_output=True,
      text=True,
      timeout=600,  # Generous: only a hang should fail this (the CLI imports TF).
      check=True,
  ).stdout
  assert "signature_def['serving_default']" in cli
  assert "inputs['x']" in cli
  for output in ('y', 'snapshot_version', 'snapshot_unix_time'):
    assert "outputs['%s']" % output in cli

  loaded = tf.saved_model.load(path)
  out = loaded.signatures['serving_default'](x=tf.constant([[0.0, 1.0, 2.0]]))
  # y = x * 2 + 1.
  np.testing.assert_allclose(out['y'].numpy(), [[1.0, 3.0, 5.0]])
  assert out['snapshot_version'].dtype == tf.int64
  assert int(out['snapshot_version']) == 7
  assert out['snapshot_unix_time'].dtype == tf.float64
  assert before <= float(out['snapshot_unix_time']) <= after


def test_uint8_signature_with_star_args_and_no_extra_outputs(tmp_path):
  module = ImageMean(w=2.0)
  path = export_lib.export_snapshot(
      module, module.serve, str(tmp_path), 'img', 0, extra_outputs=False
  )
  fn = tf.saved_model.load(path).signatures['serving_default']
  _, inputs = fn.structured_input_signature
  assert list(inputs) == ['image']
  assert inputs['image'].dtype == tf.uint8
  assert list(fn.structured_outputs) == ['mean']
  image = np.full([1, 4, 4, 3], 255, np.uint8)
  # Mean of a white image is 1, times w = 2.
  np.testing.assert_allclose(fn(image=image)['mean'].numpy(), np.full([1, 4, 4, 1], 2.0))


def test_keep_last_prunes_versions_and_stale_temp_dirs(tmp_path):
  base = tmp_path / 'affine'
  base.mkdir()
  stale = base / '.tmp-99-crashed'
  fresh = base / '.tmp-100-inprogress'
  stale.mkdir()
  fresh.mkdir()
  old = time.time() - export_lib.STALE_TMP_SECONDS - 60
  os.utime(stale, (old, old))
  (base / 'notes.txt').write_text('not a version')
  for version in (1, 2, 3, 4):
    export_affine(tmp_path, version, keep_last=2)
  assert export_lib.list_versions(str(base)) == [3, 4]
  assert not stale.exists()
  assert fresh.exists()  # Might belong to an export still running.
  assert (base / 'notes.txt').exists()


def test_list_versions_ignores_non_numeric_and_missing(tmp_path):
  assert export_lib.list_versions(str(tmp_path / 'nope')) == []
  for name in ('10', '9', 'abc', '.tmp-3-x', '-1'):
    (tmp_path / name).mkdir()
  (tmp_path / '11').write_text('a file, not a version dir')
  assert export_lib.list_versions(str(tmp_path)) == [9, 10]


def test_failed_trace_leaves_no_numeric_dir(tmp_path):
  module = Affine()

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name='x')])
  def broken(x):
    raise RuntimeError('fails while tracing')

  with pytest.raises(RuntimeError, match='fails while tracing'):
    export_lib.export_snapshot(module, broken, str(tmp_path), 'affine', 5)
  assert export_lib.list_versions(str(tmp_path / 'affine')) == []
  assert os.listdir(tmp_path / 'affine') == []


def test_failed_rename_leaves_no_numeric_dir(tmp_path, monkeypatch):
  def failing_rename(*args, **kwargs):
    raise OSError('disk vanished mid-export')

  monkeypatch.setattr(tf.io.gfile, 'rename', failing_rename)
  with pytest.raises(OSError, match='disk vanished'):
    export_affine(tmp_path, 5)
  assert os.listdir(tmp_path / 'affine') == []


def test_existing_version_kept_or_replaced(tmp_path):
  path = export_affine(tmp_path, 1, w=2.0)
  export_affine(tmp_path, 1, w=5.0)  # overwrite=False: left as it was.
  fn = tf.saved_model.load(path).signatures['serving_default']
  np.testing.assert_allclose(fn(x=tf.ones([1, 3]))['y'].numpy(), [[3.0, 3.0, 3.0]])
  export_affine(tmp_path, 1, w=5.0, overwrite=True)
  fn = tf.saved_model.load(path).signatures['serving_default']
  np.testing.assert_allclose(fn(x=tf.ones([1, 3]))['y'].numpy(), [[6.0, 6.0, 6.0]])
  assert os.listdir(tmp_path / 'affine') == ['1']


def test_rejects_serving_fn_without_signature_or_with_clashing_output(tmp_path):
  module = Affine()
  with pytest.raises(ValueError, match='input_signature'):
    export_lib.export_snapshot(module, tf.function(lambda x: {'y': x}), str(tmp_path), 'affine', 1)

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name='x')])
  def clashing(x):
    return {'snapshot_version': x}

  with pytest.raises(ValueError, match='clashes'):
    export_lib.export_snapshot(module, clashing, str(tmp_path), 'affine', 2)
  assert export_lib.list_versions(str(tmp_path / 'affine')) == []


def test_writer_traces_once_and_each_version_carries_its_weights(tmp_path):
  module = Affine(w=1.0, b=0.0)
  writer = export_lib.SnapshotWriter(module, module.serve, str(tmp_path), 'affine', keep_last=None)
  traces = []
  for version in (10, 20, 30):
    module.w.assign(float(version))
    writer.write(version)
    traces.append(writer._root.serve.experimental_get_tracing_count())
  # The first write traces (once for the signature, once more inside the save context);
  # later writes trace nothing: the metadata comes from variables, not constants.
  assert traces[1:] == [traces[0]] * 2
  times = []
  for version in (10, 20, 30):
    fn = tf.saved_model.load(str(tmp_path / 'affine' / str(version))).signatures['serving_default']
    out = fn(x=tf.ones([1, 3]))
    # y = 1 * w + 0 with w = version at the time of the write.
    np.testing.assert_allclose(out['y'].numpy(), [[version] * 3])
    assert int(out['snapshot_version']) == version
    times.append(float(out['snapshot_unix_time']))
  assert times == sorted(times)


def test_writer_of_keras_model_serves_the_models_outputs(tmp_path):
  import tf_keras  # pylint: disable=g-import-not-at-top

  inputs = tf_keras.Input([3])
  model = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(inputs))

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name='x')])
  def serve(*args):
    return {'y': model(args[0])}

  writer = export_lib.SnapshotWriter(model, serve, str(tmp_path), 'dense')
  path = writer.write(0)
  x = np.array([[1.0, -2.0, 3.0]], np.float32)
  fn = tf.saved_model.load(path).signatures['serving_default']
  np.testing.assert_allclose(fn(x=x)['y'].numpy(), model(x).numpy(), rtol=1e-6)


def test_writer_of_unbuilt_keras_model_saves_the_variables_its_trace_creates(tmp_path):
  import tf_keras  # pylint: disable=g-import-not-at-top

  model = tf_keras.Sequential([tf_keras.layers.Dense(2)])  # No input shape: not built yet.

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name='x')])
  def serve(*args):
    return {'y': model(args[0])}

  writer = export_lib.SnapshotWriter(model, serve, str(tmp_path), 'dense')
  path = writer.write(0)
  assert len(model.variables) == 2  # Kernel and bias, created while tracing.
  x = np.array([[1.0, -2.0, 3.0]], np.float32)
  fn = tf.saved_model.load(path).signatures['serving_default']
  np.testing.assert_allclose(fn(x=x)['y'].numpy(), model(x).numpy(), rtol=1e-6)
