"""The full-scale KITTI raw gin files: published settings, and 2 steps on the KITTI fixture.

The fixture (tests/datasets/fixtures.py, built once per session by the real builder) is in the
KITTI raw layout; gin/tests/tiny.gin plus a 16x48 size and 2-clip batches make the runs tiny.
The tiny overrides also shrink the DfVitW networks' widths (filters_scale 1/8), yet a compiled
run still costs about a minute of CPU (XLA compiling both networks, forward and backward), an
uncompiled one about 20 s. So every file runs 2 steps, XLA-compiled for the two distinct graphs
(depth_motion.gin: joint gradients; staleness_5min.gin: stale copies refreshed by wall-clock
time), uncompiled for staleness_1min / staleness_20min (staleness_5min's graph with another
refresh constant) and staleness_0min (the live-peer graph the synthetic dfv_depth_motion.gin
smoke test compiles).
"""

import glob
import math
import os

import gin
import pytest

from tests.conftest import KITTI_HEIGHT
from tests.conftest import KITTI_WIDTH
from tests.conftest import REPO_ROOT

KITTI_FILES = sorted(glob.glob(os.path.join(REPO_ROOT, 'gin', 'experiments', 'kitti', '*.gin')))
STALENESS_MINUTES = {'staleness_0min.gin': 0, 'staleness_1min.gin': 1, 'staleness_5min.gin': 5,
                     'staleness_20min.gin': 20}  # fmt: skip
COMPILED = ('depth_motion.gin', 'staleness_5min.gin')


def _parse(gin_files, bindings=()):
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  experiment_lib.parse_gin(gin_files, bindings, search_dirs=[REPO_ROOT])
  return experiment_lib


def test_every_figure_5_file_is_there():
  names = {os.path.basename(p) for p in KITTI_FILES}
  assert names == {'depth_motion.gin', *STALENESS_MINUTES}


@pytest.mark.parametrize('gin_file', KITTI_FILES, ids=os.path.basename)
def test_full_scale_settings_are_the_published_recipe(gin_file):
  from taskology_tf.training import distributed  # pylint: disable=g-import-not-at-top

  try:
    experiment_lib = _parse([gin_file])
    experiment = experiment_lib.Experiment()
    config = distributed.DistributedConfig()
    q = gin.query_parameter
    for task_config, name in zip(experiment.tasks, ('depth', 'motion')):
      task = task_config.task
      assert (task.name, task.height, task.width, task.weight_reg) == (name, 128, 416, 0.01)
      assert task.filters_scale == 1.0  # The published widths.
      optimizer = task_config.optimizer()
      assert float(optimizer.learning_rate) == pytest.approx(1e-4)
      assert optimizer.global_clipnorm == 10.0 and optimizer.beta_1 == 0.9
    assert (q('DfvConsistency.rgb_weight'), q('DfvConsistency.ssim_weight')) == (0.85, 3.0)
    assert q('DfvConsistency.depth_consistency_weight') == 0.01
    assert q('DfvConsistency.rotation_cycle_weight') == 1e-3
    assert q('DfvConsistency.translation_cycle_weight') == 1e-2
    assert experiment.relation_weights == {
        'dfv_consistency': 1.0,
        'dfv_depth_smoothness': 0.01,
        'dfv_motion_smoothness': 1e-3,
    }
    assert experiment.mediator_batch_size == 4 and experiment.mediator_frames is None
    assert q('train/kitti_raw_clips.split') == 'train'
    assert q('test/kitti_raw_clips.split') == 'test'
    minutes = STALENESS_MINUTES.get(os.path.basename(gin_file))
    if minutes is None:  # depth_motion.gin: joint training in one process.
      assert experiment.peer_gradients and not experiment.peer_refresh_steps
      assert experiment.peer_refresh_seconds is None
    elif minutes == 0:  # Live peers in one process; an export and a refresh every step.
      assert not experiment.peer_gradients and experiment.peer_refresh_seconds is None
      assert experiment.peer_refresh_steps == 0
      assert (config.export_every, config.peer_refresh_steps) == (1, 1)
      assert config.export_every_seconds is None
    else:
      assert not experiment.peer_gradients and experiment.peer_refresh_steps == 0
      assert experiment.peer_refresh_seconds == 60.0 * minutes
      assert config.export_every_seconds == 60.0 * minutes
      assert config.peer_refresh_steps == 1 and not config.pin_versions
  finally:
    gin.clear_config()


@pytest.mark.timeout(600)
@pytest.mark.parametrize('gin_file', KITTI_FILES, ids=os.path.basename)
def test_runs_two_steps_on_the_kitti_fixture(gin_file, kitti_raw_tfds, tmp_path):
  name = os.path.basename(gin_file)
  compiled = name in COMPILED
  try:
    experiment_lib = _parse(
        [gin_file, 'gin/tests/tiny.gin'],
        [
            f"kitti_raw_clips.data_dir = '{kitti_raw_tfds}'",
            f'HEIGHT = {KITTI_HEIGHT}',
            f'WIDTH = {KITTI_WIDTH}',
            'Experiment.mediator_batch_size = 2',
            f'TaskConfig.jit_compile = {compiled}',
            # One checkpoint (at the end) and no image summaries: the synthetic smoke tests
            # cover both; each save of these networks costs seconds.
            'LoopConfig.checkpoint_every = 2',
            'LoopConfig.image_every = 0',
        ],
    )
    trainer = experiment_lib.Experiment().build_trainer(str(tmp_path))
    results = trainer.train()
  finally:
    gin.clear_config()
  assert trainer.jit_compile == compiled
  assert int(trainer.step.numpy()) == 2
  scalars = trainer.last_scalars
  for term in ('consistency', 'regularization/depth', 'regularization/motion'):
    assert any(k.startswith(term) for k in scalars), (term, sorted(scalars))
  assert all(math.isfinite(v) for v in scalars.values())
  # The Eigen test clips carry velodyne depth: the fixture's two test frames are scored.
  assert results['depth']['num_pixels'] > 0
  assert all(math.isfinite(v) for v in results['depth'].values())
  minutes = STALENESS_MINUTES.get(name)
  if minutes:
    # Stale in-process copies refreshed by wall-clock time, refreshed at the first step.
    stale = trainer.peer_source.sources[0]
    assert stale.refresh_seconds == 60.0 * minutes and stale.refresh_steps is None
    assert scalars['staleness_steps/depth'] in (0.0, 1.0)
    assert scalars['staleness_seconds/motion'] >= 0.0
  else:
    assert trainer.peer_source is None  # Live peers (joint, or stop-gradient at staleness 0).
