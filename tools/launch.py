r"""Runs a whole experiment in distributed mode on one machine: a model server + one trainer per task.

  python tools/launch.py --gin_file=gin/experiments/synthetic/depth_normals_sim2real.gin \
      --run_dir=runs/sim2real_distributed

Layout under --run_dir:
  models.config            TF Serving ModelServerConfig (the real tensorflow_model_server
                           accepts it unchanged: --model_config_file=models.config)
  snapshots/<task>/<step>/ SavedModel snapshots each trainer exports (TF Serving layout)
  <task>/                  each trainer's checkpoints, TensorBoard logs, eval_results.json
  logs/<process>.log       one log per process

Ctrl-C stops every process cleanly. The exit code is non-zero if any trainer fails. Re-running
the same command resumes every trainer from its last checkpoint.
"""

import os
import re
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags

from taskology_tf import files
from taskology_tf.training import distributed
from taskology_tf.training import experiment as experiment_lib
from taskology_tf.training import frozen as frozen_lib
from taskology_tf.training import point_cloud_experiment
import taskology_tf_tools
from taskology_tf_tools import GIN_SEARCH_DIRS

flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s) of the experiment.')
flags.DEFINE_multi_string('gin_bindings', [], 'Bindings applied to every trainer.')
flags.DEFINE_string('run_dir', None, 'Run directory.')
flags.DEFINE_multi_string('tasks', [], 'Tasks to launch (default: every task of the experiment).')
flags.DEFINE_integer('port', 0, 'Model server port (0: pick a free one).')
flags.DEFINE_string('host', '127.0.0.1', 'Model server bind address.')
flags.DEFINE_float('poll_seconds', 1.0, 'Model server --file_system_poll_wait_seconds.')
flags.DEFINE_integer(
    'num_versions',
    None,
    'Versions the server keeps loaded per model '
    '(latest{num_versions}). Default: 1, or DistributedConfig.keep_snapshots '
    'when DistributedConfig.pin_versions asks for older versions by number.',
)
flags.DEFINE_float('server_start_timeout', 120.0, 'Seconds to wait for the server to listen.')
flags.mark_flag_as_required('run_dir')
FLAGS = flags.FLAGS


def experiment_serving_plan(gin_files, gin_bindings):
  """Reads (task names, versions to keep loaded per model, {frozen task: (Task, frozen_from)})
  from the experiment's gin config."""
  experiment_lib.parse_gin(gin_files, gin_bindings, search_dirs=GIN_SEARCH_DIRS)
  experiment = point_cloud_experiment.experiment_from_gin()
  frozen = {
      n: (experiment.config(n).task, experiment.config(n).frozen_from)
      for n in experiment.frozen_task_names
  }
  return (
      experiment.task_names,
      distributed.versions_to_keep_loaded(distributed.DistributedConfig()),
      frozen,
  )


class ProcessGroup:
  """Child processes with a log file each; terminates them all on exit."""

  def __init__(self, log_dir):
    self.log_dir = log_dir
    self.procs = {}
    os.makedirs(log_dir, exist_ok=True)

  def start(self, name, cmd):
    log_path = os.path.join(self.log_dir, f'{name}.log')
    log = open(log_path, 'a')  # pylint: disable=consider-using-with
    # Own process group: Ctrl-C reaches the launcher, which then stops children in order.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    self.procs[name] = (proc, log, log_path)
    print(f'started {name} (pid {proc.pid}), log: {log_path}', flush=True)
    return proc

  def stop_all(self, grace=20.0):
    for proc, _, _ in self.procs.values():
      if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for name, (proc, log, _) in self.procs.items():
      try:
        proc.wait(max(deadline - time.monotonic(), 0.1))
      except subprocess.TimeoutExpired:
        print(f'{name} did not stop in {grace:.0f} s; killing it', flush=True)
        proc.kill()
        proc.wait()
      log.close()


def _wait_for_server(proc, log_path, timeout):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise RuntimeError(f'model server exited with {proc.returncode}; see {log_path}')
    with open(log_path) as f:
      match = re.search(r'Running ModelServer at [^\s:]+:(\d+)', f.read())
    if match:
      return int(match.group(1))
    time.sleep(0.5)
  raise RuntimeError(
      f'model server did not start listening within {timeout:.0f} s; see ' f'{log_path}'
  )


def _last_progress(log_path):
  try:
    with open(log_path) as f:
      lines = [l for l in f.read().splitlines() if ' steps/s ' in l]
  except OSError:
    return ''
  return lines[-1].split('] ', 1)[-1] if lines else ''


def main(argv):
  del argv
  if not FLAGS.gin_file:
    raise app.UsageError('--gin_file is required')
  run_dir = os.path.abspath(FLAGS.run_dir)
  experiment_tasks, num_versions, frozen = experiment_serving_plan(
      FLAGS.gin_file, FLAGS.gin_bindings
  )
  tasks = FLAGS.tasks or experiment_tasks
  if FLAGS.num_versions is not None:
    if FLAGS.num_versions < 1:
      raise app.UsageError(f'--num_versions must be >= 1, got {FLAGS.num_versions}')
    num_versions = FLAGS.num_versions
  snapshot_root = os.path.join(run_dir, 'snapshots')
  os.makedirs(snapshot_root, exist_ok=True)
  for task in tasks:
    os.makedirs(os.path.join(snapshot_root, task), exist_ok=True)
  config_path = os.path.join(run_dir, 'models.config')
  files.write_text_atomic(
      config_path, distributed.models_config_text(snapshot_root, tasks, num_versions)
  )
  # Frozen tasks (TaskConfig.frozen_from) get no trainer: exported once (an existing version is
  # kept), then served like any peer.
  for task in [t for t in tasks if t in frozen]:
    try:
      path = frozen_lib.export_frozen_snapshot(frozen[task][0], frozen[task][1], snapshot_root)
    except frozen_lib.FrozenLoadError as e:
      print(f'error: {e}', file=sys.stderr, flush=True)
      return 2
    print(f'frozen task {task}: serving {path}', flush=True)
  trained = [t for t in tasks if t not in frozen]

  group = ProcessGroup(os.path.join(run_dir, 'logs'))
  interrupted = False

  def on_sigint(signum, frame):
    del signum, frame
    nonlocal interrupted
    interrupted = True

  signal.signal(signal.SIGINT, on_sigint)
  signal.signal(signal.SIGTERM, on_sigint)

  failed = []
  try:
    server = group.start(
        'model_server',
        [
            sys.executable,
            '-m',
            'taskology_tf_tools.serve',
            f'--port={FLAGS.port}',
            f'--host={FLAGS.host}',
            f'--model_config_file={config_path}',
            f'--file_system_poll_wait_seconds={FLAGS.poll_seconds}',
        ],
    )
    port = _wait_for_server(server, group.procs['model_server'][2], FLAGS.server_start_timeout)
    address = f'{FLAGS.host}:{port}'
    print(f'model server at {address} serving {tasks} from {snapshot_root}', flush=True)
    trainers = {}
    for task in trained:
      cmd = [
          sys.executable,
          '-m',
          'taskology_tf_tools.train',
          f'--run_dir={os.path.join(run_dir, task)}',
          f'--task={task}',
      ]
      cmd += [f'--gin_file={g}' for g in FLAGS.gin_file]
      cmd += [f'--gin_bindings={b}' for b in FLAGS.gin_bindings]
      cmd += [
          f"--gin_bindings=DistributedConfig.server='{address}'",
          f"--gin_bindings=DistributedConfig.snapshot_root='{snapshot_root}'",
      ]
      trainers[task] = group.start(f'trainer_{task}', cmd)
    print(f'TensorBoard: tensorboard --logdir={run_dir}', flush=True)
    last_report = 0.0
    while not interrupted:
      running = [t for t, p in trainers.items() if p.poll() is None]
      failed = [t for t, p in trainers.items() if p.poll() not in (None, 0)]
      if failed or not running:
        break
      if server.poll() is not None:
        print(
            f'model server exited with {server.returncode}; trainers keep training without '
            'consistency. Restarting it.',
            flush=True,
        )
        server = group.start(
            'model_server',
            [
                sys.executable,
                '-m',
                'taskology_tf_tools.serve',
                f'--port={port}',
                f'--host={FLAGS.host}',
                f'--model_config_file={config_path}',
                f'--file_system_poll_wait_seconds={FLAGS.poll_seconds}',
            ],
        )
      if time.monotonic() - last_report > 15:
        last_report = time.monotonic()
        for t in running:
          print(f'  [{t}] {_last_progress(group.procs["trainer_" + t][2])}', flush=True)
      time.sleep(1.0)
  finally:
    group.stop_all()
  if interrupted:
    print('interrupted; every process stopped. Re-run the same command to resume.', flush=True)
    return 130
  if failed:
    for t in failed:
      print(
          f'trainer {t} failed (exit {trainers[t].returncode}); see '
          f'{group.procs["trainer_" + t][2]}',
          flush=True,
      )
    return 1
  print(
      f'all trainers finished. Results: {run_dir}/<task>/eval_results.json; '
      f'TensorBoard: tensorboard --logdir={run_dir}',
      flush=True,
  )
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
