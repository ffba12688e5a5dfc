"""AHP and the taxonomy BIP against hand-derived cases and brute-force enumeration."""

import numpy as np
import pytest

from taskology_tf.taxonomy import ahp
from taskology_tf.taxonomy import bip


def test_ahp_on_a_consistent_reciprocal_matrix_returns_its_weights():
  # A[i, j] = w_i / w_j is consistent: A w = sum_j (w_i / w_j) w_j = n w_i, so w is the
  # principal eigenvector (eigenvalue n, the only non-zero one: A has rank 1).
  w = np.array([0.5, 0.3, 0.2])
  np.testing.assert_allclose(ahp.principal_eigenvector(w[:, None] / w[None, :]), w, atol=1e-12)


def test_ahp_from_bradley_terry_win_rates():
  # W[i, j] = w_i / (w_i + w_j) gives W / W^T = w_i / w_j (consistent) -> the weights back.
  w = np.array([0.4, 0.35, 0.15, 0.1])
  win = w[:, None] / (w[:, None] + w[None, :])
  np.testing.assert_allclose(ahp.principal_eigenvector(ahp.reciprocal_matrix(win)), w, atol=1e-12)


def test_win_rates_and_clipping():
  # Transfer 0 beats 1 on images 0 and 1, ties on image 2: W[0, 1] = (1 + 1 + 0.5) / 3.
  losses = np.array([[0.1, 0.2, 0.5], [0.3, 0.4, 0.5]])
  w = ahp.win_rate_matrix(losses)
  assert w[0, 1] == pytest.approx(2.5 / 3) and w[1, 0] == pytest.approx(0.5 / 3)
  assert w[0, 0] == pytest.approx(0.5)
  # A transfer that always wins: W = 1 is clipped to 0.999, so W' stays finite.
  always = ahp.reciprocal_matrix(ahp.win_rate_matrix(np.array([[0.0, 0.0], [1.0, 1.0]])))
  assert always[0, 1] == pytest.approx(0.999 / 0.001)
  gain, quality = ahp.gain_and_quality([0.1, 0.5], [0.2, 0.4], [0.05, 0.05])
  assert gain == pytest.approx(0.5) and quality == pytest.approx(0.0)


def test_bip_equals_brute_force_on_tiny_instances():
  for n in (3, 4):
    tasks, transfers, costs = bip.random_instance(n, max_order=2, seed=n)
    costs = {t: 1.0 + i for i, t in enumerate(tasks)}
    importance = {t: 1.0 + 0.5 * i for i, t in enumerate(tasks)}
    for budget in (1.0, 2.0, 3.0, 100.0):
      ref = bip.brute_force(tasks, transfers, costs, budget, importance)
      got = bip.solve(tasks, transfers, costs, budget, importance)
      assert got.objective == pytest.approx(ref.objective, abs=1e-9)
      assert got.cost <= budget + 1e-9
      assert sorted(e.target for e in got.transfers) == sorted(tasks)
      for e in got.transfers:  # (I): every chosen transfer's sources are supervised.
        assert set(e.sources) <= set(got.supervised)


def test_bip_hand_instance():
  # Two targets a, b; supervising a costs 1, b costs 1, budget 1. Options: supervise a and
  # transfer a -> b (0.9 + 0.6 = 1.5), or supervise b and transfer b -> a (0.8 + 0.3 = 1.1).
  # With budget 2 both self-transfers fit: 0.9 + 0.8 = 1.7.
  t = bip.Transfer
  transfers = [t('a', ('a',), 0.9), t('b', ('b',), 0.8), t('b', ('a',), 0.6), t('a', ('b',), 0.3)]
  costs = {'a': 1.0, 'b': 1.0}
  one = bip.solve(['a', 'b'], transfers, costs, 1.0)
  assert one.objective == pytest.approx(1.5) and one.supervised == ['a']
  two = bip.solve(['a', 'b'], transfers, costs, 2.0)
  assert two.objective == pytest.approx(1.7) and two.supervised == ['a', 'b']


def test_bip_budget_below_cheapest_is_an_error_naming_the_budget():
  tasks, transfers, costs = bip.random_instance(3, seed=0)
  with pytest.raises(bip.InfeasibleBudgetError, match=r'--budget=0.5.*cheapest feasible'):
    bip.solve(tasks, transfers, costs, 0.5, budget_name='--budget')


def test_candidate_source_sets_beam():
  sets = bip.candidate_source_sets(['a', 'b', 'c', 'd'], 3, {'a': 3, 'b': 2, 'c': 1, 'd': 0}, 2, 3)
  assert ('a',) in sets and ('c', 'd') in sets
  # Order 3 only from the beam (the 3 best first-order sources a, b, c).
  assert [s for s in sets if len(s) == 3] == [('a', 'b', 'c')]
