"""Pictures of a taxonomy: the affinity heat-map and the chosen transfers as a graph (PNG)."""

import math
from typing import Mapping, Sequence

import numpy as np

from taskology_tf import files


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def _save(fig, path):
  files.save_figure_atomic(fig, path)


def affinity_heatmap(
    affinity: Mapping[str, Mapping[str, float]], targets: Sequence[str], path: str, title=''
) -> None:
  """Rows: transfers (source sets, 'full'); columns: targets; cells: AHP affinity (NaN: none)."""
  plt = _plt()
  rows = []
  for t in targets:
    for name in affinity[t]:
      if name not in rows:
        rows.append(name)
  rows.sort(key=lambda r: (r == 'full', r.count('+'), r))
  m = np.full((len(rows), len(targets)), np.nan)
  for j, t in enumerate(targets):
    for name, a in affinity[t].items():
      m[rows.index(name), j] = a
  fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(targets), 1.0 + 0.45 * len(rows)))
  im = ax.imshow(np.ma.masked_invalid(m), cmap='viridis', vmin=0.0, aspect='auto')
  ax.set_xticks(range(len(targets)), targets)
  ax.set_yticks(range(len(rows)), rows)
  ax.set_xlabel('target')
  ax.set_ylabel('source(s)')
  for i in range(len(rows)):
    for j in range(len(targets)):
      if not math.isnan(m[i, j]):
        ax.text(j, i, f'{m[i, j]:.2f}', ha='center', va='center', color='w', fontsize=8)
  fig.colorbar(im, ax=ax, label='AHP affinity (per target, sums to 1)')
  ax.set_title(title or 'Normalised transfer affinities')
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


def taxonomy_graph(tasks: Sequence[str], taxonomy, path: str, title: str = '') -> None:
  """Tasks on a circle; supervised tasks filled; an arrow per chosen transfer source -> target."""
  plt = _plt()
  n = len(tasks)
  pos = {
      t: (math.cos(2 * math.pi * i / n + math.pi / 2), math.sin(2 * math.pi * i / n + math.pi / 2))
      for i, t in enumerate(tasks)
  }
  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  for e in taxonomy.transfers:
    if e.sources == (e.target,):
      continue
    for s in e.sources:
      (x0, y0), (x1, y1) = pos[s], pos[e.target]
      ax.annotate(
          '',
          xy=(x1, y1),
          xytext=(x0, y0),
          arrowprops=dict(arrowstyle='-|>', color='tab:blue', lw=1.5, shrinkA=22, shrinkB=22),
      )
      ax.text((x0 + x1) / 2, (y0 + y1) / 2, f'{e.performance:.2f}', color='tab:blue', fontsize=8)
  for t, (x, y) in pos.items():
    sup = t in taxonomy.supervised
    ax.scatter([x], [y], s=1800, c='tab:orange' if sup else 'white', edgecolors='k', zorder=3)
    ax.text(x, y, t, ha='center', va='center', fontsize=8, zorder=4)
  ax.set_xlim(-1.6, 1.6)
  ax.set_ylim(-1.6, 1.6)
  ax.axis('off')
  ax.set_title(title or f'taxonomy: supervised (filled) {taxonomy.supervised}', fontsize=9)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)
