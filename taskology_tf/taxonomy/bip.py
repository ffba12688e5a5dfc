"""Taskonomy's task taxonomy as a binary integer program (Zamir et al. 2018, Sec. 3.4).

Variables: x_e for every candidate transfer e = (target, source set) and y_s for every task that
may be fully supervised. Maximise sum_e importance(target_e) * performance_e * x_e subject to
  (I)   x_e <= y_s for every source s of e (a chosen transfer's sources are supervised);
  (II)  sum_{e into t} x_e = 1 for every target t (exactly one incoming transfer each);
  (III) sum_s cost_s y_s <= gamma (the supervision budget).
A target solved by its own fully supervised network is the transfer (t, {t}). Taskonomy's
repository releases affinities but no BIP code; this is solved with scipy.optimize.milp (HiGHS).
"""

import dataclasses
import itertools
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Transfer:
  """A candidate transfer onto `target` from the frozen encoders of `sources`.

  Attributes:
    target: target task name.
    sources: source task names (a tuple; (target,) is full supervision of the target).
    performance: its normalised performance (e.g. the AHP affinity), higher is better.
  """

  target: str
  sources: Tuple[str, ...]
  performance: float


@dataclasses.dataclass
class Taxonomy:
  """The solution: chosen transfers (one per target), supervised tasks, objective, cost."""

  transfers: List[Transfer]
  supervised: List[str]
  objective: float
  cost: float


class InfeasibleBudgetError(ValueError):
  """No taxonomy satisfies the supervision budget."""


def _check(targets, transfers, costs):
  for t in targets:
    if not any(e.target == t for e in transfers):
      raise ValueError(f'taxonomy: target {t!r} has no candidate transfer')
  for e in transfers:
    for s in e.sources:
      if s not in costs:
        raise ValueError(
            f'taxonomy: transfer {e.sources} -> {e.target} uses source {s!r} without a supervision '
            f'cost (costs given for {sorted(costs)})'
        )


def cheapest_cost(
    targets: Sequence[str], transfers: Sequence[Transfer], costs: Mapping[str, float]
) -> float:
  """The lowest budget with a feasible taxonomy (by enumerating supervised sets; small n only)."""
  best = float('inf')
  tasks = sorted(costs)
  for r in range(len(tasks) + 1):
    for chosen in itertools.combinations(tasks, r):
      ok = all(
          any(set(e.sources) <= set(chosen) for e in transfers if e.target == t) for t in targets
      )
      if ok:
        best = min(best, sum(costs[s] for s in chosen))
  return best


def solve(
    targets: Sequence[str],
    transfers: Sequence[Transfer],
    costs: Mapping[str, float],
    budget: float,
    importance: Optional[Mapping[str, float]] = None,
    budget_name: str = 'budget',
) -> Taxonomy:
  """Solves the BIP with scipy.optimize.milp.

  Args:
    targets: tasks that must each receive exactly one transfer.
    transfers: candidate transfers (their targets among `targets`).
    costs: supervision cost of every task that may be a source.
    budget: gamma, the supervision budget.
    importance: per-target weight (default 1).
    budget_name: how the caller names the budget (flag or binding), for the error message.

  Raises:
    InfeasibleBudgetError: the budget is below the cheapest feasible taxonomy.
  """
  from scipy.optimize import Bounds  # pylint: disable=g-import-not-at-top
  from scipy.optimize import LinearConstraint  # pylint: disable=g-import-not-at-top
  from scipy.optimize import milp  # pylint: disable=g-import-not-at-top

  transfers = [e for e in transfers if e.target in set(targets)]
  _check(targets, transfers, costs)
  importance = dict(importance or {})
  tasks = sorted(costs)
  ne, ns = len(transfers), len(tasks)
  col = {s: ne + i for i, s in enumerate(tasks)}
  c = np.zeros(ne + ns)
  for i, e in enumerate(transfers):
    c[i] = -importance.get(e.target, 1.0) * e.performance  # milp minimises.
  rows, lo, hi = [], [], []
  for i, e in enumerate(transfers):  # (I) x_e - y_s <= 0
    for s in e.sources:
      r = np.zeros(ne + ns)
      r[i], r[col[s]] = 1.0, -1.0
      rows.append(r), lo.append(-np.inf), hi.append(0.0)
  for t in targets:  # (II) sum_e x_e = 1
    r = np.zeros(ne + ns)
    for i, e in enumerate(transfers):
      if e.target == t:
        r[i] = 1.0
    rows.append(r), lo.append(1.0), hi.append(1.0)
  r = np.zeros(ne + ns)  # (III) sum_s cost_s y_s <= gamma
  for s in tasks:
    r[col[s]] = costs[s]
  rows.append(r), lo.append(-np.inf), hi.append(float(budget))
  res = milp(
      c,
      constraints=LinearConstraint(np.array(rows), np.array(lo), np.array(hi)),
      integrality=np.ones(ne + ns),
      bounds=Bounds(0, 1),
  )
  if res.status == 2 or res.x is None:
    cheapest = cheapest_cost(targets, transfers, costs) if ns <= 16 else float('nan')
    raise InfeasibleBudgetError(
        f'taxonomy BIP is infeasible: {budget_name}={budget} is below the cheapest feasible '
        f'taxonomy (supervision cost {cheapest}); raise {budget_name}'
    )
  if not res.success:
    raise RuntimeError(f'taxonomy BIP: milp failed: {res.message}')
  x = np.round(res.x).astype(int)
  chosen = [e for i, e in enumerate(transfers) if x[i]]
  # y_s may be 1 without use when it costs nothing; report only the needed supervision.
  used = sorted({s for e in chosen for s in e.sources})
  return Taxonomy(chosen, used, -float(res.fun), float(sum(costs[s] for s in used)))


def brute_force(
    targets: Sequence[str],
    transfers: Sequence[Transfer],
    costs: Mapping[str, float],
    budget: float,
    importance: Optional[Mapping[str, float]] = None,
) -> Optional[Taxonomy]:
  """Exhaustive reference (tiny instances): the best assignment of one transfer per target."""
  importance = dict(importance or {})
  per_target = [[e for e in transfers if e.target == t] for t in targets]
  best = None
  for combo in itertools.product(*per_target):
    used = sorted({s for e in combo for s in e.sources})
    cost = sum(costs[s] for s in used)
    if cost > budget + 1e-12:
      continue
    value = sum(importance.get(e.target, 1.0) * e.performance for e in combo)
    if best is None or value > best.objective + 1e-12:
      best = Taxonomy(list(combo), used, value, cost)
  return best


def candidate_source_sets(
    sources: Sequence[str],
    max_order: int,
    first_order_scores: Optional[Mapping[str, float]] = None,
    exhaustive_order: int = 2,
    beam: int = 4,
) -> List[Tuple[str, ...]]:
  """Source sets up to `max_order`: all sets up to `exhaustive_order`, then (as Taskonomy) only
  sets drawn from the `beam` best first-order sources (by `first_order_scores`)."""
  out: List[Tuple[str, ...]] = []
  for k in range(1, min(max_order, exhaustive_order) + 1):
    out += list(itertools.combinations(sources, k))
  if max_order > exhaustive_order:
    if first_order_scores is None:
      raise ValueError(
          'candidate_source_sets: orders above exhaustive_order need first-order scores'
      )
    top = sorted(sources, key=lambda s: -first_order_scores[s])[:beam]
    for k in range(exhaustive_order + 1, max_order + 1):
      out += list(itertools.combinations(top, k))
  return out


def random_instance(num_tasks: int, max_order: int = 2, seed: int = 0):
  """A random instance (targets = sources = n tasks, transfers up to `max_order`), for timing."""
  rng = np.random.default_rng(seed)
  tasks = [f't{i}' for i in range(num_tasks)]
  transfers = []
  for t in tasks:
    others = [s for s in tasks if s != t]
    transfers.append(Transfer(t, (t,), float(rng.uniform(0.5, 1.0))))
    for sources in candidate_source_sets(others, max_order):
      transfers.append(Transfer(t, sources, float(rng.uniform(0.0, 0.8))))
  costs: Dict[str, float] = {t: 1.0 for t in tasks}
  return tasks, transfers, costs
