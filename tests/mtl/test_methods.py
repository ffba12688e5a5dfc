"""Gradient methods against hand-derived cases (each expected value derived in a comment)."""

import itertools
import math

import numpy as np
import pytest
from scipy.optimize import minimize
import tensorflow as tf

from taskology_tf.mtl import methods as m

STEP0 = tf.constant(0, tf.int64)


def _t(x):
  return tf.constant(np.asarray(x, np.float32))


def test_ew_sums():
  g = _t([[1.0, 2.0], [3.0, -1.0]])
  np.testing.assert_allclose(m.EW().combine(g, _t([1, 1]), STEP0), [4.0, 1.0])


def test_pcgrad_two_vectors_with_a_known_conflict():
  # g1 = (1, 0), g2 = (-1, 1): g1.g2 = -1 < 0, |g1|^2 = 1, |g2|^2 = 2.
  # g1' = g1 - (g1.g2 / |g2|^2) g2 = (1, 0) + 0.5 (-1, 1) = (0.5, 0.5)   (then g1'.g1 > 0: kept)
  # g2' = g2 - (g2.g1 / |g1|^2) g1 = (-1, 1) + (1, 0) = (0, 1)           (then g2'.g2 > 0: kept)
  # Either order gives the same here; update = g1' + g2' = (0.5, 1.5).
  g = _t([[1.0, 0.0], [-1.0, 1.0]])
  pc = m.PCGrad()
  for orders in itertools.product(itertools.permutations(range(2)), repeat=2):
    proj = pc.project(g, [tf.constant(o, tf.int32) for o in orders]).numpy()
    np.testing.assert_allclose(proj, [[0.5, 0.5], [0.0, 1.0]], atol=1e-6)
  out = pc.combine(g, _t([1, 1]), tf.constant(7, tf.int64))
  np.testing.assert_allclose(out, [0.5, 1.5], atol=1e-6)
  # No conflict: nothing is projected.
  g = _t([[1.0, 0.0], [1.0, 1.0]])
  np.testing.assert_allclose(pc.combine(g, _t([1, 1]), STEP0), [2.0, 1.0], atol=1e-6)


def test_pcgrad_order_is_a_permutation_and_changes_with_the_step():
  pc = m.PCGrad(seed=3)
  orders = [tuple(pc.order(tf.constant(s, tf.int64), 0, 5).numpy()) for s in range(20)]
  assert all(sorted(o) == list(range(5)) for o in orders)
  assert len(set(orders)) > 1


def test_mgda_two_gradients_closed_form():
  # v1 = (1, 0), v2 = (0, 2): gamma = (v2.v2 - v1.v2) / |v1 - v2|^2 = (4 - 0) / 5 = 0.8;
  # the min-norm point is 0.8 v1 + 0.2 v2 = (0.8, 0.4), cost 0.64 + 0.16 = 0.8.
  gamma, cost = m.min_norm_two(_t(1.0), _t(0.0), _t(4.0))
  assert float(gamma) == pytest.approx(0.8) and float(cost) == pytest.approx(0.8)
  g = _t([[1.0, 0.0], [0.0, 2.0]])
  np.testing.assert_allclose(m.MGDA('none').combine(g, _t([1, 1]), STEP0), [0.8, 0.4], atol=1e-6)
  # Clipped: v1 = (1, 0), v2 = (2, 0): v1.v2 = 2 >= v1.v1 = 1, so v1 itself is the minimum and
  # the reference code returns gamma = 0.999 (not 1); symmetric case gives 0.001.
  gamma, cost = m.min_norm_two(_t(1.0), _t(2.0), _t(4.0))
  assert float(gamma) == pytest.approx(0.999) and float(cost) == pytest.approx(1.0)
  gamma, cost = m.min_norm_two(_t(4.0), _t(2.0), _t(1.0))
  assert float(gamma) == pytest.approx(0.001) and float(cost) == pytest.approx(1.0)
  # 'l2' normalises first: u1 = (1, 0), u2 = (0, 1), gamma = 0.5: update (0.5, 0.5).
  np.testing.assert_allclose(m.MGDA('l2').combine(g, _t([1, 1]), STEP0), [0.5, 0.5], atol=1e-6)
  # 'loss' divides by the losses: (1, 0) / 1 and (0, 2) / 2 -> the same unit vectors.
  np.testing.assert_allclose(m.MGDA('loss').combine(g, _t([1, 2]), STEP0), [0.5, 0.5], atol=1e-6)


def test_mgda_three_gradients_match_brute_force():
  rng = np.random.default_rng(0)
  for _ in range(3):
    g = rng.normal(size=(3, 4)).astype(np.float32)
    w = m.min_norm_point(_t(g @ g.T)).numpy()
    assert w.min() >= -1e-6 and abs(w.sum() - 1) < 1e-5
    best = min(
        np.linalg.norm(np.array([a, b, 1 - a - b]) @ g)
        for a in np.linspace(0, 1, 101)
        for b in np.linspace(0, 1, 101)
        if a + b <= 1 + 1e-9
    )
    assert np.linalg.norm(w @ g) <= best + 1e-6  # the grid only over-estimates the minimum


def test_mgda_rejects_unknown_normalization():
  with pytest.raises(ValueError, match='MGDA.normalization'):
    m.MGDA('l1')


def test_cagrad_orthogonal_unit_gradients():
  # g1 = (1, 0), g2 = (0, 1): G = I, g0 = (0.5, 0.5), |g0| = sqrt(mean G) = sqrt(0.5).
  # F(w) = w.G.b + c |g_w| with w.G.b = 0.5 for every w on the simplex, so the minimiser is the
  # min-norm w = (0.5, 0.5), g_w = g0, lambda = c / |g_w| = alpha. d = (1 + alpha) g0, and
  # rescale 1 divides by 1 + alpha^2: d = 1.4 / 1.16 * (0.5, 0.5) = (0.603448, 0.603448).
  g = _t([[1.0, 0.0], [0.0, 1.0]])
  d = m.CAGrad(0.4, rescale=1).combine(g, _t([1, 1]), STEP0).numpy()
  np.testing.assert_allclose(d, [0.5 * 1.4 / 1.16] * 2, atol=1e-5)


def test_cagrad_boundary_solution_by_hand():
  # g1 = (1, 0), g2 = (0, 2): G = diag(1, 4), g0 = (0.5, 1), mean G = 1.25, c = 0.4 sqrt(1.25)
  # = 0.447214. With w = (x, 1 - x): F(x) = 2 - 1.5 x + c sqrt(x^2 + 4 (1 - x)^2), and
  # dF/dx = -1.5 + c d|g_w|/dx with |d|g_w|/dx| <= |g1 - g2| = sqrt(5), so dF/dx <= -1.5 + 1.0
  # < 0: the minimum is at x = 1, g_w = g1, lambda = c / 1.
  # d = g0 + c g1 = (0.947214, 1.0); rescale 1: / 1.16 -> (0.816563, 0.862069).
  g = _t([[1.0, 0.0], [0.0, 2.0]])
  c = 0.4 * math.sqrt(1.25)
  w = m.solve_cagrad_dual(_t([[1.0, 0.0], [0.0, 4.0]]), _t(c)).numpy()
  np.testing.assert_allclose(w, [1.0, 0.0], atol=1e-4)
  d = m.CAGrad(0.4, rescale=1).combine(g, _t([1, 1]), STEP0).numpy()
  np.testing.assert_allclose(d, [(0.5 + c) / 1.16, 1.0 / 1.16], atol=1e-4)
  d0 = m.CAGrad(0.4, rescale=0).combine(g, _t([1, 1]), STEP0).numpy()
  np.testing.assert_allclose(d0, [0.5 + c, 1.0], atol=1e-4)


def test_cagrad_dual_matches_scipy_slsqp():
  # LibMTL solves the dual with scipy's SLSQP; our in-graph solver must reach its objective.
  rng = np.random.default_rng(1)
  for trial in range(8):
    t = 2 + trial % 3
    g = rng.normal(size=(t, 5)) * 10.0 ** rng.uniform(-3, 3)
    if trial % 2:
      g[1] = -0.8 * g[0] + 0.05 * rng.normal(size=5) * np.linalg.norm(g[0])
    a = g @ g.T
    c = 0.4 * np.sqrt(a.mean() + 1e-8) + 1e-8
    b = np.ones(t) / t
    obj = lambda x: x @ a @ b + c * np.sqrt(x @ a @ x + 1e-8)
    ref = minimize(
        obj,
        b.copy(),
        bounds=[(0, 1)] * t,
        constraints=({'type': 'eq', 'fun': lambda x: 1 - sum(x)}),
    )
    x = m.solve_cagrad_dual(_t(a), _t(c)).numpy()
    assert abs(x.sum() - 1) < 1e-5 and x.min() >= -1e-7
    assert obj(x) <= ref.fun + 1e-4 * abs(a.mean())


def test_cagrad_rejects_bad_arguments():
  with pytest.raises(ValueError, match='CAGrad.rescale'):
    m.CAGrad(0.4, rescale=3)
  with pytest.raises(ValueError, match='CAGrad.alpha'):
    m.CAGrad(-1.0)


def test_mclgs_weights_by_hand_and_one_once_pace_is_zero():
  # g1 = (1, 0), g2 = (0, 1), g3 = (-1, 1): cos12 = 0, cos13 = -1/sqrt2, cos23 = 1/sqrt2.
  # a0 = 1, da = 0.1, t = 5: p = 0.5, so w12 = tanh(0) + 1 = 1, w13 = 1 - tanh(0.5/sqrt2),
  # w23 = 1 + tanh(0.5/sqrt2). Update = (w12 (g1+g2) + w13 (g1+g3) + w23 (g2+g3)) / (3 * 2)
  # = ((1, 1) + w13 (0, 1) + w23 (-1, 2)) / 6.
  g = _t([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
  mc = m.MCLGS(a0=1.0, da=0.1)
  th = math.tanh(0.5 / math.sqrt(2.0))
  w = mc.pair_weights(g, tf.constant(5, tf.int64)).numpy()
  assert w[0, 1] == pytest.approx(1.0, abs=1e-6)
  assert w[0, 2] == pytest.approx(1.0 - th, abs=1e-6)
  assert w[1, 2] == pytest.approx(1.0 + th, abs=1e-6)
  expected = (
      np.array([1.0, 1.0]) + (1 - th) * np.array([0.0, 1.0]) + (1 + th) * np.array([-1.0, 2.0])
  ) / 6
  np.testing.assert_allclose(
      mc.combine(g, _t([1, 1, 1]), tf.constant(5, tf.int64)), expected, atol=1e-6
  )
  # t = 10 and beyond: p = max(1 - 10 * 0.1, 0) = 0, every weight is exactly tanh(0) + 1 = 1 and
  # the update is sum_{i<j} (g_i + g_j) / 6 = 2 sum_i g_i / 6 = the mean gradient.
  for t in (10, 50):
    step = tf.constant(t, tf.int64)
    np.testing.assert_array_equal(mc.pair_weights(g, step).numpy(), np.ones((3, 3)))
    np.testing.assert_allclose(mc.combine(g, _t([1, 1, 1]), step), [0.0, 2.0 / 3.0], atol=1e-6)
    np.testing.assert_allclose(mc.task_weights(g, step), [1.0, 1.0, 1.0])


def test_mclgs_rejects_an_increasing_schedule():
  with pytest.raises(ValueError, match='MCLGS.da'):
    m.MCLGS(a0=1.0, da=-0.1)


def test_cagrad_with_curriculum_reduces_to_cagrad_once_pace_is_zero():
  rng = np.random.default_rng(2)
  g = _t(rng.normal(size=(3, 6)))
  step = tf.constant(100, tf.int64)
  plain = m.CAGrad(0.4).combine(g, _t([1, 1, 1]), step)
  curr = m.CAGrad(0.4, curriculum=m.MCLGS(1.0, 0.1)).combine(g, _t([1, 1, 1]), step)
  np.testing.assert_allclose(curr, plain, atol=1e-6)
  early = m.CAGrad(0.4, curriculum=m.MCLGS(1.0, 0.1)).combine(g, _t([1, 1, 1]), STEP0)
  assert np.abs(early.numpy() - plain.numpy()).max() > 1e-4


def test_graddrop_mask_on_a_hand_built_sign_pattern():
  # r = (1, -1) (B = 1), d_0 = (2, 1), d_1 = (-1, 1). s_t = d_t * sign(r): s_0 = (2, -1),
  # s_1 = (-1, -1). Element 0: P = 0.5 (1 + 1/3) = 2/3; element 1: P = 0.5 (1 - 2/2) = 0.
  # With U = (0.5, 0.5): element 0 has P > U, keep positive s (task 0 only); element 1 has
  # P < U, keep negative s (both). M = [[1, 1], [0, 1]]; combined = d_0 * M_0 + d_1 * M_1 = (2, 2).
  gd = m.GradDrop(leak=0.0)
  rep = _t([[1.0, -1.0]])
  grads = _t([[[2.0, 1.0]], [[-1.0, 1.0]]])
  mask = gd.mask(rep, grads, _t([0.5, 0.5])).numpy()
  np.testing.assert_array_equal(mask, [[1, 1], [0, 1]])
  # U = (0.7, 0.5): element 0 now has P = 2/3 < U, keep the negative s: task 1 only.
  np.testing.assert_array_equal(gd.mask(rep, grads, _t([0.7, 0.5])).numpy(), [[0, 1], [1, 1]])
  combined = tf.reduce_sum(grads * mask[:, None], 0).numpy()
  np.testing.assert_allclose(combined, [[2.0, 2.0]])
  # leak = 1 keeps everything: the plain sum.
  out = m.GradDrop(leak=1.0).combine_representation([rep], [grads], STEP0)
  np.testing.assert_allclose(out[0], [[1.0, 2.0]])


def test_graddrop_rejects_bad_leak():
  with pytest.raises(ValueError, match='GradDrop.leak'):
    m.GradDrop(leak=1.5)
