"""Trainer invariants: resume continuity, gradient semantics, NaN handling, stale peers."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from taskology_tf.consistency.depth_normals import DepthNormalsConsistency
from taskology_tf.inputs.pipelines import MixingSchedule
from taskology_tf.tasks.depth import DepthTask
from taskology_tf.tasks.normals import NormalsTask
from taskology_tf.training.experiment import Experiment
from taskology_tf.training.experiment import TaskConfig
from taskology_tf.training.trainer import LoopConfig
from taskology_tf.training.trainer import NonFiniteLossError

H, W = 16, 24


def _clips(num=6, seed=0):
  """Random clips with plausible labels: enough to exercise the loop, not to learn from."""
  rng = np.random.default_rng(seed)
  depth = rng.uniform(2.0, 20.0, (num, 3, H, W, 1)).astype(np.float32)
  normals = rng.normal(size=(num, 3, H, W, 3)).astype(np.float32)
  normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
  k = np.array([[20.0, 0, (W - 1) / 2], [0, 20.0, (H - 1) / 2], [0, 0, 1]], np.float32)
  return tf.data.Dataset.from_tensor_slices(
      {
          'image': rng.integers(0, 255, (num, 3, H, W, 3), dtype=np.uint8),
          'depth': depth,
          'normals': normals,
          'intrinsics': np.repeat(k[None], num, 0),
      }
  )


def _experiment(
    num_steps,
    relations=True,
    peer_gradients=True,
    peer_refresh_steps=0,
    consistency_weights=(1.0, 1.0),
    lr=1e-3,
):
  tasks = [
      TaskConfig(
          task=DepthTask(H, W, base_filters=4, levels=2),
          optimizer=lambda: keras.optimizers.Adam(lr),
          dedicated_clips=_clips,
          batch_size=2,
          consistency_weight=consistency_weights[0],
      ),
      TaskConfig(
          task=NormalsTask(H, W, base_filters=4, levels=2),
          optimizer=lambda: keras.optimizers.SGD(lr * 10, momentum=0.9),
          dedicated_clips=_clips,
          batch_size=2,
          consistency_weight=consistency_weights[1],
      ),
  ]
  return Experiment(
      tasks=tasks,
      relations=[DepthNormalsConsistency()] if relations else [],
      mediator_clips=lambda: _clips(seed=1),
      mediator_batch_size=2,
      mediator_frames=(1,),
      evaluation_clips=_clips,
      evaluation_frames=(1,),
      peer_gradients=peer_gradients,
      peer_refresh_steps=peer_refresh_steps,
      schedule=MixingSchedule('joint'),
      loop=LoopConfig(
          num_steps=num_steps, log_every=1, summary_every=1, image_every=2, checkpoint_every=2
      ),
  )


def _weights(trainer):
  return {n: [w.numpy() for w in m.weights] for n, m in trainer.models.items()}


def test_seed_alone_decides_initial_weights(tmp_path):
  """The experiment's seed decides the networks' initial weights, whatever seeded before: here
  tf_keras's own seed generator is left on another seed, as an earlier test or library call does."""
  first = _weights(_experiment(1).build_trainer(str(tmp_path / 'a')))
  keras.utils.set_random_seed(12345)
  second = _weights(_experiment(1).build_trainer(str(tmp_path / 'b')))
  for name in first:
    for a, b in zip(first[name], second[name]):
      np.testing.assert_array_equal(a, b)
  other = _experiment(1)
  other.seed = 1
  third = _weights(other.build_trainer(str(tmp_path / 'c')))
  assert not np.array_equal(first['depth'][0], third['depth'][0])


def test_resume_continues_same_step_and_optimizer_state(tmp_path):
  straight = _experiment(4).build_trainer(str(tmp_path / 'straight'))
  straight.train()
  # Same run, interrupted after step 2 (a checkpoint is written at step 2), then resumed by a
  # fresh trainer as a relaunched process would.
  first = _experiment(2).build_trainer(str(tmp_path / 'resumed'))
  first.train()
  second = _experiment(4).build_trainer(str(tmp_path / 'resumed'))
  assert second.restore() == 2
  assert int(second.optimizers['depth'].iterations.numpy()) == 2
  second.train()
  assert int(second.step.numpy()) == 4
  for name in ('depth', 'normals'):
    assert int(second.optimizers[name].iterations.numpy()) == 4
    for a, b in zip(_weights(straight)[name], _weights(second)[name]):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_peer_gradient_semantics_agree_at_staleness_zero(tmp_path):
  # dL/dtheta_i flows only through y_i, so making the peers constants changes nothing when they
  # are the current live networks and every c_i = 1 (see trainer.py's docstring).
  joint = _experiment(2, peer_gradients=True).build_trainer(str(tmp_path / 'joint'))
  joint.train()
  local = _experiment(2, peer_gradients=False).build_trainer(str(tmp_path / 'local'))
  local.train()
  for name in ('depth', 'normals'):
    for a, b in zip(_weights(joint)[name], _weights(local)[name]):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # ...and per-task consistency weights do change the result (the knob is live).
  weighted = _experiment(2, peer_gradients=False, consistency_weights=(5.0, 0.0)).build_trainer(
      str(tmp_path / 'weighted')
  )
  weighted.train()
  diff = max(
      np.abs(a - b).max() for a, b in zip(_weights(joint)['depth'], _weights(weighted)['depth'])
  )
  assert diff > 1e-6


def test_consistency_changes_training(tmp_path):
  with_rel = _experiment(2).build_trainer(str(tmp_path / 'a'))
  with_rel.train()
  without = _experiment(2, relations=False).build_trainer(str(tmp_path / 'b'))
  without.train()
  diff = max(
      np.abs(a - b).max() for a, b in zip(_weights(with_rel)['depth'], _weights(without)['depth'])
  )
  assert diff > 1e-6


def test_stale_copies_hold_old_weights(tmp_path):
  trainer = _experiment(3, peer_gradients=False, peer_refresh_steps=2).build_trainer(
      str(tmp_path / 'stale')
  )
  source = trainer.peer_source
  mediator = next(iter(trainer.mediator(None)))
  task = trainer.setups['depth'].task
  live = lambda: task.predict_mediator(trainer.models['depth'], mediator)['depth'].numpy()
  peers, info = source.predictions(0, mediator)
  np.testing.assert_allclose(peers['depth']['depth'].numpy(), live(), rtol=1e-5, atol=1e-5)
  assert info['staleness_steps/depth'] == 0.0
  # The live network moves on; until step 2 the peers still see the step-0 weights.
  for w in trainer.models['depth'].trainable_weights:
    w.assign_add(tf.fill(w.shape, 0.05))
  stale = peers['depth']['depth'].numpy()
  peers, info = source.predictions(1, mediator)
  np.testing.assert_allclose(peers['depth']['depth'].numpy(), stale, rtol=1e-5, atol=1e-5)
  assert info['staleness_steps/depth'] == 1.0
  assert np.abs(live() - stale).max() > 1e-4
  peers, info = source.predictions(2, mediator)
  np.testing.assert_allclose(peers['depth']['depth'].numpy(), live(), rtol=1e-5, atol=1e-5)
  assert info['staleness_steps/depth'] == 0.0


def test_nan_loss_stops_naming_task_and_keeps_checkpoint(tmp_path):
  run_dir = str(tmp_path / 'nan')
  trainer = _experiment(2).build_trainer(run_dir)
  trainer.train()  # Writes a good checkpoint at step 2.
  good = trainer.checkpoint_manager.latest_checkpoint
  trainer = _experiment(4, lr=1e30).build_trainer(run_dir)
  # Poison one weight so the depth supervised loss becomes NaN at the next step.
  trainer.restore()
  trainer.models['depth'].weights[0].assign(
      tf.fill(trainer.models['depth'].weights[0].shape, np.nan)
  )
  trainer.step.assign(2)
  trainer.restore = lambda: 2  # Keep the poisoned weights instead of restoring again.
  with pytest.raises(NonFiniteLossError, match=r'supervised/depth'):
    trainer.train()
  assert trainer.checkpoint_manager.latest_checkpoint == good
  assert os.path.exists(good + '.index')
