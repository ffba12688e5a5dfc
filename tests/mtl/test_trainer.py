"""The shared-encoder model and trainer: per-task gradients, heads, gin files, bad input."""

import glob
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from taskology_tf.mtl import methods as m
from taskology_tf.mtl import nyuv2
from taskology_tf.mtl.model import SharedBackbone
from taskology_tf.mtl.trainer import MTLTrainer
from taskology_tf.networks.unet import build_unet
from taskology_tf.tasks.depth import DepthTask
from taskology_tf.tasks.egomotion import EgomotionTask
from taskology_tf.tasks.normals import NormalsTask
from taskology_tf.tasks.segmentation import SegmentationTask
from taskology_tf.training.trainer import LoopConfig
from tests.conftest import REPO_ROOT

H, W = 16, 24


def _tasks():
  return [
      DepthTask(H, W, base_filters=4, levels=2),
      NormalsTask(H, W, base_filters=4, levels=2),
      SegmentationTask(H, W, num_classes=3, base_filters=4, levels=2),
  ]


def _batch(b=2, seed=0):
  rng = np.random.default_rng(seed)
  n = rng.normal(size=(b, H, W, 3)).astype(np.float32)
  return {
      'image': tf.constant(rng.integers(0, 255, (b, H, W, 3), dtype=np.uint8)),
      'depth': tf.constant(rng.uniform(1.0, 20.0, (b, H, W, 1)).astype(np.float32)),
      'normals': tf.constant(n / np.linalg.norm(n, axis=-1, keepdims=True)),
      'semantics': tf.constant(rng.integers(0, 3, (b, H, W), dtype=np.uint8)),
  }


class _Sum(m.GradientMethod):
  """sum_t g_t through the per-task path (EW takes a single backward pass instead)."""

  name = 'sum'

  def combine(self, grads, losses, step):
    return tf.reduce_sum(grads, 0)


def _trainer(method, tmp_path, backbone=None):
  backbone = backbone or SharedBackbone(_tasks(), H, W, base_filters=4, levels=2)
  return MTLTrainer(
      backbone,
      method,
      keras.optimizers.SGD(0.1),
      tf.data.Dataset.from_tensors(_batch()).repeat(),
      LoopConfig(num_steps=2, log_every=1, checkpoint_every=1),
      str(tmp_path),
  )


def test_one_task_shared_model_is_the_separate_unet():
  # Encoder + one decoder = build_unet's layers: same parameter count, so STL rows and the
  # collective rows run exactly the networks the shared model splits.
  task = DepthTask(H, W, base_filters=4, levels=3)
  one = SharedBackbone([task], H, W, base_filters=4, levels=3)
  unet = build_unet(H, W, 3, 1, 4, 3)
  count = lambda vs: sum(int(v.shape.num_elements()) for v in vs)
  assert count(one.shared_variables) + count(one.task_variables('depth')) == count(
      unet.trainable_variables
  )


def test_per_task_gradients_and_heads(tmp_path):
  keras.utils.set_random_seed(0)
  backbone = SharedBackbone(_tasks(), H, W, base_filters=4, levels=2)
  batch, step = _batch(), tf.constant(0, tf.int64)
  ew_g, ew_v, _ = _trainer(m.EW(), tmp_path / 'a', backbone).gradients(batch, step)
  sum_g, sum_v, _ = _trainer(_Sum(), tmp_path / 'b', backbone).gradients(batch, step)
  # The single backward pass of EW equals the sum of the per-task gradients (one tape per task),
  # and every head's gradient is that of its own loss only.
  assert [v.name for v in ew_v] == [v.name for v in sum_v]
  for a, b in zip(ew_g, sum_g):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
  # PCGrad on the trainer's per-task gradients: recompute them by hand with separate tapes.
  trainer = _trainer(m.PCGrad(seed=5), tmp_path / 'c', backbone)
  grads, variables, _ = trainer.gradients(batch, step)
  shared = backbone.shared_variables
  per_task = []
  for name in backbone.tasks:
    with tf.GradientTape() as tape:
      _, losses, _ = trainer._losses(batch)  # pylint: disable=protected-access
      loss = losses[list(backbone.tasks).index(name)]
    g = tape.gradient(loss, shared + backbone.task_variables(name))
    per_task.append(tf.concat([tf.reshape(x, [-1]) for x in g[: len(shared)]], 0))
    head = dict(zip([v.name for v in variables], grads))
    for v, gv in zip(backbone.task_variables(name), g[len(shared) :]):
      np.testing.assert_allclose(head[v.name].numpy(), gv.numpy(), rtol=1e-4, atol=1e-6)
  expected = m.PCGrad(seed=5).combine(tf.stack(per_task), tf.zeros([3]), step)
  got = tf.concat([tf.reshape(g, [-1]) for g in grads[: len(shared)]], 0)
  np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-3, atol=1e-6)


def test_graddrop_with_full_leak_is_ew(tmp_path):
  # leak = 1 keeps every representation gradient: the encoder receives sum_t dL_t/dr.
  backbone = SharedBackbone(_tasks(), H, W, base_filters=4, levels=2)
  batch, step = _batch(seed=1), tf.constant(3, tf.int64)
  ew, _, _ = _trainer(m.EW(), tmp_path / 'a', backbone).gradients(batch, step)
  gd, _, _ = _trainer(m.GradDrop(leak=1.0), tmp_path / 'b', backbone).gradients(batch, step)
  for a, b in zip(ew, gd):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
  dropped, _, _ = _trainer(m.GradDrop(leak=0.0), tmp_path / 'c', backbone).gradients(batch, step)
  assert any(np.abs(a.numpy() - b.numpy()).max() > 1e-6 for a, b in zip(ew, dropped))


def test_task_without_a_head_is_an_error():
  with pytest.raises(ValueError, match=r"MTLExperiment.tasks: task 'egomotion' has no dense"):
    SharedBackbone([DepthTask(H, W), EgomotionTask(H, W)], H, W, 4, 2)


def _parse(files, bindings):
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  experiment_lib.parse_gin(files, bindings, search_dirs=[REPO_ROOT])
  return gin.get_configurable('taskology_tf.mtl.MTLExperiment')()


def test_unknown_method_is_a_gin_error_naming_the_binding(tiny_world):
  try:
    with pytest.raises(ValueError, match='NoSuchMethod'):
      _parse(
          ['gin/experiments/synthetic/mtl_ew.gin', 'gin/tests/tiny.gin'],
          ['MTLExperiment.method = @NoSuchMethod()'],
      )
  finally:
    gin.clear_config()


MTL_GIN = sorted(glob.glob(os.path.join(REPO_ROOT, 'gin/experiments/synthetic/mtl_*.gin')))


@pytest.mark.timeout(900)
def test_every_mtl_gin_parses_and_two_run(tiny_world, tmp_path):
  """Every shared-encoder gin parses and builds; CAGrad + MCLGS (per-task path) trains 2 steps."""
  bindings = [f"synthetic_world_clips.data_dir = '{tiny_world}'"]
  methods = {}
  try:
    for path in MTL_GIN:
      name = os.path.basename(path)
      if name in ('mtl_stl.gin', 'mtl_collective.gin') or name.endswith('_common.gin'):
        continue  # Experiment configs: run by tests/training/test_gin_experiments.py.
      exp = _parse([path, 'gin/tests/tiny.gin'], bindings)
      methods[name] = type(exp.method).__name__
      if name == 'mtl_cagrad_mclgs.gin':
        trainer = exp.build_trainer(str(tmp_path / name))
        results = trainer.train()
        assert int(trainer.step.numpy()) == 2
        assert set(results) == {'depth', 'normals', 'segmentation'}
        assert trainer.checkpoint_manager.latest_checkpoint.endswith('-2')
  finally:
    gin.clear_config()
  assert methods == {
      'mtl_cagrad.gin': 'CAGrad',
      'mtl_cagrad_mclgs.gin': 'CAGrad',
      'mtl_ew.gin': 'EW',
      'mtl_graddrop.gin': 'GradDrop',
      'mtl_mclgs.gin': 'MCLGS',
      'mtl_mgda.gin': 'MGDA',
      'mtl_pcgrad.gin': 'PCGrad',
  }


def tiny_nyu_loader(split):
  """Generated NYUv2-format examples (480 x 640 image, float16 depth, label40)."""
  return nyuv2.generated_examples(2, seed=0 if split == 'train' else 1)


@pytest.mark.timeout(900)
def test_nyuv2_full_scale_gin_runs_two_steps_on_generated_data(tmp_path):
  gin.external_configurable(tiny_nyu_loader, module='tests.mtl')
  try:
    exp = _parse(
        ['gin/experiments/nyuv2/mtl_cagrad_mclgs.gin', 'gin/tests/tiny.gin'],
        [
            'nyuv2_clips.loader = @tiny_nyu_loader',
            'LEVELS = 2',
            'BASE_FILTERS = 4',
            'BATCH_SIZE = 2',
            'MTLExperiment.jit_compile = False',
        ],
    )
    assert (exp.height, exp.width) == (16, 24)
    trainer = exp.build_trainer(str(tmp_path))
    results = trainer.train()
  finally:
    gin.clear_config()
  assert int(trainer.step.numpy()) == 2
  assert set(results) == {'depth', 'normals', 'segmentation'}
  assert all(v == v for r in results.values() for v in r.values())


def test_nyuv2_full_scale_gin_parses_at_288x384():
  try:
    exp = _parse(['gin/experiments/nyuv2/mtl_ew.gin'], [])
  finally:
    gin.clear_config()
  assert (exp.height, exp.width, exp.levels) == (288, 384, 5)
  assert exp.tasks[2].num_classes == 13


def test_nyuv2_label_mapping_and_missing_labels():
  # NYU40 1 wall -> 'wall', 2 floor -> 'floor', 5 chair -> 'chair', 25 television -> 'tv',
  # 22 ceiling -> 'ceiling', 0 void -> 255.
  ids = nyuv2.label40_to_13(tf.constant([1, 2, 5, 25, 22, 0, 41], tf.uint8)).numpy()
  names = [nyuv2.CLASSES_13[i] if i != 255 else None for i in ids]
  assert names == ['wall', 'floor', 'chair', 'tv', 'ceiling', None, None]
  assert len(nyuv2.NYU40_TO_13) == 41
  depth_only = lambda split: nyuv2.generated_examples(1).map(
      lambda x: {'image': x['image'], 'depth': x['depth']}
  )
  with pytest.raises(ValueError, match='require_labels'):
    nyuv2.nyuv2_clips('train', 16, 24, loader=depth_only)
  clip = next(iter(nyuv2.nyuv2_clips('train', 16, 24, loader=depth_only, require_labels=False)))
  assert clip['normals'].shape == (1, 16, 24, 3) and 'semantics' not in clip
  np.testing.assert_allclose(np.linalg.norm(clip['normals'].numpy(), axis=-1), 1.0, atol=1e-4)


def test_loss_weights_naming_an_unknown_task(tmp_path):
  backbone = SharedBackbone(_tasks()[:1], H, W, base_filters=4, levels=2)
  with pytest.raises(ValueError, match="MTLExperiment.loss_weights names tasks \\['normal'\\]"):
    MTLTrainer(
        backbone,
        m.EW(),
        keras.optimizers.SGD(0.1),
        tf.data.Dataset.from_tensors(_batch()),
        LoopConfig(num_steps=1),
        str(tmp_path),
        loss_weights={'normal': 2.0},
    )
