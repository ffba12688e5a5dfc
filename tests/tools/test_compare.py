"""tools/compare_lib.py's run_config (what tools/compare.py runs per config and seed): the
command it builds, the DONE marker it writes (atomically, through taskology_tf.files) after a
successful run, and the reuse of a finished run. The trainer subprocess is replaced by a
stand-in that writes what tools/train.py would."""

import json
import os

import pytest

from taskology_tf_tools import compare_lib


class _FakeTrainer:
  """Stands in for subprocess.Popen(tools/train.py ...): writes eval_results.json, exits 0."""

  commands = []

  def __init__(self, cmd, stdout=None, stderr=None):
    del stdout, stderr
    _FakeTrainer.commands.append(cmd)
    run_dir = next(a.split('=', 1)[1] for a in cmd if a.startswith('--run_dir='))
    with open(os.path.join(run_dir, 'eval_results.json'), 'w') as f:
      json.dump({'metrics': {'depth': {'abs_rel': 0.25}}}, f)
    self.returncode = 0

  def poll(self):
    return self.returncode


def test_run_config_marks_done_and_reuses(tmp_path, monkeypatch):
  _FakeTrainer.commands = []
  monkeypatch.setattr(compare_lib.subprocess, 'Popen', _FakeTrainer)
  run_dir = str(tmp_path / 'cfg' / 'seed_1')
  metrics = compare_lib.run_config('cfg', ['a.gin', 'b.gin'], 1, run_dir, ['X = 2'])
  assert metrics == {'depth': {'abs_rel': 0.25}}
  (cmd,) = _FakeTrainer.commands
  assert (
      cmd[-4:]
      == [
          '--gin_file=a.gin',
          '--gin_file=b.gin',
          '--gin_bindings=X = 2',
          '--gin_bindings=Experiment.seed=1',
      ]
      and f'--run_dir={run_dir}' in cmd
  )
  with open(os.path.join(run_dir, 'DONE')) as f:
    assert f.read().endswith(' s\n')
  assert not [n for n in os.listdir(run_dir) if '.tmp-' in n]  # No temporary left behind.
  # A finished run is read back, not trained again.
  assert compare_lib.run_config('cfg', ['a.gin'], 1, run_dir, []) == metrics
  assert len(_FakeTrainer.commands) == 1


def test_run_config_names_the_log_when_training_fails(tmp_path, monkeypatch):
  class _Failing(_FakeTrainer):

    def __init__(self, cmd, stdout=None, stderr=None):
      super().__init__(cmd, stdout, stderr)
      self.returncode = 3

  monkeypatch.setattr(compare_lib.subprocess, 'Popen', _Failing)
  run_dir = str(tmp_path / 'bad')
  with pytest.raises(RuntimeError, match=r'exited with 3; see .*bad/train.log'):
    compare_lib.run_config('bad', ['a.gin'], 0, run_dir, [])
  assert not os.path.exists(os.path.join(run_dir, 'DONE'))


def test_library_modules_define_no_flags():
  # Tests import these modules in-process beside tools that define flags (tools/table1.py,
  # tools/build_dataset.py); a flag defined in one of them clashes with a tool's flag of the same
  # name (DuplicateFlagError) on whichever pytest worker imports both. In a fresh interpreter,
  # importing them must register no flag from their own modules.
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  libs = ['compare_lib', 'benchmark_lib']
  code = (
      'from absl import flags\nimport taskology_tf_tools\n'
      + ''.join(f'import taskology_tf_tools.{m}\n' for m in libs)
      + 'print(sorted(m for m in flags.FLAGS.flags_by_module_dict()'
      " if m.startswith('taskology_tf_tools')))\n"
  )
  out = subprocess.run(
      [sys.executable, '-c', code], capture_output=True, text=True, check=True, timeout=300
  )
  assert out.stdout.strip().splitlines()[-1] == '[]', out.stdout
