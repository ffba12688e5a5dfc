"""Tests for the anchored depth-normals relation (Eq. 6 + log-depth spread floor + moments).

Planes as in tests/consistency/test_depth_normals.py: Z = aX + bY + c seen through K has depth
z = c / (1 - a x_n - b y_n) and the camera-facing unit normal (a, b, -1) / |(a, b, -1)|, for
which Eq. 6 is exactly 0 (geometry/normals.py: central differences of a plane are in the plane).
"""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.consistency import depth_normals
from taskology_tf.consistency import depth_normals_anchored as anchored
from taskology_tf.geometry import camera
from taskology_tf.geometry import normals as normals_lib

H, W = 10, 12
K = np.array([[15.0, 0.0, 5.5], [0.0, 15.0, 4.5], [0.0, 0.0, 1.0]])


def _plane(a, b, c):
  rays = np.einsum('ij,hwj->hwi', np.linalg.inv(K), camera.pixel_grid(H, W).numpy())
  depth = c / (1.0 - a * rays[..., 0] - b * rays[..., 1])
  normal = np.array([a, b, -1.0]) / np.linalg.norm([a, b, -1.0])
  return depth[..., None].astype(np.float32), np.broadcast_to(normal, (H, W, 3)).astype(np.float32)


def _predictions(depth, normals):
  return {'depth': {'depth': depth}, 'normals': {'normals': normals}}


def _batch(batch=2):
  return {'intrinsics': tf.constant(np.broadcast_to(K, (batch, 3, 3)), tf.float32)}


def _log_moments(depth):
  """Population mean and std of log depth per image, in numpy: [N, H, W, 1] -> ([N], [N])."""
  log_depth = np.log(depth.reshape(len(depth), -1).astype(np.float64))
  return log_depth.mean(1), log_depth.std(1)


def _tilted_pair():
  """[B=2, T=1] clip of two tilted planes (a receding floor-like and a side-wall-like one)."""
  planes = [_plane(0.0, -0.6, 4.0), _plane(0.5, 0.1, 3.0)]
  depth = np.stack([p[0] for p in planes])[:, None]
  normals = np.stack([p[1] for p in planes])[:, None]
  return depth, normals


def test_fronto_parallel_plane_costs_the_floor_and_the_moments():
  # Z = 5 (a = b = 0): constant depth, normal (0, 0, -1): Eq. 6 is 0 (the trivial minimiser).
  # s_i = 0, m_i = log 5, so the floor costs 0.3 per image and the moments
  # (log 5 - 1.0)^2 + (0 - 0.4)^2; total 2 * 0.3 + 0.5 * ((log 5 - 1)^2 + 0.16).
  depth, normals = _plane(0.0, 0.0, 5.0)
  depth = np.stack([depth, depth])
  normals = np.stack([normals, normals])
  relation = anchored.AnchoredDepthNormalsConsistency(
      spread_floor=0.3, floor_weight=2.0, log_depth_mean=1.0, log_depth_std=0.4, moment_weight=0.5
  )
  loss, metrics = relation(_predictions(tf.constant(depth), tf.constant(normals)), _batch())
  expected = 2.0 * 0.3 + 0.5 * ((np.log(5.0) - 1.0) ** 2 + 0.16)
  np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)
  assert abs(metrics['eq6_loss'].numpy()) < 1e-6
  np.testing.assert_allclose(metrics['floor_loss'].numpy(), 0.3, rtol=1e-5)
  np.testing.assert_allclose(metrics['log_depth_mean'].numpy(), np.log(5.0), rtol=1e-6)
  assert abs(metrics['log_depth_std'].numpy()) < 1e-5


def test_tilted_planes_with_their_own_statistics_cost_exactly_zero():
  # Consistent normals (Eq. 6 = 0), floor below both images' spreads (floor term 0), targets
  # equal to the batch's own moments (numpy, from the analytic depth): the loss is 0.
  depth, normals = _tilted_pair()
  mean, std = _log_moments(depth[:, 0])
  assert std.min() > 0.05  # The planes really are tilted.
  relation = anchored.AnchoredDepthNormalsConsistency(
      spread_floor=0.9 * std.min(), log_depth_mean=mean.mean(), log_depth_std=std.mean()
  )
  loss, metrics = relation(_predictions(tf.constant(depth), tf.constant(normals)), _batch())
  assert abs(loss.numpy()) < 1e-5
  np.testing.assert_allclose(metrics['log_depth_std'].numpy(), std.mean(), rtol=1e-5)
  # Off-target moments cost the squared differences.
  shifted = anchored.AnchoredDepthNormalsConsistency(
      log_depth_mean=mean.mean() + 0.2, log_depth_std=std.mean() - 0.1
  )
  loss, _ = shifted(_predictions(tf.constant(depth), tf.constant(normals)), _batch())
  np.testing.assert_allclose(loss.numpy(), 0.2**2 + 0.1**2, rtol=1e-3)


def test_gradients_finite_even_for_constant_depth():
  depth, normals = _tilted_pair()
  relation = anchored.AnchoredDepthNormalsConsistency(
      spread_floor=0.5, log_depth_mean=0.0, log_depth_std=0.5
  )
  for d in (depth, np.full_like(depth, 7.0)):
    d = tf.constant(d)
    n = tf.constant(normals + 0.1)
    with tf.GradientTape() as tape:
      tape.watch([d, n])
      loss, _ = relation(_predictions(d, n), _batch())
    for grad in tape.gradient(loss, [d, n]):
      assert np.all(np.isfinite(grad.numpy()))
      assert np.any(grad.numpy() != 0.0)


def test_flattening_a_correct_depth_map_strictly_increases_the_loss():
  # Flatten log depth toward its per-image mean: log D_alpha = m + alpha (log D - m), alpha
  # from 1 (truth) to 0 (fronto-parallel), and pair each D_alpha with the normals it implies
  # itself, the best normals for it (Eq. 6 = 0 for every alpha: Eq. 6 alone cannot tell any
  # of them from the truth). s_i(D_alpha) = alpha * s_i(D), m_i unchanged, so with targets at
  # the truth's moments the moment term is ((1 - alpha) mean_i s_i)^2: strictly increasing as
  # alpha falls. With the floor alone (no moments), the fronto-parallel map costs
  # floor_weight * spread_floor > 0 = the truth's loss.
  depth, _ = _tilted_pair()
  mean, std = _log_moments(depth[:, 0])
  intrinsics = _batch()['intrinsics']
  plain = depth_normals.DepthNormalsConsistency()
  anchored_relation = anchored.AnchoredDepthNormalsConsistency(
      spread_floor=0.5 * std.min(), log_depth_mean=mean.mean(), log_depth_std=std.mean()
  )
  floor_only = anchored.AnchoredDepthNormalsConsistency(spread_floor=0.5 * std.min())
  losses, floor_losses = [], []
  for alpha in (1.0, 0.75, 0.5, 0.25, 0.0):
    log_depth = np.log(depth)
    m = log_depth.mean(axis=(2, 3, 4), keepdims=True)
    flat = tf.constant(np.exp(m + alpha * (log_depth - m)), tf.float32)
    own_normals = normals_lib.depth_to_normals(flat[:, 0], intrinsics)[:, None]
    predictions = _predictions(flat, own_normals)
    assert abs(plain(predictions, _batch())[0].numpy()) < 1e-5
    losses.append(anchored_relation(predictions, _batch())[0].numpy())
    floor_losses.append(floor_only(predictions, _batch())[0].numpy())
  assert abs(losses[0]) < 1e-5
  assert np.all(np.diff(losses) > 0), losses
  np.testing.assert_allclose(losses[-1], std.mean() ** 2 + 0.5 * std.min(), rtol=1e-3)
  assert abs(floor_losses[0]) < 1e-5
  np.testing.assert_allclose(floor_losses[-1], 0.5 * std.min(), rtol=1e-3)


def test_depth_gradient_scale_scales_only_eq6s_gradient_into_depth():
  depth, normals = _tilted_pair()
  noise = np.random.default_rng(0).normal(size=depth.shape)
  d = tf.constant(depth * (1.0 + 0.05 * noise), tf.float32)
  n = tf.constant(normals, tf.float32)
  grads, values = {}, {}
  for scale in (1.0, 0.5, 0.0):
    relation = anchored.AnchoredDepthNormalsConsistency(
        depth_gradient_scale=scale, floor_weight=0.0, moment_weight=0.0
    )
    with tf.GradientTape() as tape:
      tape.watch([d, n])
      loss, _ = relation(_predictions(d, n), _batch())
    values[scale] = loss.numpy()
    grads[scale] = [g.numpy() for g in tape.gradient(loss, [d, n])]
  np.testing.assert_allclose(values[0.5], values[1.0], rtol=1e-6)
  np.testing.assert_allclose(values[0.0], values[1.0], rtol=1e-6)
  np.testing.assert_allclose(grads[0.5][0], 0.5 * grads[1.0][0], rtol=1e-5, atol=1e-9)
  np.testing.assert_array_equal(grads[0.0][0], 0.0)
  for scale in (0.5, 0.0):  # The normals' gradient does not change.
    np.testing.assert_allclose(grads[scale][1], grads[1.0][1], rtol=1e-5, atol=1e-9)
  # One-directional: the anchor terms still reach depth.
  relation = anchored.AnchoredDepthNormalsConsistency(
      depth_gradient_scale=0.0, log_depth_mean=0.0, log_depth_std=1.0
  )
  with tf.GradientTape() as tape:
    tape.watch(d)
    loss, _ = relation(_predictions(d, n), _batch())
  assert np.any(tape.gradient(loss, d).numpy() != 0.0)


def test_stale_peer_constant_gives_the_same_value_and_normals_gradient():
  # A served (stale) depth is a constant: the relation's value and the normals' gradient are
  # the same as with a live depth the tape also watches; eager and tf.function agree.
  depth, normals = _tilted_pair()
  d = tf.constant(depth * 1.1)
  n = tf.constant(normals + 0.05)
  relation = anchored.AnchoredDepthNormalsConsistency(
      max_depth=80.0, spread_floor=0.2, log_depth_mean=1.0, log_depth_std=0.3
  )
  with tf.GradientTape() as live_tape:
    live_tape.watch([d, n])
    live, _ = relation(_predictions(d, n), _batch())
  with tf.GradientTape() as stale_tape:
    stale_tape.watch(n)
    stale, _ = relation(_predictions(d, n), _batch())
  compiled, _ = tf.function(relation, jit_compile=True)(_predictions(d, n), _batch())
  np.testing.assert_allclose(stale.numpy(), live.numpy(), rtol=1e-6)
  np.testing.assert_allclose(compiled.numpy(), live.numpy(), rtol=1e-5)
  np.testing.assert_allclose(
      stale_tape.gradient(stale, n).numpy(), live_tape.gradient(live, [d, n])[1].numpy(), rtol=1e-6
  )


def test_statistics_ignore_pixels_beyond_max_depth():
  # A sky band at 1000 m: with max_depth the statistics are those of the plane's other rows.
  depth, normals = _tilted_pair()
  depth = depth.copy()
  depth[:, :, :3] = 1000.0
  mean, std = _log_moments(depth[:, 0, 3:])
  relation = anchored.AnchoredDepthNormalsConsistency(max_depth=80.0)
  _, metrics = relation(_predictions(tf.constant(depth), tf.constant(normals)), _batch())
  np.testing.assert_allclose(metrics['log_depth_mean'].numpy(), mean.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics['log_depth_std'].numpy(), std.mean(), rtol=1e-4)


@pytest.mark.parametrize(
    'binding', ['spread_floor', 'floor_weight', 'moment_weight', 'depth_gradient_scale']
)
def test_negative_settings_name_the_binding(binding):
  with pytest.raises(ValueError, match=binding):
    anchored.AnchoredDepthNormalsConsistency(**{binding: -1.0})
