"""The DfVitW-style normals network: shapes, unit output, parameters, shared encoder names."""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.networks import dfv_depth
from taskology_tf.networks import dfv_normals

H, W = 16, 24


def _trainable_count(model):
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def _resnet18_unet_parameters(enc, dec, head_channels):
  """Trainable parameters of the ResNet-18 U-Net, counted layer by layer.

  Encoder (no conv biases; each randomized layer norm has gamma and beta, 2C):
    conv1 7x7x3xc0 + norm; per residual block (in -> out): 3x3 x in x out + 3x3 x out x out +
    two norms (4 out) + a 1x1 x in x out shortcut when in != out.
  Decoder (biases; level l = 5..2 concatenates the skip of encoder stage l - 1):
    upconv_l 3x3 x in x d + d, iconv_l 3x3 x (d + skip) x d + d; upconv1 and iconv1 without a
    skip; the head 3x3 x d0 x k + k.
  """
  c0, c1, c2, c3, c4 = enc
  d0, d1, d2, d3, d4 = dec

  def block(cin, cout):
    return 9 * cin * cout + 9 * cout * cout + 4 * cout + (cin * cout if cin != cout else 0)

  encoder = 49 * 3 * c0 + 2 * c0
  for cin, cout in ((c0, c1), (c1, c1), (c1, c2), (c2, c2), (c2, c3), (c3, c3), (c3, c4)):
    encoder += block(cin, cout)
  encoder += block(c4, c4)

  def conv(cin, cout):
    return 9 * cin * cout + cout

  decoder = 0
  x = c4
  for d, skip in ((d4, c3), (d3, c2), (d2, c1), (d1, c0)):
    decoder += conv(x, d) + conv(d + skip, d)
    x = d
  decoder += conv(x, d0) + conv(d0, d0) + conv(d0, head_channels)
  return encoder + decoder


def test_parameters_hand_count_and_depth_difference():
  depth = dfv_depth.build_dfv_depth_net(H, W)
  normals = dfv_normals.build_dfv_normals_net(H, W)
  enc, dec = dfv_depth.ENCODER_FILTERS, dfv_depth.DECODER_FILTERS
  assert _trainable_count(depth) == _resnet18_unet_parameters(enc, dec, 1)
  assert _trainable_count(normals) == _resnet18_unet_parameters(enc, dec, 3)
  # Only the head differs: 3x3 x 16 x 3 + 3 = 435 vs 3x3 x 16 x 1 + 1 = 145, i.e. +290.
  assert _trainable_count(normals) - _trainable_count(depth) == 290
  # Same weight decay terms: 5 upconvs, 5 iconvs and the head.
  assert len(normals.losses) == len(depth.losses) == 11


def test_hand_count_at_an_eighth_of_the_widths():
  # scaled_filters: (64, 64, 128, 256, 512) / 8 = (8, 8, 16, 32, 64); (16, ..., 256) / 8.
  normals = dfv_normals.build_dfv_normals_net(32, 32, filters_scale=0.125)
  assert _trainable_count(normals) == _resnet18_unet_parameters(
      (8, 8, 16, 32, 64), (2, 4, 8, 16, 32), 3
  )


@pytest.mark.parametrize('height, width', [(H, W), (48, 64)])
def test_output_shape_and_unit_norm(height, width):
  model = dfv_normals.build_dfv_normals_net(height, width, filters_scale=0.25)
  image = tf.random.uniform([2, height, width, 3], seed=3)
  for training in (True, False):
    normals = model(image, training=training)
    assert normals.shape == [2, height, width, 3]
    np.testing.assert_allclose(tf.norm(normals, axis=-1).numpy(), 1.0, atol=1e-5)


def test_untrained_head_faces_the_camera():
  # With the head's kernel zeroed, its output is its bias (0, 0, -1): unit, facing the camera.
  model = dfv_normals.build_dfv_normals_net(H, W, filters_scale=0.125)
  head = model.get_layer('normals1')
  np.testing.assert_array_equal(head.bias.numpy(), [0.0, 0.0, -1.0])
  head.kernel.assign(tf.zeros_like(head.kernel))
  out = model(tf.random.uniform([1, H, W, 3]), training=False).numpy()
  np.testing.assert_allclose(out, np.broadcast_to([0.0, 0.0, -1.0], out.shape), atol=1e-7)


def test_eager_equals_tf_function():
  model = dfv_normals.build_dfv_normals_net(H, W, filters_scale=0.25)
  image = tf.random.uniform([1, H, W, 3], seed=4)
  eager = model(image, training=False)
  graph = tf.function(lambda x: model(x, training=False))(image)
  np.testing.assert_allclose(eager.numpy(), graph.numpy(), rtol=1e-4, atol=1e-5)


def test_encoder_names_match_the_depth_network():
  # The same names and shapes, so one ImageNet checkpoint (load_imagenet_encoder) fits both.
  depth = dfv_depth.encoder_variables(dfv_depth.build_dfv_depth_net(H, W, filters_scale=0.25))
  normals = dfv_depth.encoder_variables(dfv_normals.build_dfv_normals_net(H, W, filters_scale=0.25))
  assert sorted(depth) == sorted(normals)
  for key, variable in depth.items():
    assert variable.shape == normals[key].shape, key


def test_flip_mean_normals():
  # A net answering normalize(1, 0, -1) everywhere: the mirrored pass mapped back is
  # (-1, 0, -1)/sqrt(2); the sum (0, 0, -2)/sqrt(2) normalises to (0, 0, -1).
  const = tf.constant([1.0, 0.0, -1.0]) / np.sqrt(2.0)
  image = tf.random.uniform([2, 3, 5, 3])
  out = dfv_normals.flip_mean_normals(lambda x: tf.zeros_like(x) + const, image)
  np.testing.assert_allclose(out.numpy(), np.broadcast_to([0, 0, -1], out.shape), atol=1e-6)
  # A mirror-equivariant net (x component = u - (W-1)/2, i.e. sign-flipped by mirroring) is
  # left unchanged: the mirrored pass equals the direct one.
  u = tf.range(5, dtype=tf.float32) - 2.0
  field = tf.stack([u, tf.zeros_like(u), -tf.ones_like(u)], axis=-1)[tf.newaxis, tf.newaxis]
  field = field / tf.norm(field, axis=-1, keepdims=True)
  out = dfv_normals.flip_mean_normals(lambda x: tf.zeros_like(x) + field, image)
  np.testing.assert_allclose(out.numpy(), np.broadcast_to(field, out.shape), atol=1e-6)


def test_normals_task_passes_the_decoder_leaky_slope_to_its_network():
  # Same variables either way; the leaky network adds the `<conv>__leaky` activation layers and,
  # with the ReLU network's weights, gives different normals (negative pre-activations pass).
  from taskology_tf.tasks.dfv_normals import DfvNormalsTask

  relu = DfvNormalsTask(H, W, filters_scale=0.125).build_network()
  leaky = DfvNormalsTask(H, W, filters_scale=0.125, decoder_leaky_slope=0.1).build_network()
  assert [(v.name, v.shape) for v in relu.weights] == [(v.name, v.shape) for v in leaky.weights]
  assert not [l for l in relu.layers if 'leaky' in l.name]
  assert [l for l in leaky.layers if l.name.endswith('__leaky')]
  leaky.set_weights(relu.get_weights())
  image = tf.random.stateless_uniform([1, H, W, 3], seed=[1, 2])
  a, b = relu(image, training=False), leaky(image, training=False)
  assert float(tf.reduce_max(tf.abs(a - b))) > 1e-6
