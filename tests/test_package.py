"""The installed package: console scripts work from their entry points, and nothing in the tree
manipulates sys.path to find the code."""

import glob
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

BIN = os.path.dirname(sys.executable)


def _script(name):
  path = os.path.join(BIN, name)
  assert os.path.exists(
      path
  ), f'{path} is missing: the package is not installed (make setup runs pip install -e .)'
  return path


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    'script, flag, expected',
    [
        ('taskology-train', '--helpfull', '--gin_file'),
        ('taskology-serve', '--help', '--model_config_file'),
        ('taskology-launch', '--helpfull', '--run_dir'),
        ('taskology-evaluate', '--helpfull', '--run_dir'),
        ('taskology-build-dataset', '--helpfull', '--dataset'),
        ('taskology-export-scannet', '--helpfull', '--manual_dir'),
    ],
)
def test_console_scripts_run_from_their_entry_points(script, flag, expected, tmp_path):
  # From an unrelated directory: the scripts must not depend on the checkout being the cwd.
  proc = subprocess.run(
      [_script(script), flag], capture_output=True, text=True, timeout=240, cwd=tmp_path
  )
  out = proc.stdout + proc.stderr
  assert expected in out, out[-3000:]
  assert 'Traceback' not in out, out[-3000:]


def test_no_sys_path_manipulation():
  offenders = []
  for pattern in ('taskology_tf/**/*.py', 'tools/*.py', 'tests/**/*.py'):
    for path in glob.glob(os.path.join(REPO_ROOT, pattern), recursive=True):
      if path == os.path.abspath(__file__):
        continue
      with open(path) as f:
        text = f.read()
      if 'sys.path.insert' in text or 'sys.path.append' in text:
        offenders.append(os.path.relpath(path, REPO_ROOT))
  assert not offenders, offenders


def test_keras_2_api_only():
  """tf.keras is Keras 3 under TF 2.20; its set_random_seed does not reseed tf_keras's seed
  generator, so once anything called tf_keras.utils.set_random_seed, a tf.keras seeding call left
  networks initialised by the earlier seed's stream (a suite-order bug this test now guards)."""
  offenders = []
  for pattern in ('taskology_tf/**/*.py', 'tools/*.py', 'tests/**/*.py'):
    for path in glob.glob(os.path.join(REPO_ROOT, pattern), recursive=True):
      if path == os.path.abspath(__file__):
        continue
      with open(path) as f:
        for number, line in enumerate(f, 1):
          code = line.split('#', 1)[0]
          if 'tf.keras.' in code or 'from tensorflow import keras' in code:
            offenders.append(f'{os.path.relpath(path, REPO_ROOT)}:{number}')
  assert not offenders, offenders
