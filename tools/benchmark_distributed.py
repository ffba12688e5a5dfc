r"""Distributed-mode overheads, measured side by side in one run (ratios, not absolute times).

(a) Fraction of a depth trainer's step time spent waiting for its peer (normals):
    gRPC peer (model server in its own process, with prefetch) vs in-process peer (a frozen copy
    evaluated in the trainer's process).
(b) Bytes on the wire per step (Predict request + response) vs the bytes of the peer's weights
    (what shipping the model instead of its predictions would cost).

  python tools/benchmark_distributed.py --steps=60 --output=runs/bench_distributed.json

Uses the synthetic Table 3 experiment (gin/experiments/synthetic/depth_normals_sim2real.gin) and
its data (build it first: `make demo` does, or tools/build_dataset.py).
"""

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

from absl import flags

from taskology_tf import files
import taskology_tf_tools
from taskology_tf_tools import GIN_SEARCH_DIRS

flags.DEFINE_string(
    'gin_file',
    'gin/experiments/synthetic/depth_normals_sim2real.gin',
    'Experiment (needs tasks depth and normals).',
)
flags.DEFINE_multi_string('gin_bindings', [], 'Extra bindings.')
flags.DEFINE_integer('steps', 60, 'Measured steps per mode (after 5 warm-up steps).')
flags.DEFINE_string('output', None, 'Write results as JSON here.')
FLAGS = flags.FLAGS


class _StepTimer:
  """A trainer hook recording each step's wall time and the peer wait it logged."""

  def __init__(self):
    self.times, self.waits, self.last = [], [], None
    self.bytes = []

  def __call__(self, step, trainer):
    now = time.monotonic()
    if self.last is not None:
      self.times.append(now - self.last)
      scalars = getattr(trainer, 'last_scalars', {})
      self.waits.append(scalars.get('peer_wait_seconds', 0.0))
      self.bytes.append(
          scalars.get('peer_bytes_sent', 0.0) + scalars.get('peer_bytes_received', 0.0)
      )
    self.last = now


def _measure(build, warmup=5):
  """Builds a trainer via build(hooks), runs warmup + steps, returns per-step stats."""
  timer = _StepTimer()
  trainer = build([timer])
  trainer.loop.num_steps = warmup + FLAGS.steps
  trainer.loop.eval_every = 0
  trainer.evaluation = None
  trainer.train()
  times, waits = timer.times[warmup:], timer.waits[warmup:]
  return trainer, {
      'step_seconds_mean': sum(times) / len(times),
      'peer_wait_seconds_mean': sum(waits) / len(waits),
      'wait_fraction': sum(waits) / sum(times),
      'bytes_per_step': ((timer.bytes[-1] - timer.bytes[warmup - 1]) / (len(timer.bytes) - warmup))
      if timer.bytes
      else 0.0,
  }


def main(argv):
  del argv
  import gin
  import tensorflow as tf

  from taskology_tf.serving.export import export_snapshot
  from taskology_tf.training import distributed
  from taskology_tf.training import experiment as experiment_lib
  from taskology_tf.training.peers import StaleCopyPeers

  work = tempfile.mkdtemp(prefix='bench_distributed_')
  bindings = list(FLAGS.gin_bindings) + [
      'LoopConfig.checkpoint_every = 100000',
      'LoopConfig.image_every = 0',
  ]

  def experiment():
    gin.clear_config()
    experiment_lib.parse_gin([FLAGS.gin_file], bindings, search_dirs=GIN_SEARCH_DIRS)
    return experiment_lib.Experiment()

  exp = experiment()
  normals_task = exp.config('normals').task
  normals_model = normals_task.build_network()
  snapshot_root = os.path.join(work, 'snapshots')
  export_snapshot(
      normals_model, normals_task.serving_function(normals_model), snapshot_root, 'normals', 0
  )
  weight_bytes = sum(int(tf.size(v)) * v.dtype.size for v in normals_model.weights)

  server = subprocess.Popen(
      [
          sys.executable,
          '-m',
          'taskology_tf_tools.serve',
          '--port=0',
          '--model_name=normals',
          f'--model_base_path={snapshot_root}/normals',
      ],
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )
  try:
    port = None
    deadline = time.monotonic() + 120
    while port is None and time.monotonic() < deadline:
      line = server.stdout.readline()
      match = re.search(r'Running ModelServer at [^\s:]+:(\d+)', line)
      port = int(match.group(1)) if match else None
    if port is None:
      raise RuntimeError('model server did not start')

    # (a, b) gRPC peer with prefetch.
    def build_grpc(hooks):
      trainer = distributed.build_task_trainer(
          experiment(),
          'depth',
          os.path.join(work, 'grpc'),
          distributed.DistributedConfig(
              server=f'127.0.0.1:{port}',
              snapshot_root=snapshot_root,
              export_every=100000,
              peer_timeout_seconds=60,
          ),
      )
      # Time steps before the exporter runs (its final export is not a step).
      trainer.hooks[:0] = hooks
      return trainer

    _, grpc_stats = _measure(build_grpc)

    # (a) In-process peer: a frozen copy of normals evaluated in this process, timed the same
    # way (the trainer's peer_wait_seconds is the time spent in the peer source).
    class TimedCopies(StaleCopyPeers):

      def predictions(self, step, mediator):
        start = time.monotonic()
        out, info = super().predictions(step, mediator)
        for v in out.values():
          for t in v.values():
            t.numpy()  # Make the evaluation happen now, inside the timed region.
        info['peer_wait_seconds'] = time.monotonic() - start
        return out, info

    def build_local(hooks):
      exp_local = experiment()
      exp_local.peer_gradients = False
      return exp_local.build_trainer(
          os.path.join(work, 'local'),
          live=['depth'],
          peer_source=TimedCopies([normals_task], {'normals': normals_model}, 10**9),
          hooks=hooks,
      )

    _, local_stats = _measure(build_local)
  finally:
    server.terminate()
    server.wait(30)

  results = {
      'grpc_prefetch': grpc_stats,
      'in_process': local_stats,
      'peer_weight_bytes': weight_bytes,
      'wire_bytes_per_step_over_weight_bytes': grpc_stats['bytes_per_step'] / weight_bytes,
      'grpc_step_time_over_in_process': (
          grpc_stats['step_seconds_mean'] / local_stats['step_seconds_mean']
      ),
      'steps': FLAGS.steps,
      'command': 'python tools/benchmark_distributed.py ' + shlex.join(sys.argv[1:]),
  }
  print(json.dumps(results, indent=2))
  if FLAGS.output:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    files.write_json_atomic(FLAGS.output, results, indent=2)
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
