"""Table 1: every full-scale gin file runs 2 steps with tiny overrides on fixture data, and
tools/table1.py runs A-E end to end on the synthetic world (1 seed, 2 steps), resumably.

The full-scale files read a Cityscapes fixture and a COCO panoptic fixture, both in their raw
layouts and built with the real builders (tests/datasets/fixtures.py,
tests/datasets/test_coco_panoptic.py). Frozen tasks are checked by what freezing means: a
frozen network scores exactly what its source run's network scores.
"""

import json
import os
import subprocess
import sys

import gin
import pytest

from tests.conftest import REPO_ROOT

TINY_CITYSCAPES = 'gin/tests/tiny_table1_cityscapes.gin'


@pytest.fixture(scope='module')
def table1_data(tmp_path_factory):
  from taskology_tf_tools import build_dataset  # pylint: disable=g-import-not-at-top
  from tests.datasets import fixtures  # pylint: disable=g-import-not-at-top
  from tests.datasets.test_coco_panoptic import write_coco  # pylint: disable=g-import-not-at-top

  tmp = str(tmp_path_factory.mktemp('table1_data'))
  data_dir, _, _, _ = fixtures.build_cityscapes(tmp, height=16, width=52)
  raw = os.path.join(tmp, 'coco_raw')
  write_coco(raw, 'train2017')
  write_coco(raw, 'val2017')
  build_dataset.build_video_dataset('coco_panoptic', raw, 16, 52, data_dir)
  return data_dir


def _run(name, out_dir, data_dir, extra=()):
  from taskology_tf_tools import table1  # pylint: disable=g-import-not-at-top

  return table1.train_and_evaluate(
      'cityscapes',
      name,
      0,
      out_dir,
      None,
      [TINY_CITYSCAPES],
      [f"DATA_DIR = '{data_dir}'", *extra],
      eval_batch_size=2,
  )


def test_full_scale_table1_b_c_d_run_two_steps_in_dependency_order(table1_data, tmp_path):
  out = str(tmp_path)
  b = _run('b', out, table1_data)
  c = _run('c', out, table1_data)  # segmentation frozen from b/seed_0
  d = _run('d', out, table1_data)  # depth + motion frozen from c/seed_0
  for result in (b, c, d):
    assert result['steps'] == 2
  assert c['origin'] == {'depth': 'trained', 'segmentation': 'frozen'}
  assert d['origin'] == {'depth': 'frozen', 'segmentation': 'trained'}
  # Frozen networks score exactly what their sources score.
  assert c['segmentation'] == b['segmentation']
  assert d['depth'] == c['depth']


# A and E need no other run: a test of their own, which pytest-xdist runs beside the B-C-D chain.
def test_full_scale_table1_a_and_e_run_two_steps(table1_data, tmp_path):
  out = str(tmp_path)
  a = _run('a', out, table1_data)
  # Not XLA-compiled here: compiling costs minutes on this CPU. (The tiny E's NaN at step 2
  # under XLA was NAS-FPN's reduce_max gradient dividing 0 by 0; fixed in nasfpn_segmenter.py,
  # regression test in tests/tasks/test_segmentation_nasfpn.py.)
  e = _run('e', out, table1_data)
  for result in (a, e):
    assert result['steps'] == 2
  assert a['origin'] == {'depth': 'trained'}, a['origin']
  classes = ['person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle']
  assert e['segmentation']['classes'] == classes
  assert 'cityscapes' in e['depth']['protocol'] and 'median-scaled' in e['depth']['protocol']
  assert e['depth']['abs_rel'] > 0


def test_distributed_e_parses_with_three_trainers():
  from taskology_tf.training import distributed  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  try:
    experiment_lib.parse_gin(
        ['gin/experiments/cityscapes/table1_e_distributed.gin'], search_dirs=[REPO_ROOT]
    )
    experiment = experiment_lib.Experiment()
    assert experiment.task_names == ['depth', 'motion', 'segmentation']
    assert not experiment.frozen_task_names
    assert distributed.DistributedConfig().export_every == 100
    task = experiment.config('segmentation').task
    assert (task.network, task.nasfpn_options['backbone_depth']) == ('nasfpn', 50)
    assert task.nasfpn_options['num_filters'] == 256 and task.nasfpn_options['num_repeats'] == 5
  finally:
    gin.clear_config()


def _table1(out_dir, data_dir):
  return subprocess.run(
      [
          sys.executable,
          os.path.join(REPO_ROOT, 'tools', 'table1.py'),
          f'--out_dir={out_dir}',
          '--seeds=1',
          '--extra_gin_file=gin/tests/tiny.gin',
          f"--gin_bindings=synthetic_world_clips.data_dir='{data_dir}'",
      ],
      capture_output=True,
      text=True,
      timeout=1200,
      cwd=REPO_ROOT,
  )


def test_table1_tool_end_to_end_and_resumes(tiny_world, tmp_path):
  out = str(tmp_path / 'table1')
  proc = _table1(out, tiny_world)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in ('table1.md', 'table1.json', 'table1.png'):
    assert os.path.getsize(os.path.join(out, name)) > 0
  with open(os.path.join(out, 'table1.json')) as f:
    table = json.load(f)
  runs = {r['experiment']: r for r in table['runs']}
  assert sorted(runs) == ['a', 'b', 'c', 'd', 'e']
  assert runs['c']['segmentation'] == runs['b']['segmentation']  # C's segmenter is B's.
  assert runs['d']['depth'] == runs['c']['depth']  # D's depth is C's.
  assert runs['e']['segmentation']['classes'] == ['car', 'pedestrian']
  assert 'median-scaled' in runs['a']['depth']['protocol']
  text = open(os.path.join(out, 'table1.md')).read()
  assert '[car, pedestrian]' in text and '(frozen from B)' in text and '(frozen from C)' in text
  assert 'depth error E <= C < A' in text
  # A finished run is not redone: the second invocation only tabulates.
  again = _table1(out, tiny_world)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count('done before, skipped') == 5
  with open(os.path.join(out, 'table1.json')) as f:
    assert json.load(f)['runs'] == table['runs']
