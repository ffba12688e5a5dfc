"""tools/staleness_study.py: flags, seeds from --first_seed, reuse of finished runs, the table,
the curves and the plot (on run directories laid out as finished runs, so nothing trains)."""

import json
import os

import pytest

from tests.conftest import run_tool


def _finished_run(run_dir, history):
  # What compare_lib.run_config leaves: DONE, eval_results.json and the trainer's history.
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, 'DONE'), 'w') as f:
    f.write('1.0 s\n')
  last = history[-1][1]
  with open(os.path.join(run_dir, 'eval_results.json'), 'w') as f:
    json.dump({'metrics': {'depth': {'abs_rel': last, 'delta1': 1.0 - last}}}, f)
  with open(os.path.join(run_dir, 'eval_history.jsonl'), 'w') as f:
    for step, value in history:
      f.write(json.dumps({'step': step, 'metrics': {'depth': {'abs_rel': value}}}) + '\n')


@pytest.mark.timeout(900)
def test_tabulates_and_plots_finished_runs_from_first_seed(tmp_path):
  out = str(tmp_path / 'study')
  # Seeds 1 and 2 (--first_seed=1 --seeds=2) of staleness 0 and 100; seed 0 does not exist, so
  # a run that read it would train (and fail: no gin data here).
  values = {(0, 1): 0.2, (0, 2): 0.3, (100, 1): 0.5, (100, 2): 0.7}
  for (staleness, seed), value in values.items():
    _finished_run(
        os.path.join(out, f'staleness_{staleness}', f'seed_{seed}'), [(500, 0.9), (1000, value)]
    )
  proc = run_tool(
      'staleness_study',
      [f'--out_dir={out}', '--staleness=0,100', '--first_seed=1', '--seeds=2'],
      timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.count('reusing finished run') == 4
  # Means over the two seeds: (0.2 + 0.3) / 2 = 0.25 and (0.5 + 0.7) / 2 = 0.6.
  table = open(os.path.join(out, 'results.md')).read()
  assert '0.2500' in table and '0.6000' in table, table
  curves = json.load(open(os.path.join(out, 'curves.json')))
  assert curves['staleness 100'] == [[[500, 1000], [0.9, 0.5]], [[500, 1000], [0.9, 0.7]]]
  assert os.path.getsize(os.path.join(out, 'staleness.png')) > 1000
  # --out_dir is required and named.
  bad = run_tool('staleness_study', ['--staleness=0'], timeout=600)
  assert bad.returncode != 0 and 'out_dir' in bad.stderr
