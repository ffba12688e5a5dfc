"""Frozen tasks (TaskConfig.frozen_from): loaded from a checkpoint or a SavedModel, never trained."""

import os

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from taskology_tf.serving.export import export_snapshot
from taskology_tf.tasks.depth import DepthTask
from taskology_tf.training import frozen
from tests.conftest import REPO_ROOT


def _task(base_filters=4, name='depth'):
  return DepthTask(16, 24, base_filters=base_filters, levels=2, name=name)


def _images(n=3, seed=0):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.integers(0, 256, (n, 16, 24, 3), dtype=np.uint8))


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  """A 'trained' depth network saved as a trainer checkpoint (step 7) and as a snapshot."""
  tmp = str(tmp_path_factory.mktemp('frozen_source'))
  keras.utils.set_random_seed(3)
  task = _task()
  model = task.build_network()
  for v in model.trainable_variables:  # Not the initialisation a fresh build would give.
    v.assign_add(tf.random.normal(v.shape, stddev=0.01, seed=1))
  run_dir = os.path.join(tmp, 'run')
  checkpoint = tf.train.Checkpoint(model_depth=model, step=tf.Variable(7, dtype=tf.int64))
  tf.train.CheckpointManager(checkpoint, os.path.join(run_dir, 'checkpoints'), 1).save(7)
  snapshots = os.path.join(tmp, 'snapshots')
  export_snapshot(model, task.serving_function(model), snapshots, 'depth', 7)
  expected = task.call(model, {'image': _images()})['depth'].numpy()
  return {'run_dir': run_dir, 'snapshots': snapshots, 'expected': expected}


@pytest.mark.parametrize('where', ['run_dir', 'checkpoint_prefix', 'base_path', 'version_dir'])
def test_checkpoint_and_saved_model_reproduce_the_source_outputs(source, where):
  path = {
      'run_dir': source['run_dir'],
      'checkpoint_prefix': os.path.join(source['run_dir'], 'checkpoints', 'ckpt-7'),
      'base_path': os.path.join(source['snapshots'], 'depth'),
      'version_dir': os.path.join(source['snapshots'], 'depth', '7'),
  }[where]
  keras.utils.set_random_seed(99)  # A different initialisation, overwritten by the load.
  task = _task()
  model, info = frozen.load_frozen_network(task, path)
  assert info['kind'] == (
      'checkpoint' if where in ('run_dir', 'checkpoint_prefix') else 'saved_model'
  )
  assert info['step'] == 7
  assert not model.trainable
  got = task.call(model, {'image': _images()})['depth'].numpy()
  np.testing.assert_allclose(got, source['expected'], rtol=1e-6, atol=1e-6)


def test_errors_name_the_path_and_the_binding(source, tmp_path):
  missing = str(tmp_path / 'no_such_run')
  with pytest.raises(
      frozen.FrozenLoadError, match=r"TaskConfig.frozen_from of task 'depth'.*no_such_run"
  ):
    frozen.load_frozen_network(_task(), missing)
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(frozen.FrozenLoadError, match='neither a checkpoint'):
    frozen.load_frozen_network(_task(), str(empty))
  # A wider network than the source's: its variables do not match.
  with pytest.raises(frozen.FrozenLoadError, match='do not match'):
    frozen.load_frozen_network(_task(base_filters=8), source['run_dir'])
  with pytest.raises(frozen.FrozenLoadError, match=r'variable 0 .* in the network but'):
    frozen.load_frozen_network(_task(base_filters=8), os.path.join(source['snapshots'], 'depth'))
  # The source run trained no task of this name.
  with pytest.raises(frozen.FrozenLoadError, match="no network named 'model_normals'.*model_depth"):
    frozen.load_frozen_network(_task(name='normals'), source['run_dir'])


def _experiment(gin_files, bindings):
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  experiment_lib.parse_gin(gin_files, bindings, search_dirs=[REPO_ROOT])
  return experiment_lib.Experiment()


def test_frozen_task_does_not_change_while_the_live_task_trains(tiny_world, tmp_path):
  gin_files = ['gin/experiments/synthetic/depth_normals_sim2real.gin', 'gin/tests/tiny.gin']
  data = f"synthetic_world_clips.data_dir = '{tiny_world}'"
  gin.clear_config()
  try:
    source = _experiment(gin_files, [data]).build_trainer(str(tmp_path / 'source'))
    source.train()
    source_weights = [v.numpy() for v in source.models['normals'].weights]
  finally:
    gin.clear_config()
  try:
    experiment = _experiment(
        gin_files, [data, f"normals/TaskConfig.frozen_from = '{tmp_path / 'source'}'"]
    )
    assert experiment.frozen_task_names == ['normals']
    trainer = experiment.build_trainer(str(tmp_path / 'frozen'))
    assert trainer.live == ['depth']
    frozen_normals = trainer.peer_source.models['normals']
    np.testing.assert_array_equal(frozen_normals.weights[0].numpy(), source_weights[0])
    depth_before = [v.numpy() for v in trainer.models['depth'].trainable_variables]
    trainer.train()
    # The live task trained (consistency with the frozen peer included); the frozen one did not.
    assert any(
        not np.array_equal(a, v.numpy())
        for a, v in zip(depth_before, trainer.models['depth'].trainable_variables)
    )
    for a, v in zip(source_weights, frozen_normals.weights):
      np.testing.assert_array_equal(a, v.numpy())
    with pytest.raises(ValueError, match='frozen'):
      experiment.build_trainer(str(tmp_path / 'x'), live=['normals'])
    from taskology_tf.training import distributed  # pylint: disable=g-import-not-at-top

    with pytest.raises(ValueError, match='is frozen'):
      distributed.build_task_trainer(experiment, 'normals', str(tmp_path / 'y'))
  finally:
    gin.clear_config()


def test_export_frozen_snapshot_serves_the_source_network(source, tmp_path):
  # What tools/launch.py does for a frozen task: one snapshot, version = the source's step.
  path = frozen.export_frozen_snapshot(_task(), source['run_dir'], str(tmp_path / 'snapshots'))
  assert path.endswith(os.path.join('depth', '7'))
  model, _ = frozen.load_frozen_network(_task(), path)
  got = _task().call(model, {'image': _images()})['depth'].numpy()
  np.testing.assert_allclose(got, source['expected'], rtol=1e-6, atol=1e-6)
