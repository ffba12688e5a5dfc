"""SegmentationTask with Model Garden's NAS-FPN segmenter: shapes, export, serving, loss, metrics."""

import math
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from taskology_tf.datasets import class_set
from taskology_tf.metrics.segmentation import iou_results
from taskology_tf.networks import nasfpn_segmenter
from taskology_tf.serving import client as client_lib
from taskology_tf.serving import server as server_lib
from taskology_tf.serving.export import export_snapshot
from taskology_tf.tasks.segmentation import SegmentationTask

H, W = 64, 64
# Tiny overrides: ResNet-10 at 1/8 width, 8 NAS-FPN filters, one repeat, levels 3..7 (the
# published cell builds levels 3..7; the 64x64 input is padded to 128x128).
TINY = dict(
    backbone_depth=10,
    backbone_width_multiplier=0.125,
    num_filters=8,
    num_repeats=1,
    head_num_convs=1,
    head_num_filters=8,
)


def tiny_task(**kwargs):
  return SegmentationTask(H, W, network='nasfpn', project_classes=True, **TINY, **kwargs)


@pytest.fixture(scope='module')
def tiny():
  keras.utils.set_random_seed(0)
  task = tiny_task()
  return task, task.build_network()


def _images(n, seed=0):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.integers(0, 255, (n, H, W, 3), dtype=np.uint8))


@pytest.mark.timeout(240)
def test_spec_eager_graph_export_and_served_prediction(tiny, tmp_path):
  task, model = tiny
  assert task.num_classes == class_set.NUM_CLASSES == 19
  mediator = {
      'image': tf.reshape(_images(6), [2, 3, H, W, 3]),
      'intrinsics': tf.eye(3, batch_shape=[2]),
  }
  inputs = task.serving_inputs(mediator)
  eager = task.call(model, inputs)
  graph = tf.function(lambda x: task.call(model, x))(inputs)
  spec = task.output_spec['logits']
  assert spec.shape == [H, W, 19]
  assert eager['logits'].shape == [6, H, W, 19] and eager['logits'].dtype == tf.float32
  np.testing.assert_allclose(eager['logits'].numpy(), graph['logits'].numpy(), atol=1e-4)
  assert task.predict_mediator(model, mediator)['logits'].shape == [2, 3, H, W, 19]
  # Export as a peer snapshot and ask the model server for it over gRPC on loopback.
  export_snapshot(model, task.serving_function(model), str(tmp_path), task.name, 3)
  server = server_lib.ModelServer(
      server_lib.single_model_config(task.name, str(tmp_path / task.name)),
      port=0,
      poll_wait_seconds=0.1,
  )
  server.start()
  try:
    server.wait_until_version(task.name, 3, timeout=60)
    with client_lib.PeerClient(f'127.0.0.1:{server.port}', task.name) as client:
      result = client.predict({'image': inputs['image'].numpy()})
  finally:
    server.stop()
  assert result.version == 3
  np.testing.assert_allclose(result.outputs['logits'], eager['logits'].numpy(), atol=1e-4)


def test_logits_depend_only_on_the_image_not_on_the_padding(tiny):
  # The 64x64 image is zero-padded to 128x128 after normalisation; the crop of the padded
  # output is what comes back, so one image gives the same logits alone or in a batch.
  task, model = tiny
  images = _images(3, seed=1)
  batch = task.call(model, {'image': images})['logits'].numpy()
  single = task.call(model, {'image': images[1:2]})['logits'].numpy()
  np.testing.assert_allclose(batch[1:2], single, atol=1e-4)
  assert nasfpn_segmenter.padded_size(128, 416, 7) == (128, 512)
  assert nasfpn_segmenter.padded_size(64, 96, 7) == (128, 128)


@pytest.mark.timeout(240)
def test_one_training_step_lowers_the_loss_on_its_batch():
  keras.utils.set_random_seed(1)
  task = tiny_task()
  model = task.build_network()
  rng = np.random.default_rng(2)
  labels = rng.choice([0, 10, 11, 13, 255], size=(2, H, W)).astype(np.uint8)
  batch = {'image': _images(2, seed=3), 'semantics': tf.constant(labels)}
  optimizer = keras.optimizers.SGD(learning_rate=1e-3)

  def loss_fn():
    outputs = task.call(model, task.dedicated_inputs(batch), training=True)
    return task.supervised_loss(batch, outputs)[0]

  with tf.GradientTape() as tape:
    before = loss_fn()
  grads = tape.gradient(before, model.trainable_variables)
  # The head reads level 3 only, so the last NAS-FPN cell's blocks that build levels 4..7
  # (4 of its 7) get no gradient, in Model Garden's model too; everything else does.
  segmenter = model.get_layer(index=2)
  decoder_refs = {v.ref() for v in segmenter.decoder.trainable_variables}
  dead = [v for v, g in zip(model.trainable_variables, grads) if g is None]
  assert dead and all(v.ref() in decoder_refs for v in dead)
  for v in segmenter.backbone.trainable_variables + segmenter.head.trainable_variables:
    assert any(v is w for w, g in zip(model.trainable_variables, grads) if g is not None), v.name
  live = [(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None]
  assert all(bool(tf.reduce_all(tf.math.is_finite(g))) for g, _ in live)
  optimizer.apply_gradients(live)
  # A small gradient step lowers the loss to first order (lr * |g|^2 > 0).
  after = loss_fn()
  assert math.isfinite(float(before)) and float(after) < float(before)


def test_loss_is_model_gardens_hand_computed_cross_entropy():
  task = SegmentationTask(1, 4, num_classes=3, network='nasfpn')
  # Pixels: logits (0, 0, 0) label 0 -> log 3; (ln 4, 0, 0) label 2 -> ln 6 - 0 = ln 6;
  # label 255 (ignore) and label 7 (>= num_classes) left out. SegmentationLoss divides by the
  # valid count plus 1e-5: (ln 3 + ln 6) / (2 + 1e-5).
  logits = tf.constant([[[[0, 0, 0], [math.log(4), 0, 0], [5, 1, 2], [1, 2, 3]]]], tf.float32)
  labels = tf.constant([[[0, 2, 255, 7]]], tf.uint8)
  loss, metrics = task.supervised_loss({'semantics': labels}, {'logits': logits})
  np.testing.assert_allclose(float(loss), (math.log(3) + math.log(6)) / (2 + 1e-5), rtol=1e-6)
  # Arg-max: pixel 0 -> class 0 (ties resolve to the first) correct, pixel 1 -> 0 wrong.
  np.testing.assert_allclose(float(metrics['pixel_accuracy']), 0.5)
  # The U-Net path's loss is the same mean cross-entropy (divided by the count exactly).
  unet_loss, _ = SegmentationTask(1, 4, num_classes=3).supervised_loss(
      {'semantics': labels}, {'logits': logits}
  )
  np.testing.assert_allclose(float(unet_loss), (math.log(3) + math.log(6)) / 2, rtol=1e-6)


def test_loss_with_no_valid_pixel_is_zero_not_nan():
  # Every label ignored (255) or out of range: SegmentationLoss sums nothing and divides by
  # 0 + 1e-5, so the loss is exactly 0 with zero (finite) gradients, never 0 / 0.
  task = SegmentationTask(1, 3, num_classes=3, network='nasfpn')
  logits = tf.Variable([[[[1.0, 2.0, 3.0], [0.0, 5.0, 1.0], [2.0, 2.0, 2.0]]]])
  labels = tf.constant([[[255, 255, 7]]], tf.uint8)
  with tf.GradientTape() as tape:
    loss, _ = task.supervised_loss({'semantics': labels}, {'logits': logits})
  assert float(loss) == 0.0
  np.testing.assert_array_equal(tape.gradient(loss, logits).numpy(), np.zeros([1, 1, 3, 3]))


@pytest.mark.timeout(120)
def test_attention_gradient_is_finite_and_hand_derived_under_xla(tiny):
  # The tiny Table 1 E's segmentation loss was NaN at step 2 under XLA: the NAS-FPN cell's
  # attention, out = feat0 + feat1 * sigmoid(M), M = max over H, W of feat0, had TF's
  # reduce_max gradient dy * (x == M) / count(x == M), and with tests/conftest.py's
  # --xla_backend_optimization_level=0 XLA computed x = conv * g + b with other rounding in the
  # fusion of the comparison than in the reduction's: no element equal to M, 0 / 0 = NaN.
  # The decoder the segmenter is built with must give finite, hand-derived gradients here.
  _, model = tiny
  decoder = model.get_layer(index=2).decoder
  rng = np.random.default_rng(0)
  a = tf.constant(rng.normal(size=(2, 4, 4, 8)), tf.float32)
  k = tf.constant(rng.normal(size=(1, 1, 8, 64)), tf.float32)
  g = tf.constant(rng.normal(1.0, 0.1, size=64), tf.float32)
  b = tf.constant(rng.normal(0.0, 0.1, size=64), tf.float32)

  def feat0(g, b):
    # A batch-norm-like affine map of a 1x1 convolution, upsampled x2 by nearest neighbour
    # (as the cell resamples a coarser level): every maximum is tied 4 times.
    x = tf.nn.conv2d(a, k, 1, 'SAME') * g + b
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)  # [2, 8, 8, 64]

  def loss_and_grads(g, b):
    with tf.GradientTape() as tape:
      tape.watch([g, b])
      out = decoder._global_attention(feat0(g, b), tf.ones([2, 8, 8, 64]))
      loss = tf.reduce_sum(out)
    return out, tape.gradient(loss, [g, b])

  out, (grad_g, grad_b) = tf.function(loss_and_grads, jit_compile=True)(g, b)
  assert np.isfinite(grad_g.numpy()).all() and np.isfinite(grad_b.numpy()).all()
  # Forward: Model Garden's formula. With feat1 = 1: out = x + sigmoid(M) per (example, channel).
  x = feat0(g, b).numpy()
  m = x.max(axis=(1, 2), keepdims=True)
  sigmoid = 1 / (1 + np.exp(-m))
  np.testing.assert_allclose(out.numpy(), x + sigmoid, rtol=1e-5, atol=1e-6)
  # Backward: L = sum(out), dL/dx = 1 everywhere plus sigmoid'(M) * sum(feat1) = s (1 - s) * 64
  # at the maximum (one of the tied copies, or shared among them: the sum is the same).
  # x = conv * g + b, so dL/db_c = sum over examples and pixels of dL/dx
  # = 2 * 64 + 64 * sum_examples s (1 - s), and dL/dg_c = sum of dL/dx * conv.
  ds = (sigmoid * (1 - sigmoid))[:, 0, 0, :]  # [2, 64]
  np.testing.assert_allclose(grad_b.numpy(), 2 * 64 + 64 * ds.sum(0), rtol=1e-4)
  conv = tf.repeat(tf.repeat(tf.nn.conv2d(a, k, 1, 'SAME'), 2, axis=1), 2, axis=2).numpy()
  at_max = (x == m) / (x == m).sum(axis=(1, 2), keepdims=True)  # Ties share; conv is tied too.
  expected_g = conv.sum(axis=(0, 1, 2)) + 64 * (ds[:, None, None, :] * at_max * conv).sum((0, 1, 2))
  np.testing.assert_allclose(grad_g.numpy(), expected_g, rtol=1e-4, atol=1e-4)


def test_evaluator_names_the_movable_classes():
  task = tiny_task()
  evaluator = task.new_metrics()
  # Ground truth: 4 pixels car, 2 person, 2 road. Prediction: car everywhere except one
  # person pixel predicted person. IoU car = 4 / 7 (tp 4, 3 false positives), person = 1 / 2,
  # road = 0 / 2; movable mIoU averages car and person only (the other movable classes have
  # no pixels): (4/7 + 1/2) / 2.
  car, person, road = (class_set.class_id(n) for n in ('car', 'person', 'road'))
  gt = np.array([[[car, car, car, car, person, person, road, road, 255]]])
  pred = np.array([[[car, car, car, car, person, car, car, car, person]]])
  logits = tf.one_hot(pred, class_set.NUM_CLASSES)
  evaluator.update({'semantics': tf.constant(gt, tf.uint8)}, {'logits': logits})
  result = evaluator.result()
  key = 'miou_movable_person_rider_car_truck_bus_train_motorcycle_bicycle'
  np.testing.assert_allclose(result[key], (4 / 7 + 1 / 2) / 2)
  np.testing.assert_allclose(result['iou/car'], 4 / 7)
  np.testing.assert_allclose(result['iou/road'], 0.0)
  np.testing.assert_allclose(result['miou'], (4 / 7 + 1 / 2 + 0) / 3)
  np.testing.assert_allclose(result['pixel_accuracy'], 5 / 8)
  assert 'iou/truck' not in result  # No pixels: not part of any mean.
  # The numpy summary of the same confusion matrix agrees.
  assert iou_results(evaluator.metrics.confusion, class_set.CLASS_NAMES) == result


def test_bad_options_are_named():
  with pytest.raises(ValueError, match="network='deeplab'"):
    SegmentationTask(H, W, num_classes=3, network='deeplab')
  with pytest.raises(ValueError, match='project_classes'):
    SegmentationTask(H, W, network='nasfpn')
  with pytest.raises(ValueError, match='num_classes=5'):
    SegmentationTask(H, W, num_classes=5, project_classes=True)
  # The published cell builds levels 3..7: levels 3..5 need their own block specs.
  with pytest.raises(ValueError, match='block specs build levels'):
    nasfpn_segmenter.build_nasfpn_segmenter(H, W, 3, max_level=5, **{**TINY, 'backbone_depth': 10})
  with pytest.raises(ValueError, match='backbone_depth=11'):
    nasfpn_segmenter.build_nasfpn_segmenter(H, W, 3, backbone_depth=11)


@pytest.mark.timeout(120)
def test_full_scale_configuration_parameter_counts():
  # ResNet-50, levels 3..7, 256 filters, 5 repeats, head at level 3 with 2 x 256 convs, at
  # 128x416 (building it takes ~7 s; no forward pass). Counted by hand:
  # - NAS-FPN: 5 repeats x 7 cells x (3x3x256x256 conv + 256 bias + 4x256 batch norm)
  #   = 35 x 591,104 = 20,688,640, plus 1x1 projections of C3, C4, C5 (512, 1024, 2048
  #   channels) to 256 with bias and batch norm: 917,504 + 3 x 1,280 = 921,344.
  # - Head: 2 x (3x3x256x256 conv without bias + 4x256 batch norm) + 1x1 classifier
  #   256x19 + 19 = 1,181,696 + 4,883 = 1,186,579.
  # - Backbone trainable: ResNet-50's published 25,557,032 minus its 2048x1000 + 1000
  #   classifier = 23,508,032 (batch-norm moving statistics are not trainable).
  start = time.time()
  model = nasfpn_segmenter.build_nasfpn_segmenter(128, 416, class_set.NUM_CLASSES)
  seconds = time.time() - start
  segmenter = model.get_layer(index=2)
  assert segmenter.decoder.count_params() == 20_688_640 + 921_344
  assert segmenter.head.count_params() == 1_186_579
  trainable = sum(int(np.prod(v.shape)) for v in segmenter.backbone.trainable_variables)
  assert trainable == 23_508_032
  assert model.output_shape == (None, 128, 416, 19)
  print(f'full-scale NAS-FPN built in {seconds:.1f} s, {model.count_params():,} parameters')
