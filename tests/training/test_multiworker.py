"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1: each reads a disjoint shard of the
dedicated and mediator data, and both end with identical weights.

Each worker is a subprocess with its own TF_CONFIG (taskology_tf/training/local_cluster.py).
"""

import json
import os

import numpy as np
import pytest

from taskology_tf.training.local_cluster import PROBE_WORKER
from taskology_tf.training.local_cluster import run_local_cluster
from tests.conftest import REPO_ROOT
from tests.conftest import TINY_HEIGHT
from tests.conftest import TINY_WIDTH


@pytest.mark.timeout(960)
def test_workers_read_disjoint_shards_and_agree(tiny_world, tmp_path):
  def args(i, attempt):
    return dict(
        data_dir=tiny_world,
        out=str(tmp_path / f'try{attempt}_worker{i}'),
        run_dir=str(tmp_path / f'try{attempt}_run'),
        height=TINY_HEIGHT,
        width=TINY_WIDTH,
        base_filters=4,
        levels=2,
        batch_size=2,
        steps=4,
        checkpoint_every=2,
        schedule='alternate',
    )

  run = run_local_cluster(PROBE_WORKER, args, cwd=REPO_ROOT, timeout_seconds=300)
  assert run.ok, run.report()
  attempt = run.attempt
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
