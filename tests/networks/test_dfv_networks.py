"""DfVitW networks: randomized layer norm, ResNet-18 U-Net depth net, motion-field net."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from taskology_tf.networks import dfv_depth
from taskology_tf.networks import dfv_motion
from taskology_tf.networks import randomized_layer_norm as rln

H, W = 16, 24


def _layer_norm_numpy(x, gamma, beta, epsilon=1e-3):
  """Per-example, per-channel normalisation over H, W: (x - mu) / sqrt(var + eps) g + b."""
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = x.var(axis=(1, 2), keepdims=True)
  return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def _norm_layer(step_value):
  step = tf.Variable(step_value, dtype=tf.int64, trainable=False)
  layer = rln.RandomizedLayerNormalization(rln.StepReference(step))
  x = np.random.default_rng(0).normal(2.0, 3.0, (2, 5, 7, 4)).astype(np.float32)
  layer(x)  # Build.
  layer.gamma.assign([0.5, 1.0, 2.0, -1.0])
  layer.beta.assign([0.0, 1.0, -2.0, 0.5])
  return layer, step, x


def test_randomized_layer_norm_is_layer_norm_at_zero_noise_and_inference():
  layer, step, x = _norm_layer(0)
  expected = _layer_norm_numpy(x, layer.gamma.numpy(), layer.beta.numpy())
  # Step 0: stddev 0.5 * (0 / 10000)^2 = 0, so the noise factors are exactly 1.
  np.testing.assert_allclose(layer(x, training=True).numpy(), expected, rtol=1e-4, atol=1e-4)
  # Inference ignores the noise whatever the step.
  step.assign(50000)
  np.testing.assert_allclose(layer(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)
  # ... while training at a ramped-up step perturbs the moments.
  noisy = layer(x, training=True).numpy()
  assert np.abs(noisy - expected).max() > 1e-2


@pytest.mark.parametrize(
    'step, expected',
    [
        (0, 0.0),  # 0.5 * 0^2
        (2500, 0.5 * 0.25**2),  # 0.5 * (2500 / 10000)^2 = 0.03125
        (5000, 0.125),  # 0.5 * 0.5^2
        (30000, 0.5),  # capped: 0.5 * min(3, 1)^2
    ],
)
def test_noise_ramp(step, expected):
  assert float(rln.noise_stddev(step)) == pytest.approx(expected, abs=1e-7)
  layer, _, _ = _norm_layer(step)
  assert float(layer.current_stddev()) == pytest.approx(expected, abs=1e-7)


def test_noise_spread_follows_the_ramp():
  # Input x = mean-free unit-variance pattern + c (one channel), gamma 1, beta 0. With factors
  # f_m (mean) and f_v (variance), out = (x - c f_m) / sqrt(f_v + eps); at a pixel where the
  # pattern is 0 the output is c (1 - f_m) / sqrt(f_v + eps), so its spread grows with the
  # noise stddev: ~0 at step 0, small at step 2500 (s = 0.031), large at 10000 (s = 0.5).
  pattern = np.array([[-1.0, 0.0, 1.0]], np.float32)  # mean 0, variance 2/3 over 3 pixels.
  x = np.tile((pattern / np.sqrt(2 / 3) + 10.0)[None, :, :, None], (256, 1, 1, 1))
  spreads = []
  for step_value in (0, 2500, 10000):
    step = tf.Variable(step_value, dtype=tf.int64)
    layer = rln.RandomizedLayerNormalization(rln.StepReference(step), epsilon=0.0)
    out = layer(x, training=True).numpy()[:, 0, 1, 0]  # The pixel where the pattern is 0.
    spreads.append(out.std())
  assert spreads[0] < 1e-3
  assert 1e-3 < spreads[1] < spreads[2]


@pytest.mark.parametrize('height, width', [(H, W), (48, 64), (128, 416)])
def test_depth_net_shapes(height, width):
  model = dfv_depth.build_dfv_depth_net(height, width)
  depth = model(tf.random.uniform([1, height, width, 3]), training=True)
  assert depth.shape == [1, height, width, 1]
  assert float(tf.reduce_min(depth)) > 0.0  # softplus
  # The decoder's L2 terms (5 upconvs, 5 iconvs, disp1) reach model.losses.
  assert len(model.losses) == 11


def test_depth_net_names_follow_the_reference_and_noise_step_is_one_variable():
  model = dfv_depth.build_dfv_depth_net(H, W)
  names = dfv_depth.encoder_variables(model)
  # conv1 (kernel, gamma, beta) + 8 blocks x (2 convs + 2 norms x 2) + 3 shortcut convs.
  assert len(names) == 3 + 8 * 6 + 3
  for key in (
      'conv1/conv/kernel',
      'conv1/bn/gamma',
      'conv3_1/shortcut/kernel',
      'conv5_2/bn_2/beta',
  ):
    assert key in names
  assert names['conv5_2/conv_2/kernel'].shape == [3, 3, 512, 512]
  steps = [v for v in model.variables if 'noise_step' in v.name]
  assert len(steps) == 1 and steps[0] is model.noise_step


def _write_reference_checkpoint(path, tensors):
  """A TF1-style (name-keyed) checkpoint, as the reference's imagenet restorer reads."""
  names = list(tensors)
  tf.raw_ops.SaveV2(
      prefix=path,
      tensor_names=names,
      shape_and_slices=[''] * len(names),
      tensors=[tf.constant(tensors[n]) for n in names],
  )


def test_imagenet_encoder_loads_and_errors_are_clear(tmp_path):
  model = dfv_depth.build_dfv_depth_net(H, W)
  rng = np.random.default_rng(1)
  wanted = dfv_depth.encoder_variables(model)
  tensors = {
      'resnet/' + n: rng.normal(size=v.shape.as_list()).astype(np.float32)
      for n, v in wanted.items()
  }
  tensors['resnet/conv1/bn/moving_mean'] = np.zeros([64], np.float32)  # Ignored.
  path = str(tmp_path / 'imagenet')
  _write_reference_checkpoint(path, tensors)
  loaded = dfv_depth.load_imagenet_encoder(model, path, prefix='resnet/')
  assert len(loaded) == len(wanted)
  np.testing.assert_array_equal(
      wanted['conv4_1/conv_2/kernel'].numpy(), tensors['resnet/conv4_1/conv_2/kernel']
  )
  with pytest.raises(FileNotFoundError, match='nowhere'):
    dfv_depth.load_imagenet_encoder(model, str(tmp_path / 'nowhere'))
  with pytest.raises(ValueError, match='missing name.*conv1/conv/kernel'):
    dfv_depth.load_imagenet_encoder(model, path)  # Names lack the prefix.
  bad = dict(tensors)
  bad['resnet/conv1/conv/kernel'] = np.zeros([3, 3, 3, 64], np.float32)
  _write_reference_checkpoint(str(tmp_path / 'bad'), bad)
  with pytest.raises(ValueError, match=r'conv1/conv/kernel: checkpoint \[3, 3, 3, 64\]'):
    dfv_depth.load_imagenet_encoder(model, str(tmp_path / 'bad'), prefix='resnet/')


def test_flip_min_depth():
  # net(I) = red + column index u: the mirrored pass gives red + (W - 1 - u) after unflipping,
  # so the combination is red + min(u, W - 1 - u).
  width = 5
  image = tf.random.uniform([2, 3, width, 3])
  ramp = tf.range(width, dtype=tf.float32)[tf.newaxis, tf.newaxis, :, tf.newaxis]
  out = dfv_depth.flip_min_depth(lambda x: x[..., :1] + ramp, image)
  expected = image[..., :1] + tf.minimum(ramp, width - 1 - ramp)
  np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-6)


def _rx(a):
  c, s = np.cos(a), np.sin(a)
  return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
  c, s = np.cos(a), np.sin(a)
  return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
  c, s = np.cos(a), np.sin(a)
  return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_matrix_from_angles_is_rx_ry_rz():
  angles = np.random.default_rng(2).normal(0, 0.5, (5, 3))
  got = dfv_motion.matrix_from_angles(angles).numpy()
  for a, r in zip(angles, got):
    np.testing.assert_allclose(r, _rx(a[0]) @ _ry(a[1]) @ _rz(a[2]), atol=1e-6)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)


@pytest.fixture(scope='module')
def motion_net():
  return dfv_motion.build_dfv_motion_net(H, W, learn_intrinsics=True)


def test_motion_net_shapes_and_intrinsics_head(motion_net):
  a = tf.random.uniform([2, H, W, 3])
  out = motion_net([a, tf.random.uniform([2, H, W, 3])])
  assert out['rotation_angles'].shape == [2, 3]
  assert out['translation'].shape == [2, 3]
  assert out['residual_translation'].shape == [2, H, W, 3]
  assert out['intrinsics'].shape == [2, 3, 3]
  # Zeroed head kernels: focal = softplus(0) * (W, H) = ln 2 (W, H) (zero bias), principal point
  # = (0 + 0.5) (W, H), the reference's parameterisation.
  for name in ('intrinsics_foci', 'intrinsics_offsets'):
    layer = motion_net.get_layer(name)
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
  k = motion_net([a, a])['intrinsics'].numpy()
  expected = np.array([[np.log(2) * W, 0, 0.5 * W], [0, np.log(2) * H, 0.5 * H], [0, 0, 1]])
  np.testing.assert_allclose(k[0], expected, rtol=1e-5)


def test_motion_scales_start_at_0_01_and_are_floored(motion_net):
  scales = dfv_motion.scales(motion_net)
  assert float(scales.rotation_scale) == pytest.approx(0.01)
  assert float(scales.translation_scale) == pytest.approx(0.01)
  # The constraint (applied by the optimizer after each update) is relu(v - m) + m = max(v, m).
  assert float(scales.rotation_scale.constraint(tf.constant(-1.0))) == pytest.approx(0.001)
  assert float(scales.translation_scale.constraint(tf.constant(0.3))) == pytest.approx(0.3)


def test_scale_inits_multiply_the_outputs_linearly_and_bad_inits_name_the_flag():
  # Same weights, translation scale 0.01 -> 0.5: translation and the residual field scale by
  # 0.5 / 0.01 = 50 exactly (outputs are raw * scale); rotation angles (scale kept) unchanged.
  tf_keras.utils.set_random_seed(4)
  base = dfv_motion.build_dfv_motion_net(H, W, filters_scale=0.25)
  big = dfv_motion.build_dfv_motion_net(H, W, filters_scale=0.25, translation_scale_init=0.5)
  assert float(dfv_motion.scales(big).translation_scale) == pytest.approx(0.5)
  assert float(dfv_motion.scales(big).rotation_scale) == pytest.approx(0.01)
  big.set_weights(base.get_weights())
  dfv_motion.scales(big).translation_scale.assign(0.5)
  a = tf.random.uniform([2, H, W, 3], seed=3)
  b = tf.random.uniform([2, H, W, 3], seed=4)
  out_base, out_big = base([a, b]), big([a, b])
  np.testing.assert_allclose(out_big['translation'], 50 * out_base['translation'], rtol=1e-4)
  np.testing.assert_allclose(
      out_big['residual_translation'], 50 * out_base['residual_translation'], rtol=1e-3, atol=1e-7
  )
  np.testing.assert_allclose(out_big['rotation_angles'], out_base['rotation_angles'], rtol=1e-5)
  with pytest.raises(ValueError, match='translation_scale_init must be >= 0.001'):
    dfv_motion.build_dfv_motion_net(H, W, filters_scale=0.25, translation_scale_init=0.0)


def test_scale_learning_rate_multiplier_speeds_only_the_scales_by_k():
  # Stored as value / k, used as k * variable: at init the outputs equal the plain network's.
  # Adam's first update of a variable is lr * g / (|g| + eps) ~ lr in magnitude (m_hat = g,
  # v_hat = g^2; eps 1e-12 here, negligible), so the stored translation variable moves by ~lr and the scale the outputs
  # use by k * lr: with lr 1e-3 and k 10, 0.01 -> 0.02 against 0.011 at k 1.
  tf_keras.utils.set_random_seed(4)
  plain = dfv_motion.build_dfv_motion_net(H, W, filters_scale=0.25)
  fast = dfv_motion.build_dfv_motion_net(
      H, W, filters_scale=0.25, scale_learning_rate_multiplier=10.0
  )
  fast.set_weights(plain.get_weights())
  for layer, value in ((dfv_motion.scales(fast), 0.001), (dfv_motion.scales(plain), 0.01)):
    layer.rotation_scale.assign(value)
    layer.translation_scale.assign(value)
  a = tf.random.uniform([2, H, W, 3], seed=3)
  b = tf.random.uniform([2, H, W, 3], seed=4)
  for key, value in plain([a, b]).items():
    np.testing.assert_allclose(fast([a, b])[key], value, rtol=1e-5, atol=1e-8)

  def scale_step(model):
    optimizer = tf_keras.optimizers.Adam(1e-3, epsilon=1e-12)
    with tf.GradientTape() as tape:
      # d(-sum |raw * s|) / ds = -sum |raw| < 0: the step grows the scale.
      loss = -tf.reduce_sum(tf.abs(model([a, b])['translation']))
    variables = model.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return float(dfv_motion.scales(model).values()[1])

  assert scale_step(plain) - 0.01 == pytest.approx(1e-3, rel=1e-3)
  assert scale_step(fast) - 0.01 == pytest.approx(1e-2, rel=1e-3)
  # The floor stays 0.001 in the outputs' units: the stored value is kept >= 0.001 / 10.
  stored = dfv_motion.scales(fast).translation_scale
  assert float(stored.constraint(tf.constant(-1.0))) == pytest.approx(1e-4)
  with pytest.raises(ValueError, match='scale_learning_rate_multiplier must be > 0'):
    dfv_motion.build_dfv_motion_net(H, W, filters_scale=0.25, scale_learning_rate_multiplier=0.0)


def test_motion_net_eager_equals_xla(motion_net):
  a = tf.random.uniform([1, H, W, 3], seed=1)
  b = tf.random.uniform([1, H, W, 3], seed=2)
  eager = motion_net([a, b])
  compiled = tf.function(lambda x, y: motion_net([x, y]), jit_compile=True)(a, b)
  for key in eager:
    np.testing.assert_allclose(eager[key].numpy(), compiled[key].numpy(), rtol=1e-4, atol=1e-5)


def test_filters_scale_shrinks_every_layer_and_defaults_to_the_published_widths():
  # scaled_filters rounds f * s and keeps at least one filter: 64 * 0.125 = 8, 16 * 0.125 = 2.
  assert dfv_depth.scaled_filters((64, 16, 1), 0.125, 'x') == (8, 2, 1)
  assert dfv_depth.scaled_filters(dfv_depth.ENCODER_FILTERS, 1.0, 'x') == dfv_depth.ENCODER_FILTERS
  with pytest.raises(ValueError, match='filters_scale must be > 0, got 0'):
    dfv_depth.scaled_filters((64,), 0.0, 'build_dfv_depth_net')
  depth = dfv_depth.build_dfv_depth_net(32, 32, filters_scale=0.125)
  assert depth.get_layer('conv1__conv').filters == 8  # 64 / 8
  assert depth(tf.zeros([1, 32, 32, 3])).shape == (1, 32, 32, 1)
  motion = dfv_motion.build_dfv_motion_net(32, 32, filters_scale=0.125)
  # The encoder's 16 ... 1024 filters become 2 ... 128.
  assert [motion.get_layer(f'conv{i}').filters for i in range(1, 8)] == [2, 4, 8, 16, 32, 64, 128]
  out = motion([tf.zeros([1, 32, 32, 3]), tf.zeros([1, 32, 32, 3])])
  assert out['residual_translation'].shape == (1, 32, 32, 3)
  # encoder_filters gives the seven levels' widths itself; filters_scale no longer shrinks them.
  wide = (32, 64, 128, 128, 256, 256, 256)
  motion = dfv_motion.build_dfv_motion_net(32, 32, filters_scale=0.125, encoder_filters=wide)
  assert tuple(motion.get_layer(f'conv{i}').filters for i in range(1, 8)) == wide
  # The field refinement follows each level's width (max(4, C) per tower).
  assert motion.get_layer('refine1_conv').filters == 32
  out = motion([tf.zeros([1, 32, 32, 3]), tf.zeros([1, 32, 32, 3])])
  assert out['translation'].shape == (1, 3)
  for bad in ((32, 64), (32, 64, 128, 128, 256, 256, 0), (32.0,) * 7, 32):
    with pytest.raises(ValueError, match='encoder_filters must be 7 integers >= 1'):
      dfv_motion.build_dfv_motion_net(32, 32, encoder_filters=bad)


def test_decoder_leaky_slope_keeps_a_silenced_decoder_trainable():
  # The plateau README "Why the depth waits" measures: with every unit of the last decoder
  # layer (iconv1) negative, the published ReLU decoder outputs softplus(head bias) =
  # softplus(0) = ln 2 = 0.693147 at every pixel, and no gradient reaches the layers before
  # it (iconv2's kernel gets exactly 0). With a leaky slope the same weights keep a gradient.
  tf_keras.utils.set_random_seed(5)
  relu = dfv_depth.build_dfv_depth_net(H, W, filters_scale=0.125)
  leaky = dfv_depth.build_dfv_depth_net(H, W, filters_scale=0.125, decoder_leaky_slope=0.1)
  # Same variables (names and shapes), so checkpoints move between the two.
  assert [(v.name, v.shape) for v in relu.weights] == [(v.name, v.shape) for v in leaky.weights]
  assert not [l for l in relu.layers if 'leaky' in l.name]
  leaky.set_weights(relu.get_weights())
  for model in (relu, leaky):
    model.get_layer('iconv1').bias.assign(tf.fill(model.get_layer('iconv1').bias.shape, -1e3))
  image = tf.random.uniform([2, H, W, 3], seed=6)
  grads = {}
  for name, model in (('relu', relu), ('leaky', leaky)):
    with tf.GradientTape() as tape:
      depth = model(image, training=False)
      loss = tf.reduce_mean(tf.math.log(depth))
    kernel = model.get_layer('iconv2').kernel
    grads[name] = float(tf.reduce_max(tf.abs(tape.gradient(loss, kernel))))
    if name == 'relu':
      np.testing.assert_allclose(depth.numpy(), np.log(2.0), rtol=1e-6)
  assert grads['relu'] == 0.0 and grads['leaky'] > 0.0
  with pytest.raises(ValueError, match='decoder_leaky_slope must be in \\[0, 1\\)'):
    dfv_depth.build_dfv_depth_net(H, W, filters_scale=0.125, decoder_leaky_slope=1.5)
  # The task passes its knob on.
  from taskology_tf.tasks.dfv_depth import DfvDepthTask  # pylint: disable=g-import-not-at-top

  task_net = DfvDepthTask(H, W, filters_scale=0.125, decoder_leaky_slope=0.1).build_network()
  assert task_net.get_layer('iconv1__leaky').get_config()['alpha'] == pytest.approx(0.1)


def test_decoder_activity_reads_a_silenced_decoder():
  # A fresh network: every decoder layer has some units on and some off, the map varies.
  # iconv1's bias at -1e3: none of its units is on, and the map is softplus(0) everywhere,
  # so its spread (std / mean over pixels) is 0.
  tf_keras.utils.set_random_seed(7)
  net = dfv_depth.build_dfv_depth_net(H, W, filters_scale=0.125)
  image = tf.random.uniform([2, H, W, 3], seed=8)
  fresh = dfv_depth.decoder_activity(net, image)
  layers = [k for k in fresh if not k.startswith('output_')]
  assert layers == [f'{kind}{level}' for level in (5, 4, 3, 2, 1) for kind in ('upconv', 'iconv')]
  assert all(0.0 < fresh[k] < 1.0 for k in layers) and fresh['output_spread'] > 0.0
  net.get_layer('iconv1').bias.assign(tf.fill(net.get_layer('iconv1').bias.shape, -1e3))
  dead = dfv_depth.decoder_activity(net, image)
  assert dead['iconv1'] == 0.0 and dead['output_spread'] == pytest.approx(0.0, abs=1e-6)
  assert dead['output_mean'] == pytest.approx(np.log(2.0), rel=1e-6)  # softplus(0)
  assert dead['upconv5'] == fresh['upconv5']  # Upstream of the change: untouched.


def test_correlation_is_the_channel_mean_product_at_each_displacement():
  # out[n, y, x, k] = mean_c a[n, y, x, c] * b[n, y + dy, x + dx, c], k = (dy + D)(2D + 1) + dx + D.
  rng = np.random.default_rng(0)
  a = rng.normal(size=(2, 6, 7, 5)).astype(np.float32)
  b = rng.normal(size=(2, 6, 7, 5)).astype(np.float32)
  d = 2
  out = dfv_motion.correlation(tf.constant(a), tf.constant(b), d).numpy()
  assert out.shape == (2, 6, 7, 25)
  for n, y, x, dy, dx in ((1, 2, 3, 1, -2), (0, 5, 6, -2, -1), (1, 0, 0, 0, 0)):
    k = (dy + d) * (2 * d + 1) + (dx + d)
    np.testing.assert_allclose(out[n, y, x, k], np.mean(a[n, y, x] * b[n, y + dy, x + dx]), 1e-5)
  # Outside b the product is zero: at the top-left pixel, every dy < 0 or dx < 0.
  assert np.all(out[:, 0, 0, : 2 * (2 * d + 1)] == 0)  # dy in (-2, -1)
  assert np.all(out[:, 0, 0, [k for k in range(25) if k % 5 < 2]] == 0)  # dx in (-2, -1)
  # b = a shifted by (dy, dx) = (1, 2): at interior pixels the score at that displacement is
  # mean_c a^2 (> 0), i.e. the cost volume sees the motion.
  shifted = np.zeros_like(a)
  shifted[:, 1:, 2:] = a[:, :-1, :-2]
  out = dfv_motion.correlation(tf.constant(a), tf.constant(shifted), d).numpy()
  # b[y + 1, x + 2] = a[y, x] for y + 1 < 6, x + 2 < 7.
  k = (1 + d) * (2 * d + 1) + (2 + d)
  np.testing.assert_allclose(out[:, :5, :5, k], np.mean(a[:, :5, :5] ** 2, -1), rtol=1e-5)


def test_correlation_branch_joins_the_first_encoder_level():
  tf_keras.utils.set_random_seed(0)
  net = dfv_motion.build_dfv_motion_net(
      16, 24, filters_scale=0.125, correlation_displacement=3, weight_reg=0.0
  )
  # conv1 (16 * 0.125 = 2 filters) and 7^2 = 49 matching scores, at half resolution.
  assert net.get_layer('correlation').output.shape[1:] == (8, 12, 49)
  assert net.get_layer('conv1_and_correlation').output.shape[1:] == (8, 12, 2 + 49)
  # One stem for both frames (siamese): each stem layer is called twice, shares its weights.
  assert len(net.get_layer('correlation_stem1')._inbound_nodes) == 2
  rng = np.random.default_rng(1)
  a = rng.uniform(0, 1, (2, 16, 24, 3)).astype(np.float32)
  out = net([a, np.roll(a, 1, axis=2)])
  assert out['translation'].shape == (2, 3) and out['residual_translation'].shape == (2, 16, 24, 3)
  xla = tf.function(net, jit_compile=True)([a, np.roll(a, 1, axis=2)])
  np.testing.assert_allclose(out['translation'], xla['translation'], rtol=1e-4, atol=1e-6)
  plain = dfv_motion.build_dfv_motion_net(16, 24, filters_scale=0.125, weight_reg=0.0)
  assert 'correlation' not in [layer.name for layer in plain.layers]  # 0: as published.
  for bad in (-1, 1.5):
    with pytest.raises(ValueError, match='correlation_displacement must be an integer >= 0'):
      dfv_motion.build_dfv_motion_net(16, 24, correlation_displacement=bad)


def test_zero_heads_start_every_motion_output_at_zero_and_still_learn():
  # head_initializer='zeros': the background head and the eight refinement levels' residual
  # convolutions are zero, so translation = 0 * scale and the field = sum of upsampled zeros
  # plus zero residuals = 0, whatever the scales (1 here) or the other kernels. Rotation
  # angles are 0 too: R = I. One SGD step on a loss that wants translation_z = 1 moves the
  # background kernel (dL/dW = bottleneck features x dL/dt, nonzero) and so the translation.
  tf_keras.utils.set_random_seed(2)
  net = dfv_motion.build_dfv_motion_net(
      H,
      W,
      filters_scale=0.25,
      translation_scale_init=1.0,
      encoder_initializer='he_normal',
      head_initializer='zeros',
  )
  names = ['background_motion'] + [f'refine{i}_bottleneck' for i in range(8)]
  for name in names:
    assert not np.any(net.get_layer(name).get_weights()[0]), name
  a = tf.random.uniform([2, H, W, 3], seed=3)
  b = tf.random.uniform([2, H, W, 3], seed=4)
  out = net([a, b])
  for key in ('rotation_angles', 'translation', 'residual_translation'):
    np.testing.assert_array_equal(out[key].numpy(), 0.0)
  optimizer = tf_keras.optimizers.SGD(0.1)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum((net([a, b])['translation'][:, 2] - 1.0) ** 2)
  grads = tape.gradient(loss, net.trainable_variables)
  optimizer.apply_gradients(zip(grads, net.trainable_variables))
  assert np.any(net.get_layer('background_motion').get_weights()[0])
  moved = net([a, b])['translation'].numpy()[:, 2]
  assert np.all(moved > 0), moved  # Towards 1: the gradient step lowered the loss.
  # The published default is Glorot: nonzero heads.
  plain = dfv_motion.build_dfv_motion_net(H, W, filters_scale=0.25)
  assert np.any(plain.get_layer('background_motion').get_weights()[0])
  with pytest.raises(ValueError, match="head_initializer must be 'glorot_uniform' or 'zeros'"):
    dfv_motion.build_dfv_motion_net(H, W, filters_scale=0.25, head_initializer='ones')


def test_initial_depth_sets_the_head_bias_to_the_inverse_softplus():
  # softplus(b) = ln(1 + e^b) = d  <=>  b = ln(e^d - 1): d = 10 m gives b = 10 + ln(1 - e^-10)
  # = 9.9999546. With the head's kernel zeroed the depth is softplus(b) = 10 m everywhere.
  tf_keras.utils.set_random_seed(0)
  net = dfv_depth.build_dfv_depth_net(H, W, filters_scale=0.125, initial_depth=10.0)
  head = net.get_layer('disp1')
  kernel, bias = head.get_weights()
  np.testing.assert_allclose(bias, np.log(np.expm1(10.0)), rtol=1e-6)
  head.set_weights([np.zeros_like(kernel), bias])
  np.testing.assert_allclose(net(tf.random.uniform([1, H, W, 3])).numpy(), 10.0, rtol=1e-5)
  # Published: a zero bias, depth ln 2 with a zero kernel.
  plain = dfv_depth.build_dfv_depth_net(H, W, filters_scale=0.125)
  assert not np.any(plain.get_layer('disp1').get_weights()[1])
  for bad in (0.0, -1.0, 'far', float('inf'), float('nan'), True):
    with pytest.raises(ValueError, match='initial_depth must be None or a finite number > 0'):
      dfv_depth.build_dfv_depth_net(H, W, filters_scale=0.125, initial_depth=bad)
