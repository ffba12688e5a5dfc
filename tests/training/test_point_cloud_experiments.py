"""The point-cloud (Table 2) gin experiments parse and run 2 XLA-compiled steps with
gin/tests/tiny.gin and gin/tests/tiny_point_clouds.gin, through the PointCloudExperiment root
(tests/training/test_gin_experiments.py builds `Experiment()`, which has no pillar pipeline).
One file per label fraction and kind would cost ~1 min each on this CPU; the consistency file
exercises everything the baseline does plus the relations and the mediator stream."""

import os

import gin
import pytest

from tests.conftest import REPO_ROOT

EXPERIMENTS = ['gin/experiments/synthetic/table2_labels5_consistency.gin']


@pytest.mark.timeout(600)
@pytest.mark.parametrize('gin_file', EXPERIMENTS)
def test_point_cloud_experiment_smoke(gin_file, tmp_path):
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import point_cloud_experiment  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  experiment_lib.parse_gin(
      [gin_file, 'gin/tests/tiny.gin', 'gin/tests/tiny_point_clouds.gin'],
      ['TaskConfig.jit_compile = True'],
      search_dirs=[REPO_ROOT],
  )
  try:
    trainer = point_cloud_experiment.PointCloudExperiment().build_trainer(str(tmp_path))
    results = trainer.train()
  finally:
    gin.clear_config()
  assert trainer.jit_compile and int(trainer.step.numpy()) == 2
  assert set(results) == {'detection3d', 'box_flow'}
  assert 0.0 <= results['detection3d']['3d_LEVEL_1_AP'] <= 1.0
  assert results['box_flow']['flow_epe'] == results['box_flow']['flow_epe']
  assert os.path.isdir(os.path.join(tmp_path, 'checkpoints'))
  terms = trainer.last_scalars
  assert any(k.startswith('consistency/box_flow_class') for k in terms), sorted(terms)


ALL = sorted(
    os.path.relpath(os.path.join(d, f), REPO_ROOT)
    for d in (
        os.path.join(REPO_ROOT, 'gin/experiments/synthetic'),
        os.path.join(REPO_ROOT, 'gin/experiments/waymo'),
    )
    for f in os.listdir(d)
    if f.startswith('table2_labels')
)


def test_every_table2_file_parses_and_builds():
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import point_cloud_experiment  # pylint: disable=g-import-not-at-top

  assert len(ALL) == 12, ALL
  for gin_file in ALL:
    gin.clear_config()
    try:
      experiment_lib.parse_gin([gin_file], search_dirs=[REPO_ROOT])
      exp = point_cloud_experiment.PointCloudExperiment()
      assert exp.task_names == ['detection3d', 'box_flow'], gin_file
      assert bool(exp.relations) == gin_file.endswith('_consistency.gin'), gin_file
      if 'waymo' in gin_file:
        grid = exp.pipeline.grid
        assert (grid.rows, grid.cols, grid.cell_size) == (468, 468, 0.32)
    finally:
      gin.clear_config()
