"""A task's tf.distribute strategy: MirroredStrategy over 2 logical CPUs == the default strategy.

The replicas of a step consume exactly the global batch, each example once, peers answer for
exactly those examples (aligned per replica), the weights match the default strategy's, and a
snapshot of the mirrored model serves what it computes.

Runs in a subprocess because logical devices must be configured before TF initialises.
"""

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tf_keras as keras
    from tests.training.test_trainer import _clips, H, W
    from taskology_tf.consistency.base import Relation
    from taskology_tf.inputs.pipelines import MixingSchedule
    from taskology_tf.tasks.depth import DepthTask
    from taskology_tf.tasks.normals import NormalsTask
    from taskology_tf.training.experiment import Experiment, TaskConfig
    from taskology_tf.training.peers import PeerSource
    from taskology_tf.training.trainer import LoopConfig

    class EchoPeers(PeerSource):
      # A 'normals' peer that answers each mediator example with its own image, so a relation
      # can check that the peer rows a replica gets belong to the examples it consumes.
      task_names = ('normals',)
      asked = []
      def predictions(self, step, mediator):
        self.asked.append(int(mediator['image'].shape[0]))
        image = tf.cast(mediator['image'], tf.float32) / 255.0
        return {'normals': {'normals': image}}, {}

    class AlignmentProbe(Relation):
      name = 'probe'
      tasks = ('depth', 'normals')
      def __call__(self, predictions, batch):
        misalignment = tf.reduce_max(tf.abs(predictions['normals']['normals'] - batch['image']))
        return 0.0 * tf.reduce_mean(predictions['depth']['depth']) + misalignment, {}

    def experiment(strategy):
      config = TaskConfig(task=DepthTask(H, W, base_filters=4, levels=2),
                          optimizer=lambda: keras.optimizers.SGD(0.1), dedicated_clips=_clips,
                          batch_size=4, strategy=strategy)
      normals = TaskConfig(task=NormalsTask(H, W, base_filters=4, levels=2),
                           optimizer=lambda: keras.optimizers.SGD(0.1))
      return Experiment(tasks=[config, normals], relations=[AlignmentProbe()],
                        mediator_clips=lambda: _clips(seed=1), mediator_batch_size=4,
                        mediator_frames=(1,), peer_gradients=False,
                        schedule=MixingSchedule('joint'),
                        loop=LoopConfig(num_steps=2, log_every=1, summary_every=1, image_every=0))

    def run(strategy, run_dir):
      trainer = experiment(strategy).build_trainer(run_dir, live=['depth'],
                                                   peer_source=EchoPeers())
      # What the replicas of the first step consume: the trainer's own distributed iterators.
      first = {name: [r.numpy() for r in trainer.strategy.experimental_local_results(
                  next(it)['image'])] for name, it in trainer._iterators().items()}
      trainer.train()
      return (trainer.strategy.num_replicas_in_sync,
              [w.numpy() for w in trainer.models['depth'].weights], trainer, first)

    def rows(images):  # Each example's bytes, sorted: the multiset of examples a step consumes.
      return sorted(x.tobytes() for part in images for x in part)

    n1, default, t1, first1 = run(None, sys.argv[1] + '/default')
    n2, mirrored, trainer, first2 = run(
        lambda: tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']), sys.argv[1] + '/mirrored')
    assert (n1, n2) == (1, 2), (n1, n2)
    for name in ('depth', 'mediator'):
      # Two replicas, each with its own per-replica batch of 2 ...
      assert [p.shape[0] for p in first2[name]] == [2, 2], (name, [p.shape for p in first2[name]])
      # ... that together are exactly the default strategy's global batch, each example once.
      assert rows(first2[name]) == rows(first1[name]), name
      assert len(set(rows(first2[name]))) == 4, name
    # The peer was asked about the worker's 4 mediator examples at once, and every replica's
    # relation saw the peer rows of its own examples (misalignment 0 at the last step).
    assert EchoPeers.asked and set(EchoPeers.asked) == {4}, EchoPeers.asked
    for t in (t1, trainer):
      assert t.last_scalars['consistency/probe/depth'] < 1e-6, t.last_scalars  # else ~0.5
    worst = max(float(np.abs(a - b).max()) for a, b in zip(default, mirrored))
    print('max weight difference', worst)
    assert worst < 1e-4, worst

    # A snapshot of the mirrored model (as a distributed trainer exports it) serves what the
    # live model computes.
    from taskology_tf.serving.export import SnapshotWriter
    task, model = trainer.setups['depth'].task, trainer.models['depth']
    path = SnapshotWriter(model, task.serving_function(model), sys.argv[1] + '/snapshots',
                          'depth').write(2)
    image = np.random.RandomState(0).randint(0, 256, [2, H, W, 3]).astype(np.uint8)
    served = tf.saved_model.load(path).signatures['serving_default'](image=image)
    live = task.serving_function(model)(tf.constant(image))
    np.testing.assert_allclose(served['depth'].numpy(), live['depth'].numpy(), rtol=1e-5)
    assert int(served['snapshot_version']) == 2
    print('OK')
""")


@pytest.mark.timeout(300)
def test_mirrored_strategy_matches_default(tmp_path):
  # Each of the 2 replicas takes half of the global batch of 4 and scales its loss by 1/2; the
  # summed gradients equal the full-batch gradient (all pixels valid, so the per-replica means
  # average to the global mean), so 2 SGD steps land on the same weights.
  result = subprocess.run(
      [sys.executable, '-c', SCRIPT, str(tmp_path), REPO_ROOT],
      capture_output=True,
      text=True,
      timeout=280,
      cwd=REPO_ROOT,
  )
  assert result.returncode == 0 and 'OK' in result.stdout, result.stdout + result.stderr[-4000:]
