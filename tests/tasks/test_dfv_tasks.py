"""DfVitW tasks: eager == tf.function, output spec, clip structure, SavedModel snapshot serving."""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.serving.export import SnapshotWriter
from taskology_tf.tasks.dfv_depth import DfvDepthTask
from taskology_tf.tasks.dfv_motion import DfvMotionTask
from taskology_tf.tasks.dfv_normals import DfvNormalsTask

H, W = 16, 24
B, T = 1, 3


def _mediator(seed=0):
  rng = np.random.default_rng(seed)
  return {
      'image': tf.constant(rng.integers(0, 255, (B, T, H, W, 3), dtype=np.uint8)),
      'intrinsics': tf.eye(3, batch_shape=[B]),
  }


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    'make_task, leading',
    [
        (lambda: DfvDepthTask(H, W), [B, T]),
        (lambda: DfvMotionTask(H, W, learn_intrinsics=True), [B, T - 1]),
        # Quarter widths (the full-width network is the depth one's plus 290 parameters).
        (lambda: DfvNormalsTask(H, W, filters_scale=0.25, flip_at_test=True), [B, T]),
    ],
    ids=['depth', 'motion', 'normals'],
)
def test_eager_graph_spec_and_snapshot(make_task, leading, tmp_path):
  task = make_task()
  model = task.build_network()
  mediator = _mediator()
  inputs = task.serving_inputs(mediator)
  eager = task.call(model, inputs)
  graph = tf.function(lambda x: task.call(model, x))(inputs)
  n = leading[0] * leading[1]
  for key, spec in task.output_spec.items():
    assert eager[key].shape == [n] + spec.shape.as_list(), key
    assert eager[key].dtype == spec.dtype
    np.testing.assert_allclose(eager[key].numpy(), graph[key].numpy(), rtol=1e-4, atol=1e-5)
  per_clip = task.predict_mediator(model, mediator)
  for key, spec in task.output_spec.items():
    assert per_clip[key].shape == leading + spec.shape.as_list(), key
  # A snapshot in TF Serving's layout whose serving signature answers what the live model does.
  writer = SnapshotWriter(model, task.serving_function(model), str(tmp_path), task.name)
  path = writer.write(3)
  served = tf.saved_model.load(path).signatures['serving_default'](**inputs)
  assert int(served['snapshot_version']) == 3
  for key in task.output_spec:
    np.testing.assert_allclose(served[key].numpy(), eager[key].numpy(), rtol=1e-4, atol=1e-5)


def test_depth_noise_step_advances_once_per_training_pass():
  task = DfvDepthTask(H, W)
  model = task.build_network()
  inputs = task.serving_inputs(_mediator())
  step = tf.function(lambda x: task.call(model, x, training=True))
  step(inputs)
  step(inputs)
  assert int(model.noise_step.numpy()) == 2
  task.call(model, inputs, training=False)  # Inference never advances it.
  assert int(model.noise_step.numpy()) == 2
  fixed = DfvDepthTask(H, W, advance_noise_step=False)
  fixed_model = fixed.build_network()
  fixed.call(fixed_model, inputs, training=True)
  assert int(fixed_model.noise_step.numpy()) == 0


def test_normals_unit_noise_step_and_trainer_binding():
  task = DfvNormalsTask(H, W, filters_scale=0.125)
  model = task.build_network()
  inputs = task.serving_inputs(_mediator())
  step = tf.function(lambda x: task.call(model, x, training=True))
  out = step(inputs)
  step(inputs)
  np.testing.assert_allclose(tf.norm(out['normals'], axis=-1).numpy(), 1.0, atol=1e-5)
  assert int(model.noise_step.numpy()) == 2
  # Bound to a trainer's step, the network's own counter stays put and the norms read the step.
  bound = task.build_network()
  trainer_step = tf.Variable(7, dtype=tf.int64)
  task.bind_training_step(bound, trainer_step)
  task.call(bound, inputs, training=True)
  assert int(bound.noise_step.numpy()) == 0
  assert bound.noise_step_reference.variable is trainer_step
  with pytest.raises(ValueError, match=r"DfvNormalsTask\('normals'\).*filters_scale must be 1.0"):
    DfvNormalsTask(H, W, imagenet_checkpoint='/x', filters_scale=0.5)


def test_motion_runs_both_frame_orders():
  # The backward outputs of (a, b) are the network's answer for (b, a): the same as the forward
  # outputs of the swapped pair.
  task = DfvMotionTask(H, W)
  model = task.build_network()
  rng = np.random.default_rng(1)
  a = tf.constant(rng.integers(0, 255, (2, H, W, 3), dtype=np.uint8))
  b = tf.constant(rng.integers(0, 255, (2, H, W, 3), dtype=np.uint8))
  ab = task.call(model, {'image_a': a, 'image_b': b})
  ba = task.call(model, {'image_a': b, 'image_b': a})
  for key in ('rotation', 'translation', 'residual_translation'):
    np.testing.assert_allclose(ab[f'{key}_backward'].numpy(), ba[key].numpy(), rtol=1e-4, atol=1e-6)
  assert 'intrinsics' not in ab
  with pytest.raises(KeyError, match='image_b'):
    task.call(model, {'image_a': a})


def test_motion_translation_prior_is_added_forward_and_subtracted_backward():
  # The prior p shifts only the background translations: forward t + p, backward t' - p, where
  # t, t' are the same network's outputs without the prior (same weights); rotations and the
  # translation fields are unchanged.
  plain = DfvMotionTask(H, W)
  prior = (0.1, -0.2, -0.9)
  shifted = DfvMotionTask(H, W, translation_prior=prior)
  model = plain.build_network()
  rng = np.random.default_rng(2)
  a = tf.constant(rng.integers(0, 255, (2, H, W, 3), dtype=np.uint8))
  b = tf.constant(rng.integers(0, 255, (2, H, W, 3), dtype=np.uint8))
  p0 = plain.call(model, {'image_a': a, 'image_b': b})
  p1 = shifted.call(model, {'image_a': a, 'image_b': b})
  np.testing.assert_allclose(p1['translation'], p0['translation'] + np.float32(prior), atol=1e-6)
  np.testing.assert_allclose(
      p1['translation_backward'], p0['translation_backward'] - np.float32(prior), atol=1e-6
  )
  for key in ('rotation', 'residual_translation', 'rotation_backward'):
    np.testing.assert_array_equal(p1[key], p0[key])
  with pytest.raises(ValueError, match=r'translation_prior must be 3 numbers.*\(1.0, 2.0\)'):
    DfvMotionTask(H, W, translation_prior=(1.0, 2.0))
  with pytest.raises(ValueError, match=r"translation_prior must be 3 numbers.*'fwd'"):
    DfvMotionTask(H, W, translation_prior='fwd')


def test_motion_fed_predicted_depth_stacks_it_onto_the_rgb(tmp_path):
  # depth_input_task: the wire inputs gain depth_a, depth_b (the upstream depth of frames t and
  # t+1 of each pair), and the network sees 4 channels per frame. Its answer changes with the
  # depth it is given (the depth reaches the network) and is the same eager, in a tf.function
  # and from a SavedModel snapshot.
  from taskology_tf.tasks import base as task_base  # pylint: disable=g-import-not-at-top

  task = DfvMotionTask(H, W, depth_input_task='depth')
  assert task.input_tasks == ('depth',)
  assert task.input_spec['depth_a'].shape.as_list() == [H, W, 1]
  model = task.build_network()
  assert model.inputs[0].shape.as_list() == [None, H, W, 4]
  mediator = _mediator()
  with pytest.raises(
      KeyError, match=r"'motion' takes the depth of task 'depth'.*upstream/depth/depth"
  ):
    task.serving_inputs(mediator)
  depth = tf.constant(np.random.default_rng(3).uniform(1, 30, (B, T, H, W, 1)), tf.float32)
  fed = task_base.with_upstream(mediator, 'depth', {'depth': depth})
  inputs = task.serving_inputs(fed)
  # Pairs (0, 1), (1, 2): depth_a holds frames 0, 1 and depth_b frames 1, 2.
  np.testing.assert_array_equal(inputs['depth_a'].numpy(), depth[0, :2].numpy())
  np.testing.assert_array_equal(inputs['depth_b'].numpy(), depth[0, 1:].numpy())
  eager = task.call(model, inputs)
  graph = tf.function(lambda x: task.call(model, x))(inputs)
  np.testing.assert_allclose(eager['translation'], graph['translation'], rtol=1e-4, atol=1e-6)
  other = task.call(model, {**inputs, 'depth_a': 2.0 * inputs['depth_a']})
  assert np.abs(other['residual_translation'] - eager['residual_translation']).max() > 0
  with pytest.raises(KeyError, match='depth_b'):
    task.call(model, {k: v for k, v in inputs.items() if k != 'depth_b'})
  writer = SnapshotWriter(model, task.serving_function(model), str(tmp_path), 'm')
  served = tf.saved_model.load(writer.write(1)).signatures['serving_default'](**inputs)
  np.testing.assert_allclose(served['translation'], eager['translation'], rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match='depth_input_task cannot be the motion task itself'):
    DfvMotionTask(H, W, depth_input_task='motion')
  with pytest.raises(ValueError, match='no dedicated batches'):
    task.dedicated_inputs({'image': mediator['image']})


def test_motion_encoder_initializer_keeps_the_bottleneck_scale():
  # Seven ReLU convolutions: Glorot-uniform kernels (fan-average variance, as published)
  # roughly halve the activations' variance per layer, He-normal (2 / fan_in) keeps it, so on
  # the same random pairs He's bottleneck is over 10x larger (measured ~75x at 48x64, filters
  # x0.25). The check is a ratio of the same inputs' statistics, not a magic value.
  import tf_keras as keras  # pylint: disable=g-import-not-at-top

  from taskology_tf.networks import dfv_motion  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  a = rng.uniform(0, 1, (8, 48, 64, 3)).astype(np.float32)
  b = np.roll(a, 2, axis=2)
  scale = {}
  for init in ('glorot_uniform', 'he_normal'):
    keras.utils.set_random_seed(0)
    net = dfv_motion.build_dfv_motion_net(48, 64, filters_scale=0.25, encoder_initializer=init)
    bottleneck = keras.Model(net.inputs, net.get_layer('bottleneck').output)
    scale[init] = float(np.abs(bottleneck([a, b]).numpy()).mean())
  assert scale['he_normal'] > 10 * scale['glorot_uniform'], scale
  with pytest.raises(
      ValueError, match="encoder_initializer must be 'glorot_uniform' or 'he_normal'"
  ):
    dfv_motion.build_dfv_motion_net(48, 64, encoder_initializer='zeros')
  with pytest.raises(ValueError, match='channels_per_frame must be 3'):
    dfv_motion.build_dfv_motion_net(48, 64, channels_per_frame=6)
