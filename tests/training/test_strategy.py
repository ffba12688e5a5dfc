"""A task's tf.distribute strategy: MirroredStrategy over 2 logical CPUs == the default strategy,
and a snapshot of the mirrored model serves what it computes.

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
    from taskology_tf.tasks.depth import DepthTask
    from taskology_tf.training.experiment import Experiment, TaskConfig
    from taskology_tf.training.trainer import LoopConfig

    def run(strategy, run_dir):
      config = TaskConfig(task=DepthTask(H, W, base_filters=4, levels=2),
                          optimizer=lambda: keras.optimizers.SGD(0.1), dedicated_clips=_clips,
                          batch_size=4, strategy=strategy)
      exp = Experiment(tasks=[config], loop=LoopConfig(num_steps=2, log_every=1,
                                                        summary_every=1, image_every=0))
      trainer = exp.build_trainer(run_dir, live=['depth'])
      trainer.train()
      return (trainer.strategy.num_replicas_in_sync,
              [w.numpy() for w in trainer.models['depth'].weights], trainer)

    n1, default, _ = run(None, sys.argv[1] + '/default')
    n2, mirrored, trainer = run(lambda: tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']),
                                sys.argv[1] + '/mirrored')
    assert (n1, n2) == (1, 2), (n1, n2)
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
