"""Errors of a predicted ego-motion against the ground truth (tools/dfv_motion_probe.py)."""

import numpy as np

MIN_TRANSLATION = 1e-3  # metres: pairs with less true translation have no direction to compare.


def rotation_angle_deg(rotation):
  """Angle of rotation matrices [..., 3, 3] in degrees (from the trace, clipped to [-1, 1])."""
  cos = (np.trace(rotation, axis1=-2, axis2=-1) - 1.0) / 2.0
  return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def compare_egomotion(pred_rotation, pred_translation, gt_rotation, gt_translation, back_rotation):
  """Per-pair errors (numpy arrays) of predicted against true ego-motion (tools/dfv_motion_probe.py).

  Args:
    pred_rotation, gt_rotation, back_rotation: [N, 3, 3] (back: the predicted reverse-order
      rotation, cam_t_from_cam_{t+1}).
    pred_translation, gt_translation: [N, 3] metres.

  Returns:
    {name: [N] or [M] array}: rotation_error_deg, rotation_deg (the ground truth's angle),
    cycle_rotation_error_deg, and over the M pairs with |t_gt| >= MIN_TRANSLATION:
    translation_direction_error_deg, translation_scale_ratio, and the unit translation
    directions [M, 3] 'predicted_direction' and 'true_direction' (camera axes: x right, y down,
    z forward), which tell where a wrong direction points; and 'moving' [N] bool, which pairs
    those M are (to line up per-pair attributes with them).
  """
  rel = np.einsum('nji,njk->nik', pred_rotation, gt_rotation)  # R_pred^T R_gt
  cycle = np.einsum('nij,njk->nik', back_rotation, pred_rotation)
  gt_norm = np.linalg.norm(gt_translation, axis=-1)
  pred_norm = np.linalg.norm(pred_translation, axis=-1)
  moving = gt_norm >= MIN_TRANSLATION
  cos = np.sum(pred_translation * gt_translation, -1) / np.maximum(pred_norm * gt_norm, 1e-12)
  return {
      'rotation_error_deg': rotation_angle_deg(rel),
      'rotation_deg': rotation_angle_deg(gt_rotation),
      'cycle_rotation_error_deg': rotation_angle_deg(cycle),
      'translation_direction_error_deg': np.degrees(np.arccos(np.clip(cos[moving], -1, 1))),
      'translation_scale_ratio': pred_norm[moving] / gt_norm[moving],
      'predicted_direction': pred_translation[moving]
      / np.maximum(pred_norm[moving], 1e-12)[:, None],
      'true_direction': gt_translation[moving] / gt_norm[moving][:, None],
      'true_translation_norm': gt_norm[moving],
      'moving': moving,
  }


def outlier_profile(direction_error_deg, attributes, threshold_deg=30.0):
  """What the pairs whose translation direction is off by more than `threshold_deg` share.

  Args:
    direction_error_deg: [M] per-pair direction errors (compare_egomotion).
    attributes: {name: [M]} per-pair properties of the scene (e.g. the movable-pixel fraction).
    threshold_deg: what counts as off.

  Returns:
    {name: {'off': mean over the pairs off, 'within': mean over the others, 'ratio': off /
    within}} plus 'off_pairs' and 'within_pairs' (counts). Means of an empty group are NaN.
  """
  direction_error_deg = np.asarray(direction_error_deg)
  off = direction_error_deg > threshold_deg
  out = {'off_pairs': int(off.sum()), 'within_pairs': int((~off).sum())}
  for name, values in attributes.items():
    values = np.asarray(values, np.float64)
    if values.shape != direction_error_deg.shape:
      raise ValueError(
          f'outlier_profile: attribute {name!r} has shape {values.shape}, expected '
          f'{direction_error_deg.shape} (one value per moving pair)'
      )
    mean_off = float(values[off].mean()) if off.any() else float('nan')
    mean_within = float(values[~off].mean()) if (~off).any() else float('nan')
    out[name] = {
        'off': mean_off,
        'within': mean_within,
        'ratio': mean_off / mean_within if mean_within else float('nan'),
    }
  return out


def outlier_markdown(profile):
  """outlier_profile as a markdown table."""
  lines = [
      f"| pair property | off > 30 deg ({profile['off_pairs']} pairs) | within "
      f"({profile['within_pairs']} pairs) | ratio |",
      '|---|---|---|---|',
  ]
  for name, row in profile.items():
    if isinstance(row, dict):
      lines.append(f"| {name} | {row['off']:.4g} | {row['within']:.4g} | {row['ratio']:.3g} |")
  return '\n'.join(lines) + '\n'


def summarise(errors):
  """Means (and, for the scale ratio, the median and the std of its log) of `compare_egomotion`."""
  out = {'pairs': int(errors['rotation_error_deg'].size)}
  for key in (
      'rotation_error_deg',
      'rotation_deg',
      'cycle_rotation_error_deg',
      'translation_direction_error_deg',
  ):
    out[key] = float(np.mean(errors[key])) if errors[key].size else float('nan')
  # A mean direction error can hide a few pairs pointing the wrong way: the median and the
  # fraction of pairs off by more than 30 deg tell them apart.
  direction = errors['translation_direction_error_deg']
  out['translation_direction_error_deg_median'] = (
      float(np.median(direction)) if direction.size else float('nan')
  )
  out['translation_direction_off_30deg'] = (
      float(np.mean(direction > 30.0)) if direction.size else float('nan')
  )
  ratio = errors['translation_scale_ratio']
  out['translation_pairs'] = int(ratio.size)
  out['translation_scale_ratio_median'] = float(np.median(ratio)) if ratio.size else float('nan')
  positive = ratio[ratio > 0]
  out['translation_scale_log_std'] = float(np.std(np.log(positive))) if positive.size else 0.0
  # The true speeds' own spread (what translation_scale_log_std equals when one speed is
  # predicted for every pair), their range, and how many true directions lie within 1 deg of
  # the optical axis.
  speeds = errors['true_translation_norm']
  out['true_translation_log_std'] = float(np.std(np.log(speeds))) if speeds.size else 0.0
  out['true_translation_range_m'] = (
      [float(speeds.min()), float(speeds.max())] if speeds.size else []
  )
  out['true_translation_median_m'] = float(np.median(speeds)) if speeds.size else float('nan')
  # Whether the predicted speed follows the true one: the least-squares slope of
  # log norm(t_pred) on log norm(t_gt) over pairs (1: it does, up to one scale; 0: one speed for
  # every pair) and their correlation. NaN with fewer than 2 pairs or one true speed.
  keep = ratio > 0
  log_true = np.log(speeds[keep].astype(np.float64)) if speeds.size else np.zeros([0])
  log_pred = np.log(ratio[keep].astype(np.float64)) + log_true if speeds.size else np.zeros([0])
  if log_true.size >= 2 and np.var(log_true) > 0:
    centred_true, centred_pred = log_true - log_true.mean(), log_pred - log_pred.mean()
    out['speed_slope'] = float(np.sum(centred_true * centred_pred) / np.sum(centred_true**2))
    # One speed for every pair up to float32 rounding (std < 1e-5 in log) does not correlate.
    if np.std(log_pred) > 1e-5:
      denominator = np.sqrt(np.sum(centred_true**2) * np.sum(centred_pred**2))
      out['speed_corr'] = float(np.sum(centred_true * centred_pred) / denominator)
    else:
      out['speed_corr'] = 0.0
  else:
    out['speed_slope'] = out['speed_corr'] = float('nan')
  on_axis = np.degrees(np.arccos(np.clip(np.abs(errors['true_direction'][:, 2]), 0.0, 1.0)))
  out['true_direction_within_1deg_of_axis'] = (
      float(np.mean(on_axis < 1.0)) if speeds.size else float('nan')
  )
  # Direction errors by how far the camera moved (a slow pair has less parallax, so its
  # direction is harder) and by how far it turned (a turn's flow resembles a sideways move's).
  direction_by = (
      ('direction_error_by_true_speed', 'true_translation_m', errors['true_translation_norm']),
      (
          'direction_error_by_true_rotation',
          'true_rotation_deg',
          errors['rotation_deg'][errors['moving']],
      ),
  )
  for key, unit, values in direction_by:
    out[key] = _terciles(values, direction, unit)
  # Mean unit directions (x, y, z): a mean of unit vectors, so its norm < 1 measures the spread.
  for key in ('predicted_direction', 'true_direction'):
    values = errors[key]
    out[f'mean_{key}'] = [float(v) for v in np.mean(values, 0)] if len(values) else []
  return out


def _terciles(values, direction, unit):
  """Median direction error and fraction > 30 deg in each tercile of `values` (one per moving
  pair); [] with fewer than 3 pairs."""
  if values.size < 3:
    return []
  edges = np.quantile(values, [0.0, 1 / 3, 2 / 3, 1.0])
  bins = np.clip(np.searchsorted(edges, values, side='right') - 1, 0, 2)
  rows = []
  for b in range(3):
    sel = direction[bins == b]
    rows.append(
        {
            unit: [float(edges[b]), float(edges[b + 1])],
            'pairs': int(sel.size),
            'median_deg': float(np.median(sel)) if sel.size else float('nan'),
            'off_30deg': float(np.mean(sel > 30.0)) if sel.size else float('nan'),
        }
    )
  return rows


def markdown(summary):
  rows = [
      ('pairs', summary['pairs']),
      ('rotation error (deg)', summary['rotation_error_deg']),
      ("ground-truth rotation (deg; = a zero rotation's error)", summary['rotation_deg']),
      ('forward-backward rotation cycle (deg)', summary['cycle_rotation_error_deg']),
      ('translation direction error (deg)', summary['translation_direction_error_deg']),
      (
          'translation direction error, median (deg)',
          summary['translation_direction_error_deg_median'],
      ),
      (
          'fraction of pairs with direction error > 30 deg',
          summary['translation_direction_off_30deg'],
      ),
      ('norm(t_pred) / norm(t_gt), median', summary['translation_scale_ratio_median']),
      ('std of log(norm(t_pred) / norm(t_gt)) over pairs', summary['translation_scale_log_std']),
      ('std of log(norm(t_gt)) over pairs', summary['true_translation_log_std']),
      (
          'slope of log norm(t_pred) on log norm(t_gt) (1: speed learnt, 0: one speed)',
          summary.get('speed_slope', float('nan')),
      ),
      (
          'correlation of log norm(t_pred) with log norm(t_gt)',
          summary.get('speed_corr', float('nan')),
      ),
      (
          'fraction of true translations within 1 deg of the optical axis',
          summary['true_direction_within_1deg_of_axis'],
      ),
  ]
  if summary['true_translation_range_m']:
    low, high = summary['true_translation_range_m']
    rows.append(('true norm(t) range (m)', f'{low:.3g}-{high:.3g}'))
    rows.append(('true norm(t), median (m)', summary['true_translation_median_m']))
  for key, name in (
      ('mean_predicted_direction', 'mean predicted t / norm(t) (x right, y down, z forward)'),
      ('mean_true_direction', 'mean true t / norm(t)'),
  ):
    if summary[key]:
      rows.append((name, '(' + ', '.join(f'{v:.3f}' for v in summary[key]) + ')'))
  for key, unit, what in (
      ('direction_error_by_true_speed', 'true_translation_m', 'true norm(t) in [{:.2f}, {:.2f}] m'),
      (
          'direction_error_by_true_rotation',
          'true_rotation_deg',
          'true rotation in [{:.2f}, {:.2f}] deg',
      ),
  ):
    for tercile in summary[key]:
      low, high = tercile[unit]
      rows.append(
          (
              f'direction error for {what.format(low, high)}: median (deg), > 30 deg',
              f"{tercile['median_deg']:.3g}, {tercile['off_30deg']:.3g} ({tercile['pairs']} pairs)",
          )
      )
  lines = ['| quantity | value |', '|---|---|']
  for name, value in rows:
    lines.append(
        f'| {name} | {value:.4g} |' if isinstance(value, float) else f'| {name} | {value} |'
    )
  return '\n'.join(lines) + '\n'
