"""DfVitW in the trainer: weight decay joins the objective, the noise ramp follows the step."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from taskology_tf.networks import dfv_depth
from taskology_tf.networks.randomized_layer_norm import RandomizedLayerNormalization
from taskology_tf.tasks.depth import DepthTask
from taskology_tf.tasks.dfv_depth import DfvDepthTask
from taskology_tf.tasks.dfv_motion import DfvMotionTask
from taskology_tf.training.experiment import Experiment
from taskology_tf.training.experiment import TaskConfig
from taskology_tf.training.trainer import LoopConfig

H, W = 16, 24


def _one_clip():
  """One clip, so with dedicated_frames=(1,) and batch 1 every step sees the same batch."""
  rng = np.random.default_rng(0)
  k = np.array([[20.0, 0, (W - 1) / 2], [0, 20.0, (H - 1) / 2], [0, 0, 1]], np.float32)
  clip = {
      'image': rng.integers(0, 255, (1, 3, H, W, 3), dtype=np.uint8),
      'depth': rng.uniform(2.0, 20.0, (1, 3, H, W, 1)).astype(np.float32),
      'intrinsics': k[None],
  }
  return clip, lambda: tf.data.Dataset.from_tensor_slices(clip)


def _trainer(task, tmp_path, num_steps, hooks=(), jit_compile=False, lr=0.0):
  clip, clips = _one_clip()
  experiment = Experiment(
      tasks=[
          TaskConfig(
              task=task,
              optimizer=lambda: keras.optimizers.Adam(lr),
              dedicated_clips=clips,
              batch_size=1,
              dedicated_frames=(1,),
              jit_compile=jit_compile,
          )
      ],
      loop=LoopConfig(
          num_steps=num_steps, log_every=1, summary_every=1, image_every=0, checkpoint_every=100
      ),
  )
  return experiment.build_trainer(str(tmp_path), hooks=hooks), clip


class _ConstantKernelDepth(DepthTask):
  """A depth 'network' of one 1x1 conv with a known kernel and an L2(0.01) regulariser."""

  def build_network(self):
    image = keras.Input((self.height, self.width, 3))
    out = keras.layers.Conv2D(
        1,
        1,
        activation='softplus',
        kernel_initializer=keras.initializers.Constant(0.5),
        kernel_regularizer=keras.regularizers.L2(0.01),
    )(image)
    return keras.Model(image, out)


def test_regularisation_losses_join_the_task_objective(tmp_path):
  # Kernel [1, 1, 3, 1] of 0.5s: L2(0.01) = 0.01 * 3 * 0.5^2 = 0.0075. With learning rate 0 the
  # kernel stays, so every step's regularisation term is 0.0075 and total = supervised + 0.0075.
  seen = []
  trainer, _ = _trainer(
      _ConstantKernelDepth(H, W),
      tmp_path,
      num_steps=2,
      hooks=[lambda step, t: seen.append(dict(t.last_scalars)) if step else None],
  )
  trainer.train()
  assert len(seen) == 2
  for scalars in seen:
    assert scalars['regularization/depth'] == pytest.approx(0.0075, rel=1e-6)
    assert scalars['total'] == pytest.approx(scalars['supervised/depth'] + 0.0075, rel=1e-6)


def test_a_network_without_regularisers_adds_no_term(tmp_path):
  trainer, _ = _trainer(DepthTask(H, W, base_filters=4, levels=2), tmp_path, num_steps=1)
  trainer.train()
  assert not any(k.startswith('regularization/') for k in trainer.last_scalars)


def test_dfv_networks_declare_the_published_weight_decay():
  # depth_from_video_in_the_wild/train.py: weight_reg = 1e-2, applied through TF1's
  # l2_regularizer(1e-2) = 1e-2 * sum(w^2) / 2 to the depth decoder (not the ResNet encoder)
  # and to the motion network's convolutions (not its intrinsics head).
  depth_task, motion_task = DfvDepthTask(H, W), DfvMotionTask(H, W, learn_intrinsics=True)
  assert depth_task.weight_reg == 0.01 and motion_task.weight_reg == 0.01
  for task, regularised in (
      (depth_task, lambda n: n.startswith(('upconv', 'iconv', 'disp'))),
      (motion_task, lambda n: 'intrinsics' not in n),
  ):
    model = task.build_network()
    kernels = [
        layer.kernel
        for layer in model.layers
        if hasattr(layer, 'kernel') and regularised(layer.name)
    ]
    expected = 0.01 / 2 * sum(float(tf.reduce_sum(tf.square(k))) for k in kernels)
    assert len(model.losses) == len(kernels) > 0
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.timeout(300)
def test_noise_ramp_follows_the_trainer_step_inside_the_compiled_step(tmp_path):
  # A ramp of 4 steps: s(step) = 0.5 * min(step / 4, 1)^2 = 0, 0.03125, 0.125, 0.28125, 0.5, 0.5.
  # Learning rate 0 and one repeated batch: every step computes the same loss but for the noise.
  task = DfvDepthTask(H, W, noise_rampup_steps=4, weight_reg=0.0)
  stddevs = {}
  losses = {}

  def hook(step, trainer):
    norm = next(
        l for l in trainer.models['depth'].layers if isinstance(l, RandomizedLayerNormalization)
    )
    stddevs[step] = float(norm.current_stddev())
    if step:
      losses[step - 1] = trainer.last_scalars['supervised/depth']  # The step that ran at step-1.

  trainer, clip = _trainer(task, tmp_path, num_steps=6, hooks=[hook], jit_compile=True)
  trainer.train()
  for step in (1, 2, 3, 5):
    assert stddevs[step] == pytest.approx(0.5 * min(step / 4, 1) ** 2, rel=1e-6), step
  model = trainer.models['depth']
  assert int(model.noise_step.numpy()) == 0  # Bound to the trainer's step, not advanced.
  # Inside the compiled step at step 0 the noise is 0: the loss is the noise-free network's.
  batch = {'image': tf.constant(clip['image'][:, 1]), 'depth': tf.constant(clip['depth'][:, 1])}
  image = tf.cast(batch['image'], tf.float32) / 255.0
  clean = model(image, training=False)
  clean_loss, _ = task.supervised_loss(batch, {'depth': clean})
  assert losses[0] == pytest.approx(float(clean_loss), rel=1e-4)
  # From step 4 on the stddev is 0.5: the compiled step read the step and perturbed the moments.
  assert abs(losses[4] - float(clean_loss)) > 1e-4
  assert losses[4] != losses[5]  # Fresh noise every step.
  # Inference is noise-free at the ramp's end: the same answer twice, the unflipped one bitwise.
  np.testing.assert_array_equal(model(image, training=False), clean)
  flipped_twice = [task.call(model, {'image': batch['image']})['depth'] for _ in range(2)]
  np.testing.assert_array_equal(flipped_twice[0], flipped_twice[1])
  np.testing.assert_allclose(
      flipped_twice[0], dfv_depth.flip_min_depth(lambda x: model(x, training=False), image)
  )


class _ReportingDepth(_ConstantKernelDepth):
  """Reports its kernel's mean (0.5, kept by learning rate 0) as a state scalar."""

  def scalar_summaries(self, model):
    return {'kernel_mean': float(tf.reduce_mean(model.trainable_variables[0]))}


def test_task_state_scalars_reach_tensorboard_at_the_summary_cadence(tmp_path):
  # summary_every=1, 2 steps: the trainer writes `depth/kernel_mean` = 0.5 at steps 1 and 2.
  trainer, _ = _trainer(_ReportingDepth(H, W), tmp_path, num_steps=2)
  trainer.train()
  trainer.writer.flush()
  seen = {}
  for path in tf.io.gfile.glob(str(tmp_path / 'train' / 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == 'depth/kernel_mean':
          seen[event.step] = float(tf.make_ndarray(value.tensor))
  assert seen == {1: pytest.approx(0.5), 2: pytest.approx(0.5)}


def test_dfv_motion_reports_the_scales_its_outputs_use():
  # Stored as init / k with k = 5, reported as k * stored = the inits.
  task = DfvMotionTask(
      H, W, filters_scale=0.25, translation_scale_init=0.2, scale_learning_rate_multiplier=5.0
  )
  model = task.build_network()
  assert float(model.get_layer('scales').translation_scale) == pytest.approx(0.04)
  assert task.scalar_summaries(model) == {
      'scale/rotation': pytest.approx(0.01),
      'scale/translation': pytest.approx(0.2),
  }


@pytest.mark.timeout(300)
def test_motion_warmup_follows_the_trainer_step(tmp_path):
  # DfvConsistency(motion_warmup_steps=2) in a depth + motion experiment: the trainer binds its
  # step, so the steps that run at step 0 and 1 are inside the warm-up (the motion's loss
  # against the ground-plane prior is added, > 0) and the one at step 2 is not (0).
  from taskology_tf.consistency.dfv import DfvConsistency

  _, clips = _one_clip()
  seen = {}

  def hook(step, trainer):
    if step:
      scalars = trainer.last_scalars
      seen[step - 1] = (
          scalars['metrics/dfv_consistency/motion_warmup'],
          scalars['metrics/dfv_consistency/warmup_prior_loss'],
      )

  experiment = Experiment(
      tasks=[
          TaskConfig(
              task=DfvDepthTask(H, W, filters_scale=0.125, weight_reg=0.0),
              optimizer=lambda: keras.optimizers.Adam(1e-4),
          ),
          TaskConfig(
              task=DfvMotionTask(H, W, filters_scale=0.125, weight_reg=0.0),
              optimizer=lambda: keras.optimizers.Adam(1e-4),
          ),
      ],
      relations=[DfvConsistency(motion_warmup_steps=2)],
      mediator_clips=clips,
      mediator_batch_size=1,
      loop=LoopConfig(
          num_steps=3, log_every=1, summary_every=1, image_every=0, checkpoint_every=100
      ),
  )
  experiment.build_trainer(str(tmp_path), hooks=[hook]).train()
  assert sorted(seen) == [0, 1, 2]
  for step in (0, 1):
    assert seen[step][0] == 1.0 and seen[step][1] > 0.0, (step, seen[step])
  assert seen[2] == (0.0, 0.0)
