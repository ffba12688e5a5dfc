"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1: each reads a disjoint shard of the
dedicated and mediator data, and both end with identical weights.

Each worker is a subprocess with its own TF_CONFIG. A cluster's ports must be known before its
workers start, so the test picks two free ports and, should another process take one first
(the worker then fails to bind), starts again on new ports, at most three times.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.conftest import TINY_HEIGHT
from tests.conftest import TINY_WIDTH

WORKER = textwrap.dedent("""
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

    data_dir, out, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    read = {'dedicated': [], 'mediator': []}

    def source(split, stream):
      # The real clip source (read-time sharding by input context), recording what it yields.
      def clips(input_context=None):
        ds = synthetic_world_clips(domain='sim', split=split, height=h, width=w,
                                   data_dir=data_dir, input_context=input_context)
        def record(seed):
          read[stream].append(int(seed))
          return seed
        return ds.map(lambda x: {**x, 'scene_seed': tf.reshape(
            tf.py_function(record, [x['scene_seed']], tf.int64), [])})
      return clips

    config = TaskConfig(task=DepthTask(h, w, base_filters=4, levels=2),
                        optimizer=lambda: keras.optimizers.Adam(1e-3),
                        dedicated_clips=source('train[:50%]', 'dedicated'), batch_size=2,
                        dedicated_frames=(1,), strategy=lambda: strategy)
    experiment = Experiment(tasks=[config], relations=[DepthSmoothness()],
                            mediator_clips=source('train[50%:]', 'mediator'),
                            mediator_batch_size=2, mediator_frames=(1,),
                            schedule=MixingSchedule('alternate'),
                            loop=LoopConfig(num_steps=4, log_every=1, summary_every=2,
                                            image_every=0, checkpoint_every=2))
    trainer = experiment.build_trainer(sys.argv[5], live=['depth'])
    trainer.train()
    np.savez(out + '.npz', *[v.numpy() for v in trainer.models['depth'].weights])
    json.dump({'replicas': trainer.strategy.num_replicas_in_sync, 'chief': trainer.is_chief,
               'run_dir': trainer.run_dir,
               'read': {k: sorted(set(v)) for k, v in read.items()}}, open(out + '.json', 'w'))
    print('OK')
""")


def _two_free_ports():
  socks = [socket.socket() for _ in range(2)]
  for s in socks:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _run_cluster(tiny_world, tmp_path, attempt):
  ports = _two_free_ports()
  cluster = {'worker': [f'127.0.0.1:{p}' for p in ports]}
  procs = []
  for i in range(2):
    env = dict(
        os.environ,
        TF_CONFIG=json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': i}}),
    )
    out = str(tmp_path / f'try{attempt}_worker{i}')
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                '-c',
                WORKER,
                tiny_world,
                out,
                str(TINY_HEIGHT),
                str(TINY_WIDTH),
                str(tmp_path / f'try{attempt}_run'),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO_ROOT,
            env=env,
        )
    )
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=300)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  return [p.returncode for p in procs], logs


@pytest.mark.timeout(960)
def test_workers_read_disjoint_shards_and_agree(tiny_world, tmp_path):
  for attempt in range(3):
    codes, logs = _run_cluster(tiny_world, tmp_path, attempt)
    if codes == [0, 0] or not any('in use' in log.lower() for log in logs):
      break
  assert codes == [0, 0], '\n\n'.join(log[-3000:] for log in logs)
  results = [json.load(open(tmp_path / f'try{attempt}_worker{i}.json')) for i in range(2)]
  assert [r['replicas'] for r in results] == [2, 2]
  assert [r['chief'] for r in results] == [True, False]
  # The non-chief keeps its own checkpoints under run_dir/worker_1.
  assert results[1]['run_dir'].endswith('worker_1')
  assert os.path.isdir(os.path.join(results[1]['run_dir'], 'checkpoints'))
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from taskology_tf.training.experiment import synthetic_world_clips  # pylint: disable=g-import-not-at-top

  for stream, split in (('dedicated', 'train[:50%]'), ('mediator', 'train[50%:]')):
    shards = [set(r['read'][stream]) for r in results]
    everything = {
        int(x['scene_seed'])
        for x in tfds.as_numpy(
            synthetic_world_clips(
                domain='sim',
                split=split,
                height=TINY_HEIGHT,
                width=TINY_WIDTH,
                data_dir=tiny_world,
            )
        )
    }
    # Each worker read only its own shard: disjoint, non-empty, together the whole split.
    assert shards[0] and shards[1], (stream, shards)
    assert not shards[0] & shards[1], (stream, shards)
    assert shards[0] | shards[1] == everything, (stream, shards, everything)
  # Gradients are all-reduced, so both workers hold the same weights after every step.
  a = np.load(tmp_path / f'try{attempt}_worker0.npz')
  b = np.load(tmp_path / f'try{attempt}_worker1.npz')
  assert len(a.files) == len(b.files) > 0
  for k in a.files:
    np.testing.assert_array_equal(a[k], b[k])
