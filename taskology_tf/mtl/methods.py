"""Gradient-combination methods of shared-backbone multi-task learning, as LibMTL implements them.

Every method turns the per-task gradients on the shared parameters into one update direction.
Two kinds:

- Parameter-gradient methods (`EW`, `MGDA`, `PCGrad`, `CAGrad`, `MCLGS`) take
  `grads` [T, P] float32 (row t: task t's loss gradient w.r.t. the P flattened shared
  parameters) and `losses` [T] float32 and return the combined gradient [P].
- Representation-gradient methods (`GradDrop`) take the per-task gradients w.r.t. the shared
  representation (the encoder's outputs) and return the representation gradient that is then
  back-propagated into the encoder (LibMTL's `rep_grad=True` mode).

Task-specific parameters (the heads) never pass through a method: each head is updated by its
own task's loss, as in LibMTL.

Everything is in-graph TensorFlow with static shapes and bounded `tf.while_loop`s, so the
training step compiles under XLA; randomness (PCGrad's task order, GradDrop's uniform draws) is
stateless, seeded by (seed, step), so a run is reproducible and resumable.

References (formulas and defaults follow LibMTL's `LibMTL/weighting/*.py` and the papers):
  EW: sum of the task losses.
  MGDA: Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.
  PCGrad: Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020.
  GradDrop: Chen et al., "Just Pick a Sign", NeurIPS 2020.
  CAGrad: Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.
  MCLGS: multi-task curriculum learning with gradient similarity (the formula of issue 12).
"""

import itertools
from typing import Optional, Sequence

import tensorflow as tf

_EPS = 1e-8


class GradientMethod:
  """Base of the parameter-gradient methods.

  Attributes:
    name: short name used in tables and summaries.
    uses_representation: False here; True for representation-gradient methods (GradDrop).
  """

  name = 'method'
  uses_representation = False

  def combine(self, grads: tf.Tensor, losses: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """Combined shared-parameter gradient.

    Args:
      grads: [T, P] float32, per-task gradients of the losses w.r.t. the flattened shared
        parameters.
      losses: [T] float32, the task losses (some methods normalise by them).
      step: scalar int64, the number of updates done before this one (0 at the first step).

    Returns:
      [P] float32, the gradient handed to the optimizer.
    """
    raise NotImplementedError


# --------------------------------------------------------------------------------------------
# EW


class EW(GradientMethod):
  """Equal weighting: the gradient of the sum of the task losses, sum_t g_t."""

  name = 'ew'

  def combine(self, grads, losses, step):
    del losses, step
    return tf.reduce_sum(grads, axis=0)


# --------------------------------------------------------------------------------------------
# MGDA


def min_norm_two(v1v1: tf.Tensor, v1v2: tf.Tensor, v2v2: tf.Tensor):
  """min_gamma |gamma v1 + (1 - gamma) v2|^2 over gamma in [0, 1], from the three dot products.

  The stationary point is gamma = (v2.v2 - v1.v2) / |v1 - v2|^2. Like the MGDA reference code
  (and LibMTL) the clipped cases return 0.999 / 0.001, not exactly 1 / 0: when v1.v2 >= v1.v1
  the minimum is v1 itself, when v1.v2 >= v2.v2 it is v2.

  Returns:
    (gamma, cost): scalar float32 weight on v1 and the squared norm at the minimum.
  """
  denom = v1v1 + v2v2 - 2.0 * v1v2
  safe = tf.where(denom > 0.0, denom, tf.ones_like(denom))
  gamma_mid = (v2v2 - v1v2) / safe
  cost_mid = v2v2 + gamma_mid * (v1v2 - v2v2)
  gamma = tf.where(v1v2 >= v1v1, 0.999, tf.where(v1v2 >= v2v2, 0.001, gamma_mid))
  cost = tf.where(v1v2 >= v1v1, v1v1, tf.where(v1v2 >= v2v2, v2v2, cost_mid))
  return gamma, cost


def project_to_simplex(y: tf.Tensor) -> tf.Tensor:
  """Euclidean projection of y [T] onto the probability simplex (sort-based, as in MGDA's code).

  With y sorted descending as s, the shift is tau = (sum_{k<=i} s_k - 1) / (i + 1) for the first
  i with tau > s_{i+1}, else (sum(y) - 1) / T; the projection is max(y - tau, 0).
  """
  m = y.shape[0]
  s = tf.sort(y, direction='DESCENDING')
  if m == 1:
    return tf.ones_like(y)
  csum = tf.cumsum(s)[: m - 1]
  tmax = (csum - 1.0) / tf.range(1, m, dtype=y.dtype)
  hit = tmax > s[1:]
  first = tf.argmax(tf.cast(hit, tf.int32))
  tau = tf.where(tf.reduce_any(hit), tf.gather(tmax, first), (tf.reduce_sum(y) - 1.0) / m)
  return tf.maximum(y - tau, 0.0)


def _next_point(cur: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
  """One projected step of the MGDA Frank-Wolfe solver along `grad` (the reference's _next_point)."""
  n = cur.shape[0]
  proj = grad - tf.reduce_sum(grad) / n
  inf = tf.constant(float('inf'), cur.dtype)
  neg, pos = proj < 0.0, proj > 0.0
  tm1 = tf.where(neg, -cur / tf.where(neg, proj, -tf.ones_like(proj)), inf)
  tm2 = tf.where(pos, (1.0 - cur) / tf.where(pos, proj, tf.ones_like(proj)), inf)
  m1 = tf.reduce_min(tf.where(tm1 > 1e-7, tm1, inf))
  m2 = tf.reduce_min(tf.where(tm2 > 1e-7, tm2, inf))
  t = tf.where(tf.math.is_finite(m1), m1, 1.0)
  t = tf.where(tf.math.is_finite(m2), tf.minimum(t, m2), t)
  return project_to_simplex(proj * t + cur)


def min_norm_point(gram: tf.Tensor, max_iter: int = 250, stop_crit: float = 1e-5) -> tf.Tensor:
  """Weights w on the simplex minimising |sum_t w_t g_t|^2, from the Gram matrix [T, T].

  The reference's solver: the best pair in closed form (exact for T = 2), then Frank-Wolfe
  steps with the two-point line search until the weights move less than `stop_crit` (L1), at
  most `max_iter` times (a bounded tf.while_loop, so it compiles under XLA).
  """
  n = gram.shape[0]
  best_cost, best = None, None
  for i, j in itertools.combinations(range(n), 2):
    gamma, cost = min_norm_two(gram[i, i], gram[i, j], gram[j, j])
    sol = tf.tensor_scatter_nd_update(tf.zeros([n], gram.dtype), [[i], [j]], [gamma, 1.0 - gamma])
    if best is None:
      best_cost, best = cost, sol
    else:
      # Strict '<' keeps the first pair on ties, like the reference's `if d < dmin`.
      better = cost < best_cost
      best_cost = tf.where(better, cost, best_cost)
      best = tf.where(better, sol, best)
  if n < 3:
    return best

  def body(i, sol, done):
    new_point = _next_point(sol, -tf.linalg.matvec(gram, sol))
    v1v1 = tf.tensordot(sol, tf.linalg.matvec(gram, sol), 1)
    v1v2 = tf.tensordot(sol, tf.linalg.matvec(gram, new_point), 1)
    v2v2 = tf.tensordot(new_point, tf.linalg.matvec(gram, new_point), 1)
    nc, _ = min_norm_two(v1v1, v1v2, v2v2)
    new_sol = nc * sol + (1.0 - nc) * new_point
    converged = tf.reduce_sum(tf.abs(new_sol - sol)) < stop_crit
    # On convergence the reference returns the previous iterate, not the new one.
    return i + 1, tf.where(converged, sol, new_sol), converged

  _, sol, _ = tf.while_loop(
      lambda i, sol, done: tf.logical_and(i < max_iter, tf.logical_not(done)),
      body,
      (tf.constant(0), best, tf.constant(False)),
      maximum_iterations=max_iter,
  )
  return sol


class MGDA(GradientMethod):
  """MGDA-UB's min-norm point of the (normalised) task gradients.

  g_t is divided by a normaliser n_t (LibMTL's `mgda_gn`): 'none' (1), 'l2' (|g_t|), 'loss'
  (L_t) or 'loss+' (L_t |g_t|); the update is sum_t w_t g_t / n_t with w the min-norm point of
  the normalised gradients (as LibMTL, which applies the weights to the normalised gradients).

  Args:
    normalization: 'none', 'l2', 'loss' or 'loss+' (LibMTL's default is 'none').
  """

  name = 'mgda'
  NORMALIZATIONS = ('none', 'l2', 'loss', 'loss+')

  def __init__(self, normalization: str = 'none'):
    if normalization not in self.NORMALIZATIONS:
      raise ValueError(
          f'MGDA.normalization must be one of {self.NORMALIZATIONS}, got {normalization!r}'
      )
    self.normalization = normalization

  def normalize(self, grads, losses):
    norms = tf.norm(grads, axis=1)
    if self.normalization == 'l2':
      n = norms
    elif self.normalization == 'loss':
      n = losses
    elif self.normalization == 'loss+':
      n = losses * norms
    else:
      n = tf.ones_like(losses)
    # Guarded only against an exactly-zero normaliser (a task with a zero gradient).
    return grads / tf.maximum(n, 1e-12)[:, None]

  def weights(self, grads, losses):
    g = self.normalize(grads, losses)
    return min_norm_point(tf.matmul(g, g, transpose_b=True)), g

  def combine(self, grads, losses, step):
    del step
    w, g = self.weights(grads, losses)
    return tf.linalg.matvec(g, w, transpose_a=True)


# --------------------------------------------------------------------------------------------
# PCGrad


class PCGrad(GradientMethod):
  """Projects each task's gradient off every conflicting one, in random order, then sums.

  For task i, with the other tasks (and itself, as LibMTL and the reference code loop over all
  tasks) in a random order j: if g_i^pc . g_j < 0, g_i^pc -= (g_i^pc . g_j) / |g_j|^2 g_j, with the
  original g_j. Update: sum_i g_i^pc.

  Args:
    seed: seed of the stateless task orders (one per (step, task)).
  """

  name = 'pcgrad'

  def __init__(self, seed: int = 0):
    self.seed = seed

  def order(self, step: tf.Tensor, task: int, num_tasks: int) -> tf.Tensor:
    """A random permutation [T] int32 of the tasks for projecting task `task` at `step`."""
    seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64) * num_tasks + task])
    return tf.cast(tf.argsort(tf.random.stateless_uniform([num_tasks], seed=seed)), tf.int32)

  def project(self, grads: tf.Tensor, orders: Sequence[tf.Tensor]) -> tf.Tensor:
    """The projected gradients [T, P] for given task orders (one [T] permutation per task)."""
    n = grads.shape[0]
    sq = tf.reduce_sum(tf.square(grads), axis=1)
    out = []
    for i in range(n):
      g = grads[i]
      for k in range(n):
        j = orders[i][k]
        gj = tf.gather(grads, j)
        dot = tf.tensordot(g, gj, 1)
        g = g - tf.where(dot < 0.0, dot / (tf.gather(sq, j) + _EPS), 0.0) * gj
      out.append(g)
    return tf.stack(out)

  def combine(self, grads, losses, step):
    del losses
    n = grads.shape[0]
    return tf.reduce_sum(self.project(grads, [self.order(step, i, n) for i in range(n)]), axis=0)


# --------------------------------------------------------------------------------------------
# MCLGS


class MCLGS(GradientMethod):
  """Multi-task curriculum learning with gradient similarity.

  w_ij^t = tanh(s(g_i, g_j) p(t)) + 1 with s the cosine similarity on the shared parameters and
  p(t) = max(a0 - t da, 0); update (1 / (N (N - 1))) sum_{i<j} w_ij^t (g_i + g_j). Conflicting
  pairs (s < 0) are down-weighted early; once p(t) = 0 every w_ij = 1 and the update is the mean
  gradient (sum_{i<j} (g_i + g_j) = (N - 1) sum_i g_i), i.e. EW / N.

  Equivalently a per-task weighting: update = (1/N) sum_i lambda_i g_i with
  lambda_i = (1 / (N - 1)) sum_{j != i} w_ij (`task_weights`), which is how CAGrad + MCLGS
  composes the two.

  Args:
    a0: p(0), the initial sharpness of the similarity weighting (>= 0).
    da: decrease of p per step (>= 0); p reaches 0 at step a0 / da.
  """

  name = 'mclgs'

  def __init__(self, a0: float, da: float):
    if a0 < 0:
      raise ValueError(f'MCLGS.a0 must be >= 0, got {a0}')
    if da < 0:
      raise ValueError(
          f'MCLGS.da must be >= 0 (p(t) = max(a0 - t * da, 0) has to decrease), got {da}'
      )
    self.a0 = float(a0)
    self.da = float(da)

  def pace(self, step: tf.Tensor) -> tf.Tensor:
    """p(t) = max(a0 - t da, 0), scalar float32."""
    return tf.maximum(self.a0 - tf.cast(step, tf.float32) * self.da, 0.0)

  def pair_weights(self, grads: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """w^t [T, T] float32: tanh(cos(g_i, g_j) p(t)) + 1 (the diagonal is unused)."""
    norms = tf.norm(grads, axis=1)
    cos = tf.matmul(grads, grads, transpose_b=True) / (norms[:, None] * norms[None, :] + _EPS)
    return tf.tanh(cos * self.pace(step)) + 1.0

  def task_weights(self, grads: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """lambda [T]: (1 / (N - 1)) sum_{j != i} w_ij, so that the update is mean_i lambda_i g_i."""
    n = grads.shape[0]
    w = self.pair_weights(grads, step) * (1.0 - tf.eye(n))
    return tf.reduce_sum(w, axis=1) / max(n - 1, 1)

  def combine(self, grads, losses, step):
    del losses
    n = grads.shape[0]
    w = self.pair_weights(grads, step)
    total = tf.zeros_like(grads[0])
    for i, j in itertools.combinations(range(n), 2):
      total += w[i, j] * (grads[i] + grads[j])
    return total / (n * (n - 1))


# --------------------------------------------------------------------------------------------
# CAGrad


def cagrad_objective(x: tf.Tensor, gram: tf.Tensor, c: tf.Tensor, eps=1e-8) -> tf.Tensor:
  """The CAGrad dual's objective F(x) = g_x . g_0 + c |g_x| (LibMTL's objfn, 1e-8 inside sqrt).

  With g_x = sum_t x_t g_t and g_0 = mean_t g_t: g_x . g_0 = x^T G b with b = 1/T, and
  |g_x| = sqrt(x^T G x + eps).
  """
  n = gram.shape[0]
  b = tf.fill([n], 1.0 / n)
  gx = tf.linalg.matvec(gram, x)
  return tf.tensordot(gx, b, 1) + c * tf.sqrt(tf.tensordot(x, gx, 1) + eps)


def solve_cagrad_dual(
    gram: tf.Tensor, c: tf.Tensor, max_iter: int = 200, tol: float = 1e-9
) -> tf.Tensor:
  """argmin over the simplex of F(x) = x^T G b + c sqrt(x^T G x + 1e-8).

  LibMTL solves this with scipy's SLSQP, a host round trip; here it is projected gradient
  descent with a backtracking (Armijo-type) step, in bounded while loops, so the step stays
  in-graph. F is convex (G is PSD). F is homogeneous of degree 1 in (G, c^2): scaling both by s
  scales F by s and leaves the minimiser unchanged, so G and c are normalised by mean(diag G)
  first and one step-size schedule serves every gradient scale.

  Args:
    gram: [T, T] float32 Gram matrix of the task gradients.
    c: scalar float32, alpha |g_0| (+1e-8 as LibMTL).
    max_iter: outer iterations.
    tol: stop when F improves by less than this (relative to the normalised scale).

  Returns:
    [T] float32 weights on the simplex.
  """
  n = gram.shape[0]
  scale = tf.maximum(tf.reduce_mean(tf.linalg.diag_part(gram)), 1e-30)
  g = gram / scale
  cn = c / tf.sqrt(scale)
  eps = 1e-8 / scale  # F(x; G, c, 1e-8) = scale * F(x; G / scale, c / sqrt(scale), 1e-8 / scale)
  f = lambda x: cagrad_objective(x, g, cn, eps)
  b = tf.fill([n], 1.0 / n)

  def grad_f(x):
    gx = tf.linalg.matvec(g, x)
    return tf.linalg.matvec(g, b) + cn * gx / tf.sqrt(tf.tensordot(x, gx, 1) + eps)

  def outer(i, x, step, fx, done):
    gr = grad_f(x)

    def try_step(k, s, x_new, f_new, ok):
      s = s * 0.5
      x_new = project_to_simplex(x - s * gr)
      f_new = f(x_new)
      d = x_new - x
      ok = f_new <= fx + tf.tensordot(gr, d, 1) + tf.reduce_sum(d * d) / (2.0 * s)
      return k + 1, s, x_new, f_new, ok

    # Start from twice the last accepted step (so the step can grow back), halve until the
    # sufficient-decrease condition holds.
    _, s, x_new, f_new, _ = tf.while_loop(
        lambda k, s, x_new, f_new, ok: tf.logical_and(k < 40, tf.logical_not(ok)),
        try_step,
        (tf.constant(0), step * 4.0, x, fx, tf.constant(False)),
        maximum_iterations=40,
    )
    improved = f_new < fx
    x_next = tf.where(improved, x_new, x)
    f_next = tf.where(improved, f_new, fx)
    done = tf.logical_or(tf.logical_not(improved), fx - f_next < tol)
    return i + 1, x_next, s, f_next, done

  x0 = tf.fill([n], 1.0 / n)
  _, x, _, _, _ = tf.while_loop(
      lambda i, x, step, fx, done: tf.logical_and(i < max_iter, tf.logical_not(done)),
      outer,
      (tf.constant(0), x0, tf.constant(1.0), f(x0), tf.constant(False)),
      maximum_iterations=max_iter,
  )
  return x


class CAGrad(GradientMethod):
  """Conflict-averse gradient: max_d min_i g_i . d within |d - g_0| <= c |g_0|.

  Its dual (CAGrad paper, Sec. 3): w* = argmin_{w in simplex} g_w . g_0 + c |g_w| with
  c = alpha |g_0|, g_0 = mean_t g_t and |g_0|^2 = mean(G) (G the Gram matrix); then
  d = g_0 + (c / |g_w*|) g_w*. LibMTL's rescale: 0 -> d, 1 -> d / (1 + alpha^2) (default),
  2 -> d / (1 + alpha).

  With `curriculum` (CAGrad + MCLGS, our composition: no reference code is public), the task
  gradients are first scaled by MCLGS's per-task weights lambda_i(t), so conflicting tasks enter
  the conflict-averse step down-weighted early in training and unweighted once p(t) = 0.

  Args:
    alpha: c in the paper (LibMTL calpha); 0.4 is the NYUv2 setting of the CAGrad paper.
    rescale: 0, 1 or 2 (see above).
    curriculum: optional MCLGS whose task weights scale the gradients first.
  """

  name = 'cagrad'

  def __init__(self, alpha: float = 0.4, rescale: int = 1, curriculum: Optional[MCLGS] = None):
    if alpha < 0:
      raise ValueError(f'CAGrad.alpha must be >= 0, got {alpha}')
    if rescale not in (0, 1, 2):
      raise ValueError(f'CAGrad.rescale must be 0, 1 or 2, got {rescale!r}')
    self.alpha = float(alpha)
    self.rescale = rescale
    self.curriculum = curriculum
    if curriculum is not None:
      self.name = 'cagrad_mclgs'

  def combine(self, grads, losses, step):
    del losses
    if self.curriculum is not None:
      grads = grads * self.curriculum.task_weights(grads, step)[:, None]
    gram = tf.matmul(grads, grads, transpose_b=True)
    g0_norm = tf.sqrt(tf.reduce_mean(gram) + 1e-8)
    c = self.alpha * g0_norm + 1e-8
    w = solve_cagrad_dual(gram, c)
    gw = tf.linalg.matvec(grads, w, transpose_a=True)
    lmbda = c / (tf.norm(gw) + 1e-8)
    d = tf.reduce_mean(grads, axis=0) + lmbda * gw
    if self.rescale == 1:
      d = d / (1.0 + self.alpha**2)
    elif self.rescale == 2:
      d = d / (1.0 + self.alpha)
    return d


# --------------------------------------------------------------------------------------------
# GradDrop


class GradDrop:
  """Gradient sign dropout on the shared representation's gradients (LibMTL, rep_grad=True).

  For one representation tensor r [B, ...] and task gradients d_t = dL_t/dr [T, B, ...]:
  s_t = sum_b d_t * sign(r) ([T, ...], summed over the batch as LibMTL does);
  P = (1/2) (1 + sum_t s_t / (sum_t |s_t| + 1e-7)), the positive-sign purity; with U ~ U(0, 1)
  per element, mask M_t = [P > U] [s_t > 0] + [P < U] [s_t < 0]; the representation gradient
  is sum_t d_t (leak + (1 - leak) M_t). A U-Net encoder has several outputs (the skips and the
  bottleneck); each gets its own masks.

  Args:
    leak: LibMTL's `leak` (default 0.0).
    seed: seed of the stateless uniform draws.
  """

  name = 'graddrop'
  uses_representation = True

  def __init__(self, leak: float = 0.0, seed: int = 0):
    if not 0.0 <= leak <= 1.0:
      raise ValueError(f'GradDrop.leak must be in [0, 1], got {leak}')
    self.leak = float(leak)
    self.seed = seed

  def mask(self, rep: tf.Tensor, rep_grads: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """M [T, ...] float32 (one per task and element of r without its batch axis)."""
    s = tf.reduce_sum(rep_grads * tf.sign(rep)[None], axis=1)
    p = 0.5 * (1.0 + tf.reduce_sum(s, 0) / (tf.reduce_sum(tf.abs(s), 0) + 1e-7))
    keep = tf.logical_or(
        tf.logical_and((p > uniform)[None], s > 0.0), tf.logical_and((p < uniform)[None], s < 0.0)
    )
    return tf.cast(keep, rep_grads.dtype)

  def combine_representation(
      self, reps: Sequence[tf.Tensor], rep_grads: Sequence[tf.Tensor], step: tf.Tensor
  ):
    """Combined gradients, one [B, ...] per representation tensor.

    Args:
      reps: representation tensors r_k [B, ...] float32.
      rep_grads: per-task gradients [T, B, ...] float32, one per r_k.
      step: scalar int64 (seeds the uniform draws).
    """
    out = []
    for k, (rep, grads) in enumerate(zip(reps, rep_grads)):
      seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64) * 64 + k])
      u = tf.random.stateless_uniform(tf.shape(rep)[1:], seed=seed)
      m = self.mask(rep, grads, u)
      out.append(tf.reduce_sum(grads * (self.leak + (1.0 - self.leak) * m[:, None]), axis=0))
    return out
