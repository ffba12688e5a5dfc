"""Every gin experiment parses and runs 2 XLA-compiled steps with gin/tests/tiny.gin; tools fail
clearly.

The steps are compiled (every task's TaskConfig.jit_compile = True), as a Cloud TPU runs them
(but for the variants in XLA_COVERED_BY, whose graphs another file compiles):
no data-dependent shapes or host round trips inside a step. tests/conftest.py lowers XLA's
backend optimisation for the suite, which makes compiling about twice as fast; these tests check
that steps compile and run, not the last bits of their values."""

import glob
import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest

from tests.conftest import REPO_ROOT


def _text_with_includes(path):
  with open(path) as f:
    text = f.read()
  for line in text.splitlines():
    line = line.strip()
    if line.startswith('include '):
      included = line.split(None, 1)[1].strip('\'"')
      text += _text_with_includes(os.path.join(REPO_ROOT, included))
  return text


def _is_other_root(path):
  # Shared-backbone baselines (MTLExperiment) and point-cloud experiments
  # (PointCloudExperiment) have their own roots and smoke tests: tests/mtl and
  # tests/training/test_point_cloud_experiments.py.
  text = _text_with_includes(path)
  return 'MTLExperiment' in text or 'PointCloudExperiment' in text


def _reads_kitti_raw(path):
  # KITTI raw experiments run on the KITTI fixture: tests/training/test_kitti_experiments.py.
  return 'kitti_raw_clips' in _text_with_includes(path)


def _reads_indoor_data(path):
  # Table 3 at full scale (ScanNet + SceneNet RGB-D) runs on their fixtures:
  # tests/training/test_scannet_table3_gin.py.
  text = _text_with_includes(path)
  return 'scannet_clips' in text or 'scenenet_clips' in text


EXPERIMENTS = sorted(
    p
    for p in glob.glob(os.path.join(REPO_ROOT, 'gin', 'experiments', '**', '*.gin'), recursive=True)
    if not p.endswith('_common.gin')
    and not _is_other_root(p)
    and not _reads_kitti_raw(p)
    and not _reads_indoor_data(p)
    # Table 1's files (frozen tasks need their source runs; full scale reads Cityscapes and
    # COCO fixtures) have their own smoke tests: tests/training/test_table1_experiments.py.
    and not os.path.basename(p).startswith('table1_')
)


def _run_in_process(gin_file, data_dir, run_dir, extra=()):
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  try:
    # Inside the try: a config that fails to parse must not leave its bindings (e.g.
    # TaskConfig.jit_compile) active for later tests in this process.
    experiment_lib.parse_gin(
        [gin_file, 'gin/tests/tiny.gin'],
        [f"synthetic_world_clips.data_dir = '{data_dir}'", *extra],
        search_dirs=[REPO_ROOT],
    )
    trainer = experiment_lib.Experiment().build_trainer(run_dir)
    results = trainer.train()
    experiment_lib.write_operative_config(run_dir)
  finally:
    gin.clear_config()
  return trainer, results


# Variants whose networks, relations and code paths another experiment here already compiles
# with XLA: they run the same 2 steps traced (tf.function) but not compiled, which halves their
# cost (the DfVitW graph's XLA compile is ~20 s of a ~40 s test). Each maps to the file that
# compiles what it uses.
XLA_COVERED_BY = {
    # The published loss at 1/4 widths: dfv_depth_motion.gin's graph at other widths.
    'dfv_depth_motion_small_published_loss.gin': 'dfv_depth_motion.gin',
    # Counted-pixel floor, learnt intrinsics: both in counted_learned_intrinsics.
    'dfv_depth_motion_counted.gin': 'dfv_depth_motion_counted_learned_intrinsics.gin',
    'dfv_depth_motion_learned_intrinsics.gin': 'dfv_depth_motion_counted_learned_intrinsics.gin',
}


def test_xla_covering_experiments_exist_and_compile():
  names = {os.path.basename(p) for p in EXPERIMENTS}
  for variant, covering in XLA_COVERED_BY.items():
    assert variant in names and covering in names, (variant, covering)
    assert covering not in XLA_COVERED_BY, f'{covering} must itself be XLA-compiled'


@pytest.mark.parametrize('gin_file', EXPERIMENTS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_experiment_smoke(gin_file, tiny_world, tmp_path):
  jit = os.path.basename(gin_file) not in XLA_COVERED_BY
  trainer, results = _run_in_process(
      gin_file, tiny_world, str(tmp_path), extra=[f'TaskConfig.jit_compile = {jit}']
  )
  assert trainer.jit_compile == jit
  assert int(trainer.step.numpy()) == 2
  assert results, 'evaluation produced no metrics'
  for task_metrics in results.values():
    for value in task_metrics.values():
      assert value == value  # not NaN
  assert os.path.exists(os.path.join(tmp_path, 'operative_config.gin'))
  assert trainer.checkpoint_manager.latest_checkpoint.endswith('-2')


def _tool(args, timeout=240):
  return subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, 'tools', 'train.py'), *args],
      capture_output=True,
      text=True,
      timeout=timeout,
      cwd=REPO_ROOT,
  )


def test_train_tool_errors_name_the_culprit(tiny_world, tmp_path):
  gin_file = 'gin/experiments/synthetic/depth_normals_sim2real.gin'
  missing = _tool([f'--run_dir={tmp_path}/a', '--gin_file=gin/experiments/nope.gin'])
  assert missing.returncode != 0 and 'nope.gin' in missing.stderr
  unknown = _tool(
      [
          f'--run_dir={tmp_path}/b',
          f'--gin_file={gin_file}',
          '--gin_bindings=DepthTask.no_such_param = 3',
      ]
  )
  assert unknown.returncode != 0 and 'no_such_param' in unknown.stderr
  no_data = _tool(
      [
          f'--run_dir={tmp_path}/c',
          f'--gin_file={gin_file}',
          '--gin_file=gin/tests/tiny.gin',
          f"--gin_bindings=synthetic_world_clips.data_dir='{tmp_path}/empty'",
      ]
  )
  assert no_data.returncode != 0
  assert f'{tmp_path}/empty' in no_data.stderr and 'tools/build_dataset.py' in no_data.stderr


def test_evaluate_tool_scores_a_trained_run(tiny_world, tmp_path):
  gin_file = os.path.join(REPO_ROOT, 'gin/experiments/synthetic/depth_normals_sim2real.gin')
  _, results = _run_in_process(gin_file, tiny_world, str(tmp_path / 'run'))
  out = tmp_path / 'eval.json'
  proc = subprocess.run(
      [
          sys.executable,
          os.path.join(REPO_ROOT, 'tools', 'evaluate.py'),
          f'--run_dir={tmp_path}/run',
          f'--gin_file={gin_file}',
          '--gin_file=gin/tests/tiny.gin',
          f"--gin_bindings=synthetic_world_clips.data_dir='{tiny_world}'",
          f'--output={out}',
      ],
      capture_output=True,
      text=True,
      timeout=240,
      cwd=REPO_ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  evaluated = json.load(open(out))
  assert evaluated['step'] == 2
  # Same checkpoint, same data: the tool reproduces the trainer's final evaluation.
  for task in ('depth', 'normals'):
    for key, value in results[task].items():
      assert abs(evaluated['metrics'][task][key] - value) <= 1e-4 * max(1.0, abs(value)), key
  missing = subprocess.run(
      [
          sys.executable,
          os.path.join(REPO_ROOT, 'tools', 'evaluate.py'),
          f'--run_dir={tmp_path}/nothing',
          f'--gin_file={gin_file}',
      ],
      capture_output=True,
      text=True,
      timeout=120,
      cwd=REPO_ROOT,
  )
  assert missing.returncode != 0 and 'nothing' in missing.stderr


def _table1_a_with_option(option_file, data_dir):
  """The Experiment of Table 1 A + `option_file` + tiny.gin (parsed only, nothing built)."""
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  try:
    experiment_lib.parse_gin(
        ['gin/experiments/synthetic/table1_a.gin', option_file, 'gin/tests/tiny.gin'],
        [f"DATA_DIR = '{data_dir}'"],
        search_dirs=[REPO_ROOT],
    )
    return experiment_lib.Experiment()
  finally:
    gin.clear_config()


def test_dfv_fast_start_option_rebinds_only_its_two_knobs(tiny_world):
  # gin/options/dfv_fast_start.gin after Table 1 A: the depth decoder is leaky (0.1) and the
  # motion scales learn 10x faster; everything else is A's (published 0.01 scale inits).
  experiment = _table1_a_with_option('gin/options/dfv_fast_start.gin', tiny_world)
  depth = experiment.config('depth').task
  motion = experiment.config('motion').task
  assert depth.decoder_leaky_slope == 0.1
  assert motion.scale_learning_rate_multiplier == 10.0
  assert motion.translation_scale_init == 0.01 and motion.rotation_scale_init == 0.01
  assert depth.build_network().get_layer('iconv1__leaky').get_config()['alpha'] == pytest.approx(
      0.1
  )


def test_dfv_forward_prior_option_binds_the_prior_only(tiny_world):
  # gin/options/dfv_forward_prior.gin after Table 1 A: the motion task gets the forward prior
  # (0, 0, -0.9) m; its scales keep A's published values.
  experiment = _table1_a_with_option('gin/options/dfv_forward_prior.gin', tiny_world)
  motion = experiment.config('motion').task
  assert motion.translation_prior == (0.0, 0.0, -0.9)
  assert motion.scale_learning_rate_multiplier == 1.0 and motion.translation_scale_init == 0.01


def test_dfv_motion_wide_encoder_option_sets_the_seven_widths(tiny_world):
  # gin/options/dfv_motion_wide_encoder.gin after Table 1 A (and tiny.gin's filters_scale
  # 0.125): the motion encoder has the option's widths, not 0.125 x the published ones.
  experiment = _table1_a_with_option('gin/options/dfv_motion_wide_encoder.gin', tiny_world)
  motion = experiment.config('motion').task
  wide = (32, 64, 128, 128, 256, 256, 256)
  assert motion.encoder_filters == wide and motion.filters_scale == 0.125
  net = motion.build_network()
  assert tuple(net.get_layer(f'conv{i}').filters for i in range(1, 8)) == wide
  assert motion.translation_prior is None  # the option binds the widths only


def test_dfv_zero_heads_and_initial_depth_options_bind_their_knob_only(tiny_world):
  # gin/options/dfv_motion_zero_heads.gin: the built motion network's background head is zero
  # (the motion starts at the prior); gin/options/dfv_initial_depth.gin: the depth head's bias
  # is softplus^-1(10) = ln(e^10 - 1). Each leaves the other network as published.
  experiment = _table1_a_with_option('gin/options/dfv_motion_zero_heads.gin', tiny_world)
  motion, depth = experiment.config('motion').task, experiment.config('depth').task
  assert motion.head_initializer == 'zeros' and depth.initial_depth is None
  kernel = motion.build_network().get_layer('background_motion').get_weights()[0]
  assert kernel.size and not np.any(kernel)
  experiment = _table1_a_with_option('gin/options/dfv_initial_depth.gin', tiny_world)
  motion, depth = experiment.config('motion').task, experiment.config('depth').task
  assert depth.initial_depth == 10.0 and motion.head_initializer == 'glorot_uniform'
  bias = depth.build_network().get_layer('disp1').get_weights()[1]
  np.testing.assert_allclose(bias, np.log(np.expm1(10.0)), rtol=1e-6)


@pytest.mark.parametrize('staleness', [0, 1], ids=['live_peers', 'stale_copies'])
def test_motion_fed_the_depth_trains_with_live_and_stale_peers(staleness, tiny_world, tmp_path):
  # DfvMotionTask.depth_input_task: with live peers the motion network is fed the live depth
  # (a constant), with stale copies the depth copy's (tasks/base.predict_in_order); both train
  # 2 steps and the motion network has its 4-channel (RGB-D) inputs.
  trainer, results = _run_in_process(
      'gin/experiments/synthetic/staleness_dfv.gin',
      tiny_world,
      str(tmp_path),
      extra=[
          "DfvMotionTask.depth_input_task = 'depth'",
          f'STALENESS = {staleness}',
          "DfvMotionTask.encoder_initializer = 'he_normal'",
      ],
  )
  assert int(trainer.step.numpy()) == 2
  assert trainer.models['motion'].inputs[0].shape[-1] == 4
  assert results['depth']['abs_rel'] == results['depth']['abs_rel']  # not NaN
  assert (trainer.peer_source is not None) == bool(staleness)
