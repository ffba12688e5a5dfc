"""tools/dfv_motion_probe.py: hand goldens of its ego-motion errors, and the tool end to end on
a motion network saved as a run's checkpoint, scored on the tiny synthetic world."""

import json
import os

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.conftest import run_tool


def _rot_z(degrees):
  a = np.radians(degrees)
  return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_compare_egomotion_goldens():
  from taskology_tf.metrics import egomotion_errors as dfv_motion_probe  # pylint: disable=g-import-not-at-top

  # Pair 0: the truth is a 10 deg rotation about z, the prediction the identity -> error 10 deg;
  # its backward rotation is -10 deg about z, so backward * forward = -10 deg -> cycle 10 deg.
  # True translation (1, 1, 0), predicted (2, 0, 0): direction 45 deg, |t| ratio 2 / sqrt(2).
  # Pair 1: prediction = truth = 30 deg about z, backward its inverse -> errors 0, cycle 0; its
  # true translation is 0, so it has no direction and is left out of the translation terms.
  pred_r = np.stack([np.eye(3), _rot_z(30)])
  gt_r = np.stack([_rot_z(10), _rot_z(30)])
  back_r = np.stack([_rot_z(-10), _rot_z(-30)])
  pred_t = np.array([[2.0, 0, 0], [0.5, 0, 0]])
  gt_t = np.array([[1.0, 1.0, 0], [0, 0, 0]])
  errors = dfv_motion_probe.compare_egomotion(pred_r, pred_t, gt_r, gt_t, back_r)
  np.testing.assert_allclose(errors['rotation_error_deg'], [10, 0], atol=1e-4)
  np.testing.assert_allclose(errors['rotation_deg'], [10, 30], atol=1e-4)
  np.testing.assert_allclose(errors['cycle_rotation_error_deg'], [10, 0], atol=1e-4)
  np.testing.assert_allclose(errors['translation_direction_error_deg'], [45], atol=1e-4)
  np.testing.assert_allclose(errors['translation_scale_ratio'], [np.sqrt(2)], rtol=1e-6)
  summary = dfv_motion_probe.summarise(errors)
  assert summary['pairs'] == 2 and summary['translation_pairs'] == 1
  assert summary['rotation_error_deg'] == pytest.approx(5.0, abs=1e-4)
  assert summary['translation_scale_log_std'] == 0.0  # One pair: no spread.
  assert '| translation direction error (deg) | 45 |' in dfv_motion_probe.markdown(summary)
  assert summary['translation_direction_error_deg_median'] == pytest.approx(45.0, abs=1e-4)
  assert summary['translation_direction_off_30deg'] == 1.0  # 45 > 30
  # Unit directions of the one moving pair: predicted (1, 0, 0), true (1, 1, 0) / sqrt(2).
  np.testing.assert_allclose(summary['mean_predicted_direction'], [1, 0, 0], atol=1e-7)
  np.testing.assert_allclose(summary['mean_true_direction'], [0.7071068, 0.7071068, 0], atol=1e-6)
  assert '| mean true t / norm(t) | (0.707, 0.707, 0.000) |' in dfv_motion_probe.markdown(summary)
  assert summary['direction_error_by_true_speed'] == []  # one moving pair: no terciles
  # The one moving pair's true |t| is sqrt 2 (no spread), and (1, 1, 0) is 90 deg off the axis.
  assert summary['true_translation_log_std'] == 0.0
  assert summary['true_translation_range_m'] == pytest.approx([np.sqrt(2), np.sqrt(2)])
  assert summary['true_direction_within_1deg_of_axis'] == 0.0
  assert '| true norm(t) range (m) | 1.41-1.41 |' in dfv_motion_probe.markdown(summary)


def test_direction_error_terciles_by_true_speed():
  from taskology_tf.metrics import egomotion_errors  # pylint: disable=g-import-not-at-top

  # Six forward pairs, |t_gt| = 0.1 ... 0.6 m; the two slowest predicted 90 deg off (x instead
  # of z), the others exact. Terciles of |t|: [0.1, 0.2], (0.2, 0.4], (0.4, 0.6] with 2 pairs
  # each (edges at the 1/3 and 2/3 quantiles, 0.2667 and 0.4333): medians 90, 0, 0 deg and
  # fractions off by > 30 deg 1, 0, 0.
  norms = np.arange(1, 7) * 0.1
  gt_t = np.stack([np.zeros(6), np.zeros(6), norms], -1)
  pred_t = gt_t.copy()
  pred_t[:2] = [[0.1, 0, 0], [0.2, 0, 0]]
  eye = np.tile(np.eye(3), (6, 1, 1))
  summary = egomotion_errors.summarise(
      egomotion_errors.compare_egomotion(eye, pred_t, eye, gt_t, eye)
  )
  terciles = summary['direction_error_by_true_speed']
  assert [t['pairs'] for t in terciles] == [2, 2, 2]
  np.testing.assert_allclose([t['median_deg'] for t in terciles], [90, 0, 0], atol=1e-4)
  assert [t['off_30deg'] for t in terciles] == [1.0, 0.0, 0.0]
  np.testing.assert_allclose(terciles[0]['true_translation_m'], [0.1, 0.1 + 0.5 / 3], rtol=1e-6)
  assert 'direction error for true norm(t) in [0.10, 0.27] m' in egomotion_errors.markdown(summary)
  # All six true translations lie on the axis (0, 0, |t|); their log speeds log(0.1 k),
  # k = 1..6, spread as log k does.
  assert summary['true_direction_within_1deg_of_axis'] == 1.0
  assert summary['true_translation_log_std'] == pytest.approx(np.std(np.log(np.arange(1, 7))))
  assert summary['true_translation_range_m'] == pytest.approx([0.1, 0.6])
  assert summary['true_translation_median_m'] == pytest.approx(0.35)  # (0.3 + 0.4) / 2


def test_direction_error_terciles_by_true_rotation():
  from taskology_tf.metrics import egomotion_errors  # pylint: disable=g-import-not-at-top

  # Six forward pairs (|t| 1 m) turning 0.5, 1.0, ... 3.0 deg about z, rotation predicted
  # exactly; the two that turn most get their translation 90 deg off (x instead of z).
  # Terciles of the angle (edges 0.5, 1.333, 2.167, 3.0): medians 0, 0, 90; > 30 deg 0, 0, 1.
  angles = np.arange(1, 7) * 0.5
  rotations = np.stack([_rot_z(a) for a in angles])
  gt_t = np.tile([0.0, 0.0, 1.0], (6, 1))
  pred_t = gt_t.copy()
  pred_t[4:] = [1.0, 0.0, 0.0]
  summary = egomotion_errors.summarise(
      egomotion_errors.compare_egomotion(rotations, pred_t, rotations, gt_t, rotations)
  )
  terciles = summary['direction_error_by_true_rotation']
  assert [t['pairs'] for t in terciles] == [2, 2, 2]
  np.testing.assert_allclose([t['median_deg'] for t in terciles], [0, 0, 90], atol=1e-3)
  assert [t['off_30deg'] for t in terciles] == [0.0, 0.0, 1.0]
  np.testing.assert_allclose(terciles[2]['true_rotation_deg'], [0.5 + 2.5 * 2 / 3, 3.0], rtol=1e-4)
  assert 'direction error for true rotation in [2.17, 3.00] deg' in egomotion_errors.markdown(
      summary
  )


def test_outlier_profile_means_per_group():
  from taskology_tf.metrics import egomotion_errors  # pylint: disable=g-import-not-at-top

  # Errors 40, 5, 90, 10 deg: pairs 0 and 2 are off (> 30). Movable fractions 0.3, 0.1, 0.5,
  # 0.1 -> off mean (0.3 + 0.5) / 2 = 0.4, within (0.1 + 0.1) / 2 = 0.1, ratio 4.
  profile = egomotion_errors.outlier_profile(
      [40.0, 5.0, 90.0, 10.0], {'movable_fraction': [0.3, 0.1, 0.5, 0.1]}
  )
  assert profile['off_pairs'] == 2 and profile['within_pairs'] == 2
  assert profile['movable_fraction'] == {
      'off': pytest.approx(0.4),
      'within': pytest.approx(0.1),
      'ratio': pytest.approx(4.0),
  }
  assert '| movable_fraction | 0.4 | 0.1 | 4 |' in egomotion_errors.outlier_markdown(profile)
  # No pair off: the off mean is NaN, not an error.
  assert np.isnan(egomotion_errors.outlier_profile([1.0], {'x': [2.0]})['x']['off'])
  with pytest.raises(ValueError, match="attribute 'x' has shape \\(2,\\)"):
    egomotion_errors.outlier_profile([1.0], {'x': [2.0, 3.0]})


GIN = 'gin/experiments/synthetic/dfv_depth_motion_counted.gin'


def _probe(args):
  return run_tool('dfv_motion_probe', args)


def test_probe_end_to_end_on_a_saved_motion_network(tiny_world, tmp_path):
  import gin  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets.loader import load_synthetic_world  # pylint: disable=g-import-not-at-top
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from tests.conftest import TINY_HEIGHT  # pylint: disable=g-import-not-at-top
  from tests.conftest import TINY_WIDTH  # pylint: disable=g-import-not-at-top

  bindings = [f"DATA_DIR = '{tiny_world}'"]
  gin.clear_config()
  try:
    experiment_lib.parse_gin([GIN, 'gin/tests/tiny.gin'], bindings, search_dirs=[REPO_ROOT])
    net = experiment_lib.Experiment().config('motion').task.build_network()
  finally:
    gin.clear_config()
  run_dir = str(tmp_path / 'run')
  tf.train.CheckpointManager(
      tf.train.Checkpoint(model_motion=net), os.path.join(run_dir, 'checkpoints'), 1
  ).save(checkpoint_number=7)
  out = str(tmp_path / 'probe' / 'motion.json')
  args = [
      f'--run_dir={run_dir}',
      f'--gin_file={GIN}',
      '--gin_file=gin/tests/tiny.gin',
      f"--gin_bindings=DATA_DIR = '{tiny_world}'",
  ]
  proc = _probe(args + [f'--output={out}'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.load(open(out))
  # The tiny world's test split: 2 clips of 3 frames -> 4 pairs, from the latest checkpoint.
  assert summary['pairs'] == 4 and summary['checkpoint'].endswith('ckpt-7')
  clips = load_synthetic_world('real', 'test', tiny_world, TINY_HEIGHT, TINY_WIDTH)
  gt = np.concatenate([c['egomotion'].numpy()[:, :3, :3] for c in clips])
  cos = (np.trace(gt, axis1=-2, axis2=-1) - 1) / 2
  expected = np.degrees(np.arccos(np.clip(cos, -1, 1))).mean()
  assert summary['rotation_deg'] == pytest.approx(expected, rel=1e-5)
  assert 0 <= summary['rotation_error_deg'] <= 180
  assert os.path.exists(os.path.splitext(out)[0] + '.md')
  # Per-pair rows of the moving pairs, and a profile whose group sizes add up to them.
  rows = np.genfromtxt(os.path.splitext(out)[0] + '_pairs.csv', delimiter=',', names=True)
  assert rows.size == summary['translation_pairs']
  profile = summary['outliers']
  assert profile['off_pairs'] + profile['within_pairs'] == summary['translation_pairs']
  assert profile['off_pairs'] == int(np.sum(rows['direction_error_deg'] > 30))
  assert 0 <= min(rows['movable_fraction']) and max(rows['sky_fraction']) <= 1
  np.testing.assert_allclose(
      np.sort(rows['true_translation_m']),
      np.sort(
          np.linalg.norm(np.concatenate([c['egomotion'].numpy()[:, :3, 3] for c in clips]), axis=-1)
      ),
      rtol=1e-5,
  )
  bad = _probe(args + ['--motion_task=ego'])
  assert bad.returncode != 0 and "--motion_task='ego'" in bad.stderr


def test_depth_probe_end_to_end_on_saved_depth_checkpoints(tiny_world, tmp_path):
  import gin  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  bindings = [f"DATA_DIR = '{tiny_world}'"]
  gin.clear_config()
  try:
    experiment_lib.parse_gin([GIN, 'gin/tests/tiny.gin'], bindings, search_dirs=[REPO_ROOT])
    experiment = experiment_lib.Experiment()
    net = experiment.config('depth').task.build_network()
    clips = list(experiment.evaluation_clips().take(16))
  finally:
    gin.clear_config()
  run_dir = str(tmp_path / 'run')
  checkpoint = tf.train.Checkpoint(model_depth=net, step=tf.Variable(3, dtype=tf.int64))
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(run_dir, 'checkpoints'), 3)
  manager.save(checkpoint_number=3)
  # Step 9: the last decoder layer silenced (bias -1e3): no unit on, a constant map.
  net.get_layer('iconv1').bias.assign(tf.fill(net.get_layer('iconv1').bias.shape, -1e3))
  checkpoint.step.assign(9)
  manager.save(checkpoint_number=9)
  out = str(tmp_path / 'probe' / 'depth.json')
  proc = run_tool(
      'dfv_depth_probe',
      [
          f'--run_dir={run_dir}',
          f'--gin_file={GIN}',
          '--gin_file=gin/tests/tiny.gin',
          f"--gin_bindings=DATA_DIR = '{tiny_world}'",
          f'--output={out}',
          '--breakdown',
      ],
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.load(open(out))['rows']
  # The breakdown splits each state's Abs Rel: per semantic class and per depth bin, the shares
  # sum to 1 and share * Abs Rel sums to the whole (empty groups: nan, share 0).
  classes = ['sky', 'ground', 'building', 'car', 'pedestrian']
  bins = ['0-5 m', '5-10 m', '10-20 m', '20-40 m', '40-80 m']
  for row in rows:
    assert sorted(row['breakdown']) == sorted(classes + bins)
    for names in (classes, bins):
      parts = [row['breakdown'][n] for n in names]
      assert sum(p['share'] for p in parts) == pytest.approx(1.0)
      assert sum(p['share'] * p['abs_rel'] for p in parts if p['share'] > 0) == pytest.approx(
          row['abs_rel'], rel=1e-9
      )
    assert row['breakdown']['sky']['share'] == 0.0  # Sky is beyond max_depth: never scored.
  assert [r['state'] for r in rows] == ['init', 'step 3', 'step 9']
  assert rows[1]['activity']['iconv1'] > 0.0 and rows[1]['activity']['output_spread'] > 0.0
  assert rows[2]['activity']['iconv1'] == 0.0
  assert rows[2]['activity']['output_spread'] == pytest.approx(0.0, abs=1e-6)
  assert '| step 9 |' in open(os.path.splitext(out)[0] + '.md').read()
  # The depth scale against the clips' speed: at step 9 the map is one constant c, so each
  # image's median scale is median(gt) / c and its log spread is that of log median(gt).
  log_medians = []
  for clip in clips:
    gt = clip['depth'][clip['depth'].shape[0] // 2].numpy()
    log_medians.append(np.log(np.median(gt[(gt > 1e-3) & (gt < 80.0)])))
  scale = rows[2]['scale_vs_speed']
  assert scale['images'] == len(clips)
  assert scale['std_log_scale'] == pytest.approx(np.std(log_medians), rel=1e-4)
  assert all(np.isfinite(r['scale_vs_speed']['slope']) for r in rows)
  assert '| step 9 |' in open(os.path.splitext(out)[0] + '.md').read().split('slope of log')[1]


def test_experiment_for_probe_names_the_flag_and_the_gin_files():
  # The probes' shared set-up: an unknown task names its flag and the tasks there are; an
  # experiment without evaluation clips names the gin files.
  import gin  # pylint: disable=g-import-not-at-top

  from taskology_tf_tools import experiment_for_probe  # pylint: disable=g-import-not-at-top

  gin_a = ['gin/experiments/synthetic/table1_a.gin']
  try:
    gin.clear_config()
    experiment, task = experiment_for_probe(gin_a, [], 'motion_task', 'motion')
    assert task.name == 'motion' and experiment.task_names == ['depth', 'motion']
    gin.clear_config()
    with pytest.raises(ValueError, match=r"--depth_task='nope'.*\['depth', 'motion'\]"):
      experiment_for_probe(gin_a, [], 'depth_task', 'nope')
    gin.clear_config()
    with pytest.raises(ValueError, match='evaluation_clips is not set'):
      experiment_for_probe(gin_a, ['Experiment.evaluation_clips = None'], 'depth_task', 'depth')
  finally:
    gin.clear_config()


def test_speed_slope_and_correlation():
  from taskology_tf.metrics import egomotion_errors  # pylint: disable=g-import-not-at-top

  # Forward pairs with |t_gt| = 0.2 ... 1.2 m. A prediction at twice every true speed has
  # log|t_pred| = log 2 + log|t_gt|: slope 1, correlation 1 (the speed is learnt up to one
  # scale). One speed (0.9 m) for every pair has slope 0 (and correlation 0: log|t_pred| does
  # not vary; its centred values are all 0, so the correlation's denominator is 0 -> 0.0).
  norms = np.arange(1, 7) * 0.2
  gt_t = np.stack([np.zeros(6), np.zeros(6), norms], -1)
  eye = np.tile(np.eye(3), (6, 1, 1))
  doubled = egomotion_errors.summarise(
      egomotion_errors.compare_egomotion(eye, 2.0 * gt_t, eye, gt_t, eye)
  )
  assert doubled['speed_slope'] == pytest.approx(1.0, abs=1e-5)
  assert doubled['speed_corr'] == pytest.approx(1.0, abs=1e-5)
  one_speed = egomotion_errors.summarise(
      egomotion_errors.compare_egomotion(eye, np.tile([0.0, 0.0, 0.9], (6, 1)), eye, gt_t, eye)
  )
  assert one_speed['speed_slope'] == pytest.approx(0.0, abs=1e-6)
  assert one_speed['speed_corr'] == pytest.approx(0.0, abs=1e-3)
  # Half the log-speed spread: |t_pred| = sqrt(|t_gt|) has slope 0.5 and correlation 1.
  sqrt = egomotion_errors.summarise(
      egomotion_errors.compare_egomotion(eye, gt_t / np.sqrt(norms)[:, None], eye, gt_t, eye)
  )
  assert sqrt['speed_slope'] == pytest.approx(0.5, abs=1e-5)
  assert sqrt['speed_corr'] == pytest.approx(1.0, abs=1e-5)
  assert 'slope of log norm(t_pred) on log norm(t_gt)' in egomotion_errors.markdown(sqrt)


def test_parse_record_at_sorts_and_names_bad_steps():
  from taskology_tf_tools import parse_record_at  # pylint: disable=g-import-not-at-top

  assert parse_record_at(['400', '0', '25', '25'], 400) == [0, 25, 400]
  with pytest.raises(ValueError, match=r'--record_at: \[500\]; each must be in \[0, --steps=400\]'):
    parse_record_at(['0', '500'], 400)
  with pytest.raises(ValueError, match='--record_at must be integers'):
    parse_record_at(['ten'], 400)
  with pytest.raises(ValueError, match='none given'):
    parse_record_at([], 400)
