"""The KITTI Eigen depth protocol and its Cityscapes counterpart (numpy; resizing in TF).

Eigen et al. (NIPS 2014) metrics as the self-supervised literature computes them (Zhou et al.
2017's kitti_eval, which struct2depth and Gordon et al. 2019 use; monodepth2 is the same up
to resizing disparity instead of depth):

1. the predicted depth (at the network's resolution) is resized bilinearly to the ground
   truth's full resolution;
2. valid pixels: min_depth < gt < max_depth (1e-3 and 80 m) inside the Garg crop (Garg et al.
   2016: rows [0.40810811 H, 0.99189189 H), columns [0.03594771 W, 0.96405229 W), truncated
   to integers);
3. optionally (median scaling, for scale-ambiguous monocular depth) the prediction is
   multiplied by median(gt) / median(pred) over that image's valid pixels;
4. predictions are clipped to [min_depth, max_depth];
5. per image: Abs Rel = mean |g - p| / g, Sq Rel = mean (g - p)^2 / g,
   RMSE = sqrt(mean (g - p)^2), RMSE log = sqrt(mean (ln g - ln p)^2),
   delta_k = fraction of max(g / p, p / g) < 1.25^k; then each metric is averaged over images
   (an image mean, unlike `DepthMetrics`' pixel mean).

Cityscapes (`cityscapes_metrics`): the same metrics, per image, at the dataset's cropped output
resolution against disparity-derived depth, capped at 80 m, without the Garg crop (the
Cityscapes crop already removed the ego car and the sky-heavy top). Gordon et al. report
these metrics on Cityscapes without publishing their evaluation script; this is our reading.

Every result names its protocol (`protocol` / `format_table`), including whether median
scaling was applied, so no table can mix scaled and unscaled numbers unawares.
"""

from typing import Dict, Optional, Sequence

import numpy as np

GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
METRIC_NAMES = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'delta1', 'delta2', 'delta3')


def garg_crop_mask(height: int, width: int) -> np.ndarray:
  """[H, W] bool: the Garg crop of a ground-truth map of this size (monodepth2's integers)."""
  top, bottom, left, right = (
      np.array(GARG_CROP) * np.array([height, height, width, width])
  ).astype(np.int32)
  mask = np.zeros((height, width), bool)
  mask[top:bottom, left:right] = True
  return mask


def resize_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize (half-pixel centres, as cv2.INTER_LINEAR) of [h, w] depth -> [H, W]."""
  if np.shape(depth) == (height, width):
    return np.asarray(depth, np.float64)
  depth = np.asarray(depth, np.float32)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  out = tf.image.resize(depth[None, :, :, None], [height, width], method='bilinear')
  return out.numpy()[0, :, :, 0]


def image_errors(gt: np.ndarray, pred: np.ndarray) -> Dict[str, float]:
  """The seven Eigen metrics over matching vectors of valid gt and (scaled, clipped) pred."""
  gt = np.asarray(gt, np.float64)
  pred = np.asarray(pred, np.float64)
  ratio = np.maximum(gt / pred, pred / gt)
  return {
      'abs_rel': float(np.mean(np.abs(gt - pred) / gt)),
      'sq_rel': float(np.mean((gt - pred) ** 2 / gt)),
      'rmse': float(np.sqrt(np.mean((gt - pred) ** 2))),
      'rmse_log': float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
      'delta1': float(np.mean(ratio < 1.25)),
      'delta2': float(np.mean(ratio < 1.25**2)),
      'delta3': float(np.mean(ratio < 1.25**3)),
  }


class EigenDepthMetrics:
  """Streams depth predictions against (sparse) ground truth, averaging metrics per image.

  Args:
    garg_crop: evaluate only inside the Garg crop (KITTI Eigen protocol).
    median_scaling: per-image median scaling (step 3 above).
    min_depth: ground truth at or below this is invalid; predictions are clipped to it (m).
    max_depth: ground truth at or above this is invalid; predictions are clipped to it (m).
    name: protocol name used in `protocol` (e.g. 'kitti_eigen').
  """

  def __init__(
      self,
      garg_crop: bool,
      median_scaling: bool,
      min_depth: float = 1e-3,
      max_depth: float = 80.0,
      name: str = 'eigen',
  ):
    if not 0 <= min_depth < max_depth:
      raise ValueError(f'need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}')
    self.garg_crop = bool(garg_crop)
    self.median_scaling = bool(median_scaling)
    self.min_depth = float(min_depth)
    self.max_depth = float(max_depth)
    self.name = name
    self.reset()

  @property
  def protocol(self) -> str:
    """E.g. 'kitti_eigen: Garg crop, 0.001-80 m, median-scaled, per-image mean'."""
    parts = ['Garg crop'] if self.garg_crop else ['no crop']
    parts.append(f'{self.min_depth:g}-{self.max_depth:g} m')
    parts.append('median-scaled' if self.median_scaling else 'not scaled (metric depth)')
    return f'{self.name}: ' + ', '.join(parts) + ', per-image mean'

  def reset(self) -> None:
    self._sums = {k: 0.0 for k in METRIC_NAMES}
    self._ratios = []
    self._images = 0
    self._skipped = 0

  def update(self, gt_depth, pred_depth, gt_size: Optional[Sequence] = None) -> None:
    """Adds a batch.

    Args:
      gt_depth: [B, H, W] or [B, H, W, 1] float, metres, camera z; 0 (or anything outside
        (min_depth, max_depth)) where there is no ground truth. May be zero-padded beyond
        `gt_size`.
      pred_depth: [B, h, w] or [B, h, w, 1] float, metres, camera z, any resolution (resized
        to the ground truth's).
      gt_size: [B, 2] int, the true (rows, columns) of each ground-truth map (None: all of it).

    Raises:
      ValueError: batch sizes differ or a prediction is not positive and finite.
    """
    gt = np.asarray(gt_depth, np.float64)
    pred = np.asarray(pred_depth, np.float64)
    gt = gt[..., 0] if gt.ndim == 4 else gt
    pred = pred[..., 0] if pred.ndim == 4 else pred
    if gt.ndim != 3 or pred.ndim != 3 or gt.shape[0] != pred.shape[0]:
      raise ValueError(
          f'EigenDepthMetrics: gt_depth {gt.shape} and pred_depth {pred.shape} must be [B, H, W] '
          'with one batch size'
      )
    for i in range(gt.shape[0]):
      g = gt[i]
      if gt_size is not None:
        rows, cols = (int(v) for v in np.asarray(gt_size)[i])
        if rows <= 0 or cols <= 0:
          self._skipped += 1  # An example without ground truth (e.g. a training clip).
          continue
        g = g[:rows, :cols]
      valid = (g > self.min_depth) & (g < self.max_depth)
      if self.garg_crop:
        valid &= garg_crop_mask(*g.shape)
      if not valid.any():
        self._skipped += 1
        continue
      p = resize_depth(pred[i], *g.shape).astype(np.float64)
      p = p[valid]
      if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError('EigenDepthMetrics: predicted depth must be positive and finite')
      g = g[valid]
      if self.median_scaling:
        ratio = np.median(g) / np.median(p)
        self._ratios.append(ratio)
        p = p * ratio
      p = np.clip(p, self.min_depth, self.max_depth)
      for k, v in image_errors(g, p).items():
        self._sums[k] += v
      self._images += 1

  def result(self) -> Dict[str, float]:
    """The seven metrics averaged over images, plus num_images, median_scaling (0/1) and the
    spread of the median-scaling ratios (std / mean, when scaled)."""
    n = max(self._images, 1)
    out = {k: self._sums[k] / n for k in METRIC_NAMES}
    out['num_images'] = float(self._images)
    out['median_scaling'] = float(self.median_scaling)
    if self._ratios:
      r = np.asarray(self._ratios)
      out['scale_ratio_median'] = float(np.median(r))
      out['scale_ratio_rel_std'] = float(np.std(r / np.mean(r)))
    return out


def kitti_eigen_metrics(median_scaling: bool) -> EigenDepthMetrics:
  """The KITTI Eigen protocol: Garg crop, 1e-3-80 m, per-image means."""
  return EigenDepthMetrics(garg_crop=True, median_scaling=median_scaling, name='kitti_eigen')


def cityscapes_metrics(median_scaling: bool) -> EigenDepthMetrics:
  """Cityscapes: the same metrics without the Garg crop, 1e-3-80 m (see the module doc)."""
  return EigenDepthMetrics(garg_crop=False, median_scaling=median_scaling, name='cityscapes')


def format_table(results: Dict[str, float], protocol: str) -> str:
  """A Markdown table of one result, headed by its protocol name (median scaling included)."""
  header = '| protocol | ' + ' | '.join(METRIC_NAMES) + ' | images |'
  rule = '|' + '---|' * (len(METRIC_NAMES) + 2)
  row = (
      f'| {protocol} | '
      + ' | '.join(f'{results[k]:.4f}' for k in METRIC_NAMES)
      + f' | {int(results["num_images"])} |'
  )
  return '\n'.join([header, rule, row])
