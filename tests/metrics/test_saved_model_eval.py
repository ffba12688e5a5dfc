"""Scoring a depth SavedModel on the KITTI fixture's Eigen protocol (library and tool)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from taskology_tf.metrics import kitti_depth
from taskology_tf.metrics import saved_model_eval
from tests.datasets import fixtures

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONSTANT_DEPTH = 10.0


class _ConstantDepth(tf.Module):
  """A depth 'network' answering 10 m everywhere, with a depth task's serving signature."""

  @tf.function(input_signature=[tf.TensorSpec([None, 16, 48, 3], tf.uint8, name='image')])
  def serve(self, image):
    return {'depth': tf.fill(tf.concat([tf.shape(image)[:3], [1]], 0), CONSTANT_DEPTH)}


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('eval')
  data_dir, _, ds_builder, _ = fixtures.build_kitti_raw(str(tmp))
  module = _ConstantDepth()
  base = tmp / 'snapshots' / 'depth'
  for version in (3, 12):  # A TF Serving base path: the newest version (12) is scored.
    tf.saved_model.save(
        module, str(base / str(version)), signatures={'serving_default': module.serve}
    )
  return data_dir, ds_builder, str(base)


def _expected(ds_builder, scaled):
  # Hand protocol on the stored ground truth: per test clip, valid = 1e-3 < g < 80 inside the
  # Garg crop of its true size; Abs Rel = mean |g - p| / g with p = 10 (or, median-scaled,
  # p = 10 * median(g) / 10 = median(g)); averaged over the clips.
  values = []
  for ex in tfds.as_numpy(ds_builder.as_dataset(split='test')):
    rows, cols = ex['gt_size']
    g = ex['gt_depth'][:rows, :cols].astype(np.float64)
    g = g[(g > 1e-3) & (g < 80) & kitti_depth.garg_crop_mask(rows, cols)]
    p = np.median(g) if scaled else CONSTANT_DEPTH
    values.append(np.mean(np.abs(g - p) / g))
  return float(np.mean(values))


def test_saved_model_scores_match_the_hand_protocol(setup):
  data_dir, ds_builder, base = setup
  assert saved_model_eval.resolve_saved_model(base).endswith(os.path.join('depth', '12'))
  results = saved_model_eval.evaluate_saved_model(base, 'kitti_raw', data_dir, 'test')
  unscaled = kitti_depth.kitti_eigen_metrics(median_scaling=False).protocol
  scaled = kitti_depth.kitti_eigen_metrics(median_scaling=True).protocol
  assert set(results) == {unscaled, scaled}
  # The wall sits at ~9.73 m: Abs Rel of a constant 10 m is ~0.028, median-scaled ~0.003.
  assert results[unscaled]['abs_rel'] == pytest.approx(_expected(ds_builder, False), rel=1e-6)
  assert results[scaled]['abs_rel'] == pytest.approx(_expected(ds_builder, True), rel=1e-6)
  assert 0.01 < results[unscaled]['abs_rel'] < 0.05 and results[scaled]['abs_rel'] < 0.01
  assert results[unscaled]['num_images'] == 2 and results[unscaled]['delta1'] == 1.0


def test_bad_saved_model_paths_and_signatures(setup, tmp_path):
  data_dir, _, _ = setup
  with pytest.raises(FileNotFoundError, match='no saved_model.pb'):
    saved_model_eval.resolve_saved_model(str(tmp_path))

  class WrongSize(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 96, 3], tf.uint8, name='image')])
    def serve(self, image):
      return {'depth': tf.zeros(tf.concat([tf.shape(image)[:3], [1]], 0))}

  module = WrongSize()
  tf.saved_model.save(module, str(tmp_path / 'm'), signatures={'serving_default': module.serve})
  # Its 32 x 96 input names a KITTI build that does not exist: the build command is named.
  with pytest.raises(FileNotFoundError, match='build_dataset.py --dataset=kitti_raw'):
    saved_model_eval.evaluate_saved_model(str(tmp_path / 'm'), 'kitti_raw', data_dir)


@pytest.mark.timeout(240)
def test_evaluate_tool_saved_model_mode(setup, tmp_path):
  data_dir, ds_builder, base = setup
  out = tmp_path / 'eval.json'
  proc = subprocess.run(
      [
          sys.executable,
          os.path.join(REPO_ROOT, 'tools', 'evaluate.py'),
          f'--saved_model={base}',
          '--dataset=kitti_raw',
          f'--data_dir={data_dir}',
          f'--output={out}',
      ],
      capture_output=True,
      text=True,
      timeout=200,
      cwd=REPO_ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  # Both tables are printed, each headed by its protocol (median scaling named).
  assert 'median-scaled' in proc.stdout and 'not scaled' in proc.stdout
  written = json.load(open(out))
  scaled = kitti_depth.kitti_eigen_metrics(median_scaling=True).protocol
  assert written['metrics'][scaled]['abs_rel'] == pytest.approx(
      _expected(ds_builder, True), rel=1e-6
  )
  assert written['saved_model'].endswith('12')
