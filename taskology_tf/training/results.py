"""Result tables of multi-seed runs: mean and standard error, Markdown, peer staleness.

Used by tools/compare.py and tools/staleness_study.py; kept in the package so it is tested
without importing the tools (whose absl flags would clash in one process).
"""

import glob
import math
import os

LOWER_IS_BETTER = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'mean_angle', 'median_angle')


def mean_stderr(values):
  """(mean, standard error of the mean); the error is NaN for a single value."""
  n = len(values)
  mean = sum(values) / n
  if n < 2:
    return mean, float('nan')
  var = sum((v - mean) ** 2 for v in values) / (n - 1)
  return mean, math.sqrt(var / n)


def summarize(per_config, metrics):
  """per_config: {name: [ {task: {metric: v}} per seed ]} -> {name: {task/metric: (mean, se, n)}}."""
  table = {}
  for name, runs in per_config.items():
    cols = metrics or sorted(
        {f'{t}/{m}' for r in runs for t, ms in r.items() for m in ms if m != 'num_pixels'}
    )
    table[name] = {}
    for col in cols:
      task, _, metric = col.partition('/')
      values = [r[task][metric] for r in runs if task in r and metric in r[task]]
      if values:
        table[name][col] = (*mean_stderr(values), len(values))
  return table


def to_markdown(table, title, command):
  cols = sorted({c for row in table.values() for c in row}, key=lambda c: (c.split('/')[0], c))
  seeds = max((v[2] for row in table.values() for v in row.values()), default=0)
  head = [
      '| config | '
      + ' | '.join(
          c + (' (lower is better)' if c.split('/')[1] in LOWER_IS_BETTER else '') for c in cols
      )
      + ' |',
      '|---' * (len(cols) + 1) + '|',
  ]
  rows = []
  for name, row in table.items():
    cells = []
    for c in cols:
      if c in row:
        mean, se, _ = row[c]
        cells.append(f'{mean:.4f} ± {se:.4f}' if se == se else f'{mean:.4f}')
      else:
        cells.append('-')
    rows.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return (
      '\n'.join(
          [
              f'### {title}',
              '',
              f'Mean ± standard error over {seeds} seed(s). Command:',
              '',
              '```',
              command,
              '```',
              '',
          ]
          + head
          + rows
      )
      + '\n'
  )


def peer_staleness(run_dir):
  """Peer staleness the trainers of a distributed run logged to TensorBoard.

  Returns:
    {'steps': [...], 'seconds': [...]}: every `staleness_steps/<peer>` and
    `staleness_seconds/<peer>` scalar of every trainer (one sample per summary step at which
    consistency ran): a trainer's step minus the peer snapshot's step, which is negative when
    the peer's trainer runs ahead, and the snapshot's age in seconds, which never is.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  out = {'steps': [], 'seconds': []}
  for path in sorted(glob.glob(os.path.join(run_dir, '*', 'train', 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        kind = value.tag.split('/', 1)[0]
        if kind in ('staleness_steps', 'staleness_seconds'):
          number = (
              float(tf.make_ndarray(value.tensor))
              if value.HasField('tensor')
              else float(value.simple_value)
          )
          out[kind.split('_', 1)[1]].append(number)
  return out


def staleness_summary(samples):
  """'median M <unit> (10th-90th percentile A to B, N samples)' for steps and for seconds."""

  def describe(values, unit):
    if not values:
      return f'no {unit} samples'
    values = sorted(values)
    pick = lambda q: values[min(int(q * len(values)), len(values) - 1)]
    return (
        f'median {pick(0.5):.4g} {unit} (10th-90th percentile {pick(0.1):.4g} to '
        f'{pick(0.9):.4g}, {len(values)} samples)'
    )

  return f"{describe(samples['steps'], 'steps')}; {describe(samples['seconds'], 's')}"
