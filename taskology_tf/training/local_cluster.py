"""A MultiWorkerMirroredStrategy cluster of worker processes on 127.0.0.1, for tests and benchmarks.

`run_local_cluster` starts `num_workers` Python processes, each with its own TF_CONFIG naming
the same loopback cluster, and waits for all of them. A cluster's ports must be known before its
workers start, so it picks free ports and, should another process take one first (the worker then
fails to bind), starts again on new ports, at most `attempts` times.

`PROBE_WORKER` is the worker both the multi-worker test and `tools/benchmark_step.py --mode=decode`
run: one depth task with a smoothness relation, whose dedicated and mediator clip sources record
the scene seed of every clip their pipelines decode. It is passed as `python -c` source, so it runs
against whatever `taskology_tf` its working directory holds (the benchmark compares checkouts).
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap
from typing import List, Optional, Sequence

PROBE_WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # Before any other op.
    import tf_keras as keras
    from taskology_tf.consistency.smoothness import DepthSmoothness
    from taskology_tf.inputs.pipelines import MixingSchedule
    from taskology_tf.tasks.depth import DepthTask
    from taskology_tf.training.experiment import Experiment, TaskConfig, synthetic_world_clips
    from taskology_tf.training.trainer import LoopConfig

    args = json.loads(sys.argv[1])
    h, w = args['height'], args['width']
    read = {'dedicated': [], 'mediator': []}

    def source(split, stream):
      # The real clip source (read-time sharding by input context), recording what it decodes.
      def clips(input_context=None):
        # Older checkouts' sources take no input context (the benchmark runs them too).
        kwargs = {} if input_context is None else {'input_context': input_context}
        ds = synthetic_world_clips(domain='sim', split=split, height=h, width=w,
                                   data_dir=args['data_dir'], **kwargs)
        def record(seed):
          read[stream].append(int(seed))
          return seed
        return ds.map(lambda x: {**x, 'scene_seed': tf.reshape(
            tf.py_function(record, [x['scene_seed']], tf.int64), [])})
      return clips

    config = TaskConfig(task=DepthTask(h, w, base_filters=args['base_filters'],
                                       levels=args['levels']),
                        optimizer=lambda: keras.optimizers.Adam(1e-3),
                        dedicated_clips=source('train[:50%]', 'dedicated'),
                        batch_size=args['batch_size'], dedicated_frames=(1,),
                        strategy=lambda: strategy)
    experiment = Experiment(tasks=[config], relations=[DepthSmoothness()],
                            mediator_clips=source('train[50%:]', 'mediator'),
                            mediator_batch_size=args['batch_size'], mediator_frames=(1,),
                            schedule=MixingSchedule(args['schedule']),
                            loop=LoopConfig(num_steps=args['steps'], log_every=1,
                                            summary_every=2, image_every=0,
                                            checkpoint_every=args['checkpoint_every']))
    trainer = experiment.build_trainer(args['run_dir'], live=['depth'])
    trainer.train()
    np.savez(args['out'] + '.npz', *[v.numpy() for v in trainer.models['depth'].weights])
    with open(args['out'] + '.json', 'w') as f:
      json.dump({'replicas': trainer.strategy.num_replicas_in_sync, 'chief': trainer.is_chief,
                 'run_dir': trainer.run_dir, 'read': read}, f)
    print('OK')
""")


@dataclasses.dataclass
class ClusterRun:
  """What a cluster run left: each worker's exit code and output, and the attempt that counted."""

  returncodes: List[int]
  logs: List[str]
  attempt: int

  @property
  def ok(self) -> bool:
    return all(code == 0 for code in self.returncodes)

  def report(self, tail: int = 3000) -> str:
    return '\n\n'.join(
        f'--- worker {i} (exit {c}) ---\n{log[-tail:]}'
        for i, (c, log) in enumerate(zip(self.returncodes, self.logs))
    )


def free_ports(n: int) -> List[int]:
  """n distinct loopback ports free at the time of the call (a race a caller must tolerate)."""
  socks = [socket.socket() for _ in range(n)]
  try:
    for s in socks:
      s.bind(('127.0.0.1', 0))
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def run_local_cluster(
    script: str,
    worker_args,
    num_workers: int = 2,
    cwd: Optional[str] = None,
    timeout_seconds: float = 300.0,
    attempts: int = 3,
    extra_argv: Sequence[str] = (),
) -> ClusterRun:
  """Runs `python -c script ARGS` once per worker on a loopback cluster.

  Args:
    script: Python source each worker runs.
    worker_args: a callable (worker index, attempt) -> JSON-serialisable argument passed as the
      worker's first argv entry (so each attempt can write to fresh paths).
    num_workers: cluster size.
    cwd: the workers' working directory (whose `taskology_tf` a `-c` script imports first).
    timeout_seconds: per-worker bound; on expiry every worker is killed and TimeoutExpired raised.
    attempts: how many times to start over when a port was taken before a worker bound it.
    extra_argv: further argv entries after the JSON argument.
  """
  if num_workers < 1:
    raise ValueError(f'num_workers must be >= 1, got {num_workers}')
  for attempt in range(attempts):
    cluster = {'worker': [f'127.0.0.1:{p}' for p in free_ports(num_workers)]}
    procs = []
    for i in range(num_workers):
      env = dict(
          os.environ,
          TF_CONFIG=json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': i}}),
      )
      argv = [sys.executable, '-c', script, json.dumps(worker_args(i, attempt)), *extra_argv]
      procs.append(
          subprocess.Popen(
              argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env
          )
      )
    logs = []
    try:
      for p in procs:
        logs.append(p.communicate(timeout=timeout_seconds)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
    run = ClusterRun([p.returncode for p in procs], logs, attempt)
    if run.ok or not any('in use' in log.lower() for log in logs):
      return run
  return run
