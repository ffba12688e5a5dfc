"""What the launch tests share: run tools/launch.py, read back what the run wrote.

tools/launch.py starts the model server and one trainer per task on loopback; every helper here
is bounded in time (the subprocess timeout), and a failed launch reports the tail of the
launcher's output and of every trainer's log, so a CI failure says which trainer broke.
"""

import json
import os
import subprocess
import sys
from typing import List, Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tests.conftest import REPO_ROOT


def launch(
    run_dir: str,
    gin_files: Sequence[str],
    bindings: Sequence[str] = (),
    flags: Sequence[str] = (),
    timeout: float = 800,
    check: bool = True,
) -> subprocess.CompletedProcess:
  """Runs tools/launch.py on `gin_files` + `bindings`; with `check`, asserts it exited 0."""
  cmd = [
      sys.executable,
      os.path.join(REPO_ROOT, 'tools', 'launch.py'),
      f'--run_dir={run_dir}',
      *[f'--gin_file={f}' for f in gin_files],
      '--poll_seconds=0.2',
      *flags,
      *[f'--gin_bindings={b}' for b in bindings],
  ]
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
  if check:
    assert result.returncode == 0, (
        result.stdout[-2000:] + result.stderr[-2000:] + trainer_logs(run_dir)
    )
  return result


def trainer_logs(run_dir: str, tail: int = 2500) -> str:
  """The last `tail` characters of each log under run_dir/logs, headed by its file name."""
  log_dir = os.path.join(run_dir, 'logs')
  text = ''
  for name in sorted(os.listdir(log_dir)) if os.path.isdir(log_dir) else []:
    with open(os.path.join(log_dir, name)) as f:
      text += f'--- {name}\n' + f.read()[-tail:]
  return text


def served_config(run_dir: str) -> model_server_config_pb2.ModelServerConfig:
  """The models.config the launcher gave the server (TF Serving's text format)."""
  with open(os.path.join(run_dir, 'models.config')) as f:
    return text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())


def served_models(run_dir: str) -> List[str]:
  """The sorted model names of the run's models.config."""
  return sorted(c.name for c in served_config(run_dir).model_config_list.config)


def snapshot_versions(run_dir: str, task: str) -> List[int]:
  """The sorted snapshot versions a trainer exported for `task`."""
  return sorted(int(v) for v in os.listdir(os.path.join(run_dir, 'snapshots', task)) if v.isdigit())


def eval_metrics(run_dir: str, task: str) -> dict:
  """`task`'s trainer's final evaluation: eval_results.json's 'metrics'."""
  with open(os.path.join(run_dir, task, 'eval_results.json')) as f:
    return json.load(f)['metrics']
