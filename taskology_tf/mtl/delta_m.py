"""delta_m: the mean relative improvement of a multi-task method over single-task baselines.

As CAGrad (Liu et al. 2021, Sec. 5) and MCLGS report it, over the K metrics of all tasks:

    delta_m = 100 / K * sum_k (-1)^{l_k} (M_{m,k} - M_{b,k}) / M_{b,k}

with M_b the single-task (STL) baseline and l_k = 1 when lower is better. The sign here makes a
positive delta_m an improvement (MCLGS's convention and the issue's table: MTL 0.49, ...,
CAGrad + MCLGS 3.37). CAGrad's own tables print the negation (a "drop", lower is better).

LibMTL's `count_improvement` (Delta_p) differs in two ways: it averages per task first and then
over tasks (each task weighs 1/T, whatever its number of metrics), and its base result is
whatever the caller passes (not necessarily STL). `delta_p` computes it for comparison.

Metrics (NYUv2's set in CAGrad, mapped to ours): segmentation mIoU and pixel accuracy (higher is
better); depth Abs Rel and RMSE (lower; CAGrad's Abs Err and Rel Err, our DepthMetrics has Abs
Rel and RMSE); normals mean and median angle (lower), % within 11.25, 22.5 and 30 degrees
(higher). K = 9.
"""

import json
import math
import os
from typing import Dict, Mapping, Sequence, Tuple

from taskology_tf import files

# (task, metric, higher_is_better)
DEFAULT_METRICS: Tuple[Tuple[str, str, bool], ...] = (
    ('segmentation', 'miou', True),
    ('segmentation', 'pixel_accuracy', True),
    ('depth', 'abs_rel', False),
    ('depth', 'rmse', False),
    ('normals', 'mean_angle', False),
    ('normals', 'median_angle', False),
    ('normals', 'within_11_25', True),
    ('normals', 'within_22_5', True),
    ('normals', 'within_30', True),
)

Results = Mapping[str, Mapping[str, float]]


def _relative(method: Results, base: Results, metrics):
  out = []
  for task, metric, higher in metrics:
    try:
      m, b = float(method[task][metric]), float(base[task][metric])
    except KeyError as e:
      raise ValueError(f'delta_m: metric {task}/{metric} missing from a result ({e})') from e
    if b == 0:
      raise ValueError(f'delta_m: baseline {task}/{metric} is 0; relative change undefined')
    sign = 1.0 if higher else -1.0
    out.append((task, sign * (m - b) / b))
  return out


def delta_m(method: Results, base: Results, metrics=DEFAULT_METRICS) -> float:
  """CAGrad/MCLGS delta_m in percent (positive = better than the baseline), mean over metrics."""
  rel = _relative(method, base, metrics)
  return 100.0 * sum(r for _, r in rel) / len(rel)


def delta_p(method: Results, base: Results, metrics=DEFAULT_METRICS) -> float:
  """LibMTL's Delta_p in percent: per-task mean of the relative changes, then mean over tasks."""
  per_task: Dict[str, list] = {}
  for task, r in _relative(method, base, metrics):
    per_task.setdefault(task, []).append(r)
  return 100.0 * sum(sum(v) / len(v) for v in per_task.values()) / len(per_task)


def mean_stderr(values: Sequence[float]):
  n = len(values)
  mean = sum(values) / n
  if n < 2:
    return mean, float('nan')
  var = sum((v - mean) ** 2 for v in values) / (n - 1)
  return mean, math.sqrt(var / n)


def mean_results(runs: Sequence[Results]) -> Dict[str, Dict[str, float]]:
  """Metric-wise mean of several seeds' results."""
  out: Dict[str, Dict[str, float]] = {}
  for task in runs[0]:
    out[task] = {}
    for k in runs[0][task]:
      out[task][k] = sum(r[task][k] for r in runs) / len(runs)
  return out


def table(per_row: Mapping[str, Sequence[Results]], baseline: str, metrics=DEFAULT_METRICS):
  """{row: {'delta_m': (mean, se), 'delta_p': (mean, se), metric: (mean, se)}}.

  Seed s of every row is compared with the mean of the baseline's seeds (the reference is a
  property of STL training, not of one seed), and the mean and standard error are over the
  rows' seeds; the baseline's own delta_m is then its seeds' spread around their mean.
  """
  if baseline not in per_row:
    raise ValueError(f'delta_m table: baseline row {baseline!r} not among {list(per_row)}')
  base = mean_results(per_row[baseline])
  out = {}
  for name, runs in per_row.items():
    row = {
        'delta_m': mean_stderr([delta_m(r, base, metrics) for r in runs]),
        'delta_p': mean_stderr([delta_p(r, base, metrics) for r in runs]),
        'seeds': len(runs),
    }
    for task, metric, _ in metrics:
      row[f'{task}/{metric}'] = mean_stderr([float(r[task][metric]) for r in runs])
    out[name] = row
  return out


def to_markdown(rows, metrics=DEFAULT_METRICS, command: str = '') -> str:
  cols = [f'{t}/{m}' for t, m, _ in metrics]
  arrows = ['↑' if h else '↓' for _, _, h in metrics]
  head = (
      '| row | seeds | delta_m % ↑ | LibMTL Delta_p % ↑ | '
      + ' | '.join(f'{c} {a}' for c, a in zip(cols, arrows))
      + ' |'
  )
  lines = [head, '|---' * (len(cols) + 4) + '|']
  fmt = lambda ms, d: f'{ms[0]:.{d}f} ± {ms[1]:.{d}f}' if ms[1] == ms[1] else f'{ms[0]:.{d}f}'
  for name, row in rows.items():
    cells = [str(row['seeds']), fmt(row['delta_m'], 2), fmt(row['delta_p'], 2)]
    cells += [fmt(row[c], 4 if row[c][0] < 10 else 2) for c in cols]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  prefix = 'Mean ± standard error over seeds; delta_m against the mean of the STL seeds.\n\n'
  if command:
    prefix += f'```\n{command}\n```\n\n'
  return prefix + '\n'.join(lines) + '\n'


def plot(rows, path: str) -> None:
  """Bar chart of delta_m with standard-error bars (PNG)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  names = list(rows)
  means = [rows[n]['delta_m'][0] for n in names]
  errs = [
      rows[n]['delta_m'][1] if rows[n]['delta_m'][1] == rows[n]['delta_m'][1] else 0 for n in names
  ]
  fig, ax = plt.subplots(figsize=(8, 3.5))
  colors = [
      '0.6' if n == 'stl' else ('tab:green' if n == 'collective' else 'tab:blue') for n in names
  ]
  ax.bar(names, means, yerr=errs, color=colors, capsize=3)
  ax.axhline(0.0, color='k', linewidth=0.8)
  ax.set_ylabel('delta_m vs STL (%)')
  ax.set_title('Synthetic world: segmentation + depth + normals')
  plt.setp(ax.get_xticklabels(), rotation=30, ha='right')
  fig.tight_layout()
  files.save_figure_atomic(fig, path)
  plt.close(fig)


def write_table(per_row, baseline: str, out_dir: str, command: str, metrics=DEFAULT_METRICS):
  """Writes results.md, results.json and delta_m.png into out_dir (atomically); returns rows."""
  rows = table(per_row, baseline, metrics)
  os.makedirs(out_dir, exist_ok=True)
  md = to_markdown(rows, metrics, command)
  for name, text in (
      ('results.md', md),
      ('results.json', json.dumps({'command': command, 'rows': rows, 'runs': per_row}, indent=2)),
  ):
    files.write_text_atomic(os.path.join(out_dir, name), text)
  plot(rows, os.path.join(out_dir, 'delta_m.png'))
  return rows
