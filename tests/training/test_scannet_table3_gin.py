"""The full-scale Table 3 gin files: their settings, and 2 steps each on ScanNet + SceneNet fixtures.

The fixtures are written in the raw layouts by tests/datasets/scannet_fixture.py (`.sens`
files) and tests/datasets/scenenet_fixtures.py (renders + trajectory protobuf) and built once
per module by the real builders at 24x32. gin/tests/tiny_table3_scannet.gin shrinks the
networks (1/8 widths), the batches (2) and the warm-up (0, so consistency runs in the 2 steps).
Both train uncompiled, to keep the suite's time: the compiled DfVitW step has its own test.
"""

import math
import os

import gin
import pytest

from tests.conftest import REPO_ROOT

SCANNET_DIR = os.path.join(REPO_ROOT, 'gin', 'experiments', 'scannet')
FILES = {
    name: os.path.join(SCANNET_DIR, f'table3_{name}.gin') for name in ('baseline', 'consistency')
}
H, W = 24, 32
# The ScanNet fixture's invalid-depth block (scannet_fixture.HOLE: rows 5-7, columns 10-13) in
# every frame, at the build size 24x32 (its native depth size): 3 x 4 = 12 pixels.
HOLE_PIXELS = 12


def _parse(gin_files, bindings=()):
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  experiment_lib.parse_gin(gin_files, bindings, search_dirs=[REPO_ROOT])
  return experiment_lib


def _valid_pixel_counts(scannet_dir, clips, max_depth):
  """Valid depth / normals pixels in the centre frames of the first ScanNet validation clips."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets import loader  # pylint: disable=g-import-not-at-top

  depth_count = normals_count = 0
  for clip in loader.load_scannet('validation', scannet_dir, H, W).take(clips):
    depth = clip['depth'].numpy()[1, ..., 0]
    normal_sq = np.sum(clip['normals'].numpy()[1] ** 2, axis=-1)
    valid = (depth > 0) & (depth < max_depth)
    depth_count += int(valid.sum())
    normals_count += int((valid & (normal_sq > 1e-6)).sum())
  return depth_count, normals_count


@pytest.fixture(scope='module')
def indoor_fixtures(tmp_path_factory):
  """(scannet_data_dir, scenenet_data_dir), both built at 24x32 from raw-layout fixtures."""
  from tests.datasets import scannet_fixture  # pylint: disable=g-import-not-at-top
  from tests.datasets import scenenet_fixtures  # pylint: disable=g-import-not-at-top

  scannet_dir, _ = scannet_fixture.build_scannet(
      str(tmp_path_factory.mktemp('scannet')), height=H, width=W
  )
  scenenet_dir, _, _, _ = scenenet_fixtures.build_scenenet(
      str(tmp_path_factory.mktemp('scenenet')), height=H, width=W
  )
  return scannet_dir, scenenet_dir


@pytest.mark.parametrize('name', sorted(FILES))
def test_full_scale_settings(name):
  from taskology_tf.tasks.dfv_depth import DfvDepthTask  # pylint: disable=g-import-not-at-top
  from taskology_tf.tasks.dfv_normals import DfvNormalsTask  # pylint: disable=g-import-not-at-top

  try:
    experiment_lib = _parse([FILES[name]], ['WARMUP_STEPS = 1234'])
    experiment = experiment_lib.Experiment()
    q = gin.query_parameter
    depth, normals = (c.task for c in experiment.tasks)
    assert isinstance(depth, DfvDepthTask) and isinstance(normals, DfvNormalsTask)
    for task_config, task_name in zip(experiment.tasks, ('depth', 'normals')):
      task = task_config.task
      assert (task.name, task.height, task.width) == (task_name, 240, 320)
      assert (task.filters_scale, task.weight_reg, task.max_depth) == (1.0, 0.01, 10.0)
      assert task_config.batch_size == 8 and tuple(task_config.dedicated_frames) == (1,)
      optimizer = task_config.optimizer()
      assert float(optimizer.learning_rate) == pytest.approx(1e-4)
      assert optimizer.global_clipnorm == 10.0
      assert task_config.dedicated_clips.__name__ == 'scenenet_clips'  # SceneNet train
    assert not depth.median_scaling
    assert q('scenenet_train/scenenet_clips.split') == 'train'
    # Scored on ScanNet validation (test only for the final numbers, EVAL_SPLIT = 'test').
    assert str(q('scannet_eval/scannet_clips.split')) == '%EVAL_SPLIT'
    assert q('EVAL_SPLIT/macro.value') == 'validation'
    # The clip sources build at the networks' size.
    for binding in ('scannet_clips.height', 'scenenet_clips.height'):
      assert str(q(binding)) == '%HEIGHT'
    for binding in ('scannet_clips.width', 'scenenet_clips.width'):
      assert str(q(binding)) == '%WIDTH'
    # The warm-up knob reaches the schedule.
    assert experiment.schedule.consistency_start_step == 1234
    assert experiment.schedule.mode == 'joint'
    assert experiment.evaluation_clips.__name__ == 'scannet_clips'
    if name == 'baseline':
      assert experiment.relations == [] and experiment.mediator_clips is None
    else:
      (relation,) = experiment.relations
      assert relation.name == 'depth_normals' and relation.tasks == ('depth', 'normals')
      assert experiment.relation_weights == {'depth_normals': 1.0}
      assert q('scannet_train/scannet_clips.split') == 'train'
      assert experiment.mediator_clips.__name__ == 'scannet_clips'
      assert experiment.peer_gradients and experiment.mediator_batch_size == 8
  finally:
    gin.clear_config()


@pytest.mark.timeout(600)
@pytest.mark.parametrize('name', sorted(FILES))
def test_runs_two_steps_on_the_fixtures(name, indoor_fixtures, tmp_path):
  scannet_dir, scenenet_dir = indoor_fixtures
  # Uncompiled: XLA of the DfVitW pair costs ~60 s here, and the compiled DfVitW step and the
  # compiled Eq. 6 have their own smoke tests; this one checks the files and the data wiring.
  compiled = False
  try:
    experiment_lib = _parse(
        [FILES[name], 'gin/tests/tiny_table3_scannet.gin'],
        [
            f"SCANNET_DATA_DIR = '{scannet_dir}'",
            f"SCENENET_DATA_DIR = '{scenenet_dir}'",
            f'TaskConfig.jit_compile = {compiled}',
        ],
    )
    trainer = experiment_lib.Experiment().build_trainer(str(tmp_path))
    results = trainer.train()
  finally:
    gin.clear_config()
  assert trainer.jit_compile == compiled
  assert int(trainer.step.numpy()) == 2
  scalars = trainer.last_scalars
  assert all(math.isfinite(v) for v in scalars.values()), scalars
  for term in ('regularization/depth', 'regularization/normals'):
    assert term in scalars, sorted(scalars)
  has_consistency = any(k.startswith('consistency') for k in scalars)
  assert has_consistency == (name == 'consistency'), sorted(scalars)
  # Scored on the centre frames of 2 ScanNet validation clips with holes skipped: depth counts
  # the pixels with 0 < d < 10 m (MAX_DEPTH), normals those with a non-zero gt normal too.
  depth_count, normals_count = _valid_pixel_counts(scannet_dir, clips=2, max_depth=10.0)
  assert depth_count <= 2 * (H * W - HOLE_PIXELS)  # The fixture's hole at least is dropped.
  assert results['depth']['num_pixels'] == depth_count
  assert results['normals']['num_pixels'] == normals_count
  for task in ('depth', 'normals'):
    assert all(math.isfinite(v) for v in results[task].values()), results[task]
