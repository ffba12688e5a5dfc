"""Depth-normals consistency with the depth's shape anchored to the supervised domain.

Eq. 6 (`depth_normals.DepthNormalsConsistency`) compares the normals implied by the predicted
depth with the predicted normals. It has a trivial minimiser: fronto-parallel (constant) depth
with camera-facing normals satisfies it exactly, and because it only reads depth's derivatives
up to scale (depth_to_normals(s * D) = depth_to_normals(D)), nothing in it keeps the depth's scale
or its spread on the unlabelled mediator domain. README (Table 3 analogue) measured networks
sliding toward that solution on `real`.

This relation adds two terms on the depth's per-image log-depth statistics, both computed over
the mediator pixels the depth counts (predicted depth below `max_depth`). For image i with
valid pixels P_i, write

    m_i = mean_{p in P_i} log D(p),    s_i = std_{p in P_i} log D(p)

(s_i is scale invariant; it is 0 exactly for constant depth). Then

    L = L_eq6(D~, N)                                              (Eq. 6, `depth_normals`)
      + floor_weight  * mean_i relu(spread_floor - s_i)           (spread floor)
      + moment_weight * [(mean_i m_i - log_depth_mean)^2
                         + (mean_i s_i - log_depth_std)^2]        (moment match)

* Spread floor: zero on every image whose log-depth spread is at least `spread_floor` (choose it
  as a low quantile of the supervised domain's ground truth, `tools/depth_statistics.py`), and
  `floor_weight * spread_floor` on a fronto-parallel map. So the trivial minimiser of Eq. 6
  costs at least `floor_weight * spread_floor`; with that above Eq. 6's value on ground truth
  (`tools/relation_floor.py`: 0.035 on the synthetic `real` test split), ground truth beats it.
  This is what keeps the trivial minimiser away by construction.
* Moment match: ties the batch's mean log depth (the scale Eq. 6 is blind to) and its mean
  spread to the supervised domain's ground-truth values (constants measured once on the labelled
  domain; they are stop-gradient by being constants). Zero when the batch's statistics equal the
  targets; it acts as a distribution-level constraint that averages over steps, which assumes
  the mediator scenes are drawn like the supervised ones (true in the synthetic world, where the
  two domains share the geometry generator; approximately true for SceneNet -> ScanNet indoors).
  `None` targets switch the respective half off.
* `depth_gradient_scale` scales the gradient Eq. 6 sends into depth, without changing any value:
  1 is Eq. 6 as it is, 0 makes it one-directional (only depth teaches normals; depth then learns
  on the mediator only from the anchor terms).

The relation holds no state and reads only the mediator predictions and intrinsics, so a stale
peer's prediction (a constant) works exactly as a live one.
"""

import tensorflow as tf

from taskology_tf.consistency import base
from taskology_tf.consistency import depth_normals


def log_depth_moments(depth, mask):
  """Per-image mean and standard deviation of log depth over masked pixels.

  Args:
    depth: [N, H, W, 1] float32, metres, > 0.
    mask: [N, H, W, 1] float32 in {0, 1} (a selection: not differentiated).

  Returns:
    (mean [N], std [N], count [N]) float32; mean and std are 0 for an image without pixels.
    std is the population standard deviation sqrt(mean(x^2) - mean(x)^2), computed with a
    floor inside the square root so its gradient stays finite for constant depth.
  """
  log_depth = tf.math.log(depth)
  count = tf.reduce_sum(mask, axis=[1, 2, 3])
  denom = tf.maximum(count, 1.0)
  mean = tf.reduce_sum(log_depth * mask, axis=[1, 2, 3]) / denom
  centred = (log_depth - mean[:, tf.newaxis, tf.newaxis, tf.newaxis]) * mask
  variance = tf.reduce_sum(tf.square(centred), axis=[1, 2, 3]) / denom
  std = tf.sqrt(tf.maximum(variance, 1e-12))
  has_pixels = tf.cast(count > 0, tf.float32)
  return mean * has_pixels, std * has_pixels, count


class AnchoredDepthNormalsConsistency(base.Relation):
  """Eq. 6 plus a log-depth spread floor and moment match (see the module docstring).

  Reads `predictions[depth_task]['depth']` ([B, T, H, W, 1] or [B, H, W, 1], metres) and
  `predictions[normals_task]['normals']` (same leading shape, [..., 3], camera frame), and
  `batch['intrinsics']` [B, 3, 3].
  """

  def __init__(
      self,
      depth_task='depth',
      normals_task='normals',
      max_depth=None,
      spread_floor=0.0,
      floor_weight=1.0,
      log_depth_mean=None,
      log_depth_std=None,
      moment_weight=1.0,
      depth_gradient_scale=1.0,
      name='anchored_depth_normals',
  ):
    """Initialises the relation.

    Args:
      depth_task: name of the task predicting 'depth'.
      normals_task: name of the task predicting 'normals'.
      max_depth: optional float, metres: pixels with predicted depth at or beyond it are ignored
        by Eq. 6 (as in `DepthNormalsConsistency`) and by the statistics.
      spread_floor: float >= 0, the smallest per-image std of log depth that costs nothing.
      floor_weight: float >= 0, weight of the spread floor.
      log_depth_mean: optional float, target batch mean of per-image mean log depth (log metres).
      log_depth_std: optional float, target batch mean of per-image std of log depth.
      moment_weight: float >= 0, weight of the moment match.
      depth_gradient_scale: float in [0, 1], scale of Eq. 6's gradient into depth.
      name: relation name.
    """
    for arg, value in (
        ('spread_floor', spread_floor),
        ('floor_weight', floor_weight),
        ('moment_weight', moment_weight),
        ('depth_gradient_scale', depth_gradient_scale),
    ):
      if value is None or value < 0:
        raise ValueError(
            f'AnchoredDepthNormalsConsistency.{arg} must be a float >= 0, got {value!r}'
        )
    if log_depth_std is not None and log_depth_std < 0:
      raise ValueError(
          f'AnchoredDepthNormalsConsistency.log_depth_std must be >= 0, got {log_depth_std!r}'
      )
    self.depth_task = depth_task
    self.normals_task = normals_task
    self.max_depth = max_depth
    self.spread_floor = float(spread_floor)
    self.floor_weight = float(floor_weight)
    self.log_depth_mean = log_depth_mean
    self.log_depth_std = log_depth_std
    self.moment_weight = float(moment_weight)
    self.depth_gradient_scale = float(depth_gradient_scale)
    self.name = name
    self.tasks = (depth_task, normals_task)
    self._eq6 = depth_normals.DepthNormalsConsistency(
        depth_task=depth_task, normals_task=normals_task, max_depth=max_depth, name=name
    )

  def __call__(self, predictions, batch):
    """See `base.Relation.__call__`.

    Metrics: Eq. 6's 'mean_cosine' and 'valid_fraction', plus 'eq6_loss', 'floor_loss',
    'moment_loss', 'log_depth_mean' and 'log_depth_std' (batch means of m_i and s_i).
    """
    depth = tf.convert_to_tensor(predictions[self.depth_task]['depth'], tf.float32)
    normals = tf.convert_to_tensor(predictions[self.normals_task]['normals'], tf.float32)
    if self.depth_gradient_scale != 1.0:
      # Same value, gradient into depth scaled: d(eq6)/dD * scale.
      stopped = tf.stop_gradient(depth)
      depth_eq6 = stopped + self.depth_gradient_scale * (depth - stopped)
    else:
      depth_eq6 = depth
    eq6_loss, metrics = self._eq6(
        {self.depth_task: {'depth': depth_eq6}, self.normals_task: {'normals': normals}}, batch
    )
    if depth.shape.rank == 5:
      depth = base.fold_time(depth)
    if self.max_depth is None:
      mask = tf.ones_like(depth)
    else:
      mask = tf.cast(tf.stop_gradient(depth) < self.max_depth, tf.float32)
    mean, std, count = log_depth_moments(depth, mask)
    has_pixels = tf.cast(count > 0, tf.float32)
    images = tf.maximum(tf.reduce_sum(has_pixels), 1.0)
    batch_mean = tf.reduce_sum(mean) / images
    batch_std = tf.reduce_sum(std) / images
    floor_loss = tf.reduce_sum(tf.nn.relu(self.spread_floor - std) * has_pixels) / images
    moment_loss = tf.constant(0.0)
    if self.log_depth_mean is not None:
      moment_loss += tf.square(batch_mean - self.log_depth_mean)
    if self.log_depth_std is not None:
      moment_loss += tf.square(batch_std - self.log_depth_std)
    loss = eq6_loss + self.floor_weight * floor_loss + self.moment_weight * moment_loss
    metrics.update(
        {
            'eq6_loss': eq6_loss,
            'floor_loss': floor_loss,
            'moment_loss': moment_loss,
            'log_depth_mean': batch_mean,
            'log_depth_std': batch_std,
        }
    )
    return loss, metrics
