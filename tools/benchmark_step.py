r"""Training-step benchmarks (BENCHMARKS.md, "Training step"), each a ratio from one run.

(a) XLA: the collective step of the synthetic Table 3 experiment with and without jit_compile.
(b) Framework overhead: the trainer's step against a minimal hand-written tf.function step of the
    same two networks, losses and optimizers on the same batches.
    Both are timed in interleaved rounds (eager trainer, XLA trainer, hand-written loop, again),
    so a noisy neighbour slows all three alike; the first round of each (tracing, compiling) is
    not counted.

  python tools/benchmark_step.py --data_dir=/work/data_demo --output=runs/bench_step.json

(c) Input sharding: with 2 MultiWorkerMirrored workers on 127.0.0.1, the clips each worker's
    pipelines decode over a run, for the code in --code_root (run it once on a checkout from
    before the change and once on this one):

  python tools/benchmark_step.py --mode=decode --data_dir=/work/data_demo --code_root=. \
      --output=runs/bench_decode_after.json
"""

import json
import os
import shlex
import statistics
import sys
import tempfile
import time

from absl import flags

from taskology_tf import files
import taskology_tf_tools
from taskology_tf_tools import GIN_SEARCH_DIRS

flags.DEFINE_enum('mode', 'step', ['step', 'decode'], 'Which benchmark.')
flags.DEFINE_string(
    'gin_file', 'gin/experiments/synthetic/depth_normals_sim2real.gin', 'Experiment (mode=step).'
)
flags.DEFINE_string('data_dir', 'data/tensorflow_datasets', 'Where the 48x64 synthetic world is.')
flags.DEFINE_integer('steps_per_round', 20, 'Timed steps per round and variant.')
flags.DEFINE_integer('rounds', 4, 'Rounds; the first (warm-up) is not counted.')
flags.DEFINE_integer('decode_steps', 40, 'Steps per worker (mode=decode).')
flags.DEFINE_string('code_root', '.', 'Checkout whose taskology_tf the decode workers run.')
flags.DEFINE_string('output', None, 'Optional JSON output.')
FLAGS = flags.FLAGS


class _StepTimer:
  """A trainer hook recording the wall time between consecutive steps of one train() call."""

  def __init__(self):
    self.durations = []
    self._last = None

  def start(self):
    self._last = None

  def __call__(self, step, trainer):
    del step, trainer
    now = time.perf_counter()
    if self._last is not None:
      self.durations.append(now - self._last)
    self._last = now


def _experiment(jit):
  """A fresh Experiment of --gin_file (parsed once; clip sources read gin when called)."""
  import gin

  from taskology_tf.training import experiment as experiment_lib

  if not gin.config_is_locked():
    experiment_lib.parse_gin(
        [FLAGS.gin_file],
        [
            f"synthetic_world_clips.data_dir = '{FLAGS.data_dir}'",
            'Experiment.evaluation_clips = None',
            'LoopConfig.log_every = 1000000',
            'LoopConfig.summary_every = 1000000',
            'LoopConfig.checkpoint_every = 1000000',
            'LoopConfig.image_every = 0',
        ],
        search_dirs=GIN_SEARCH_DIRS,
    )
  experiment = experiment_lib.Experiment()
  for config in experiment.tasks:
    config.jit_compile = jit
  return experiment


def _hand_written(experiment):
  """The same networks, losses, optimizers and batches, in a minimal tf.function step."""
  import tensorflow as tf
  import tf_keras

  from taskology_tf.tasks.base import to_float_image

  tf_keras.utils.set_random_seed(experiment.seed)
  tasks = {c.task.name: c.task for c in experiment.tasks}
  models = {n: t.build_network() for n, t in tasks.items()}
  optimizers = {c.task.name: c.optimizer() for c in experiment.tasks}
  dedicated = {
      c.task.name: iter(experiment.dedicated_dataset_fn(i)(None))
      for i, c in enumerate(experiment.tasks)
  }
  mediator = iter(experiment.mediator_dataset_fn()(None))
  relations, weights = experiment.relations, experiment.relation_weights

  @tf.function
  def step(batches, clip):
    with tf.GradientTape() as tape:
      total = 0.0
      for n, task in tasks.items():
        outputs = task.call(models[n], task.dedicated_inputs(batches[n]), training=True)
        total += task.supervised_loss(batches[n], outputs)[0]
      preds = {n: t.predict_mediator(models[n], clip, training=True) for n, t in tasks.items()}
      rel_batch = {'image': to_float_image(clip['image']), 'intrinsics': clip['intrinsics']}
      for r in relations:
        total += weights.get(r.name, 1.0) * r(preds, rel_batch)[0]
    variables = {n: m.trainable_variables for n, m in models.items()}
    grads = tape.gradient(total, variables)
    for n in tasks:
      optimizers[n].apply_gradients(zip(grads[n], variables[n]))
    return total

  def run(num_steps, timer):
    timer.start()
    for _ in range(num_steps):
      step({n: next(it) for n, it in dedicated.items()}, next(mediator))
      timer(None, None)

  return run


def _bench_step():
  import numpy as np

  variants = {}
  tmp = tempfile.mkdtemp(prefix='bench_step_')
  for name, jit in (('trainer', False), ('trainer_xla', True)):
    experiment = _experiment(jit)
    timer = _StepTimer()
    trainer = experiment.build_trainer(os.path.join(tmp, name), hooks=[timer])
    variants[name] = (trainer, timer)
  hand_timer = _StepTimer()
  hand = _hand_written(_experiment(False))
  # The trainer's compiled step alone, called in a bare loop on the trainer's own iterators:
  # separates the cost inside the step (e.g. per-step metrics) from the loop's Python work.
  bare, bare_timer = variants['trainer'][0], _StepTimer()
  bare_its = bare._iterators()
  done = {name: 0 for name in variants}
  kept = {name: [] for name in (*variants, 'hand_written', 'trainer_step_only')}
  for r in range(FLAGS.rounds):
    for name, (trainer, timer) in variants.items():
      timer.durations.clear()
      timer.start()
      done[name] += FLAGS.steps_per_round
      trainer.loop.num_steps = done[name]
      trainer.train()
      if r:
        kept[name] += timer.durations
    hand_timer.durations.clear()
    hand(FLAGS.steps_per_round, hand_timer)
    if r:
      kept['hand_written'] += hand_timer.durations
    bare_timer.durations.clear()
    bare_timer.start()
    for _ in range(FLAGS.steps_per_round):
      batches = {n: next(bare_its[n]) for n in bare.live if n in bare_its}
      bare._step_fn(batches, next(bare_its['mediator']), None)
      bare_timer(None, None)
    if r:
      kept['trainer_step_only'] += bare_timer.durations
    print(
        f'round {r}: '
        + ', '.join(f'{k} {1e3 * statistics.median(v or [0]):.1f} ms' for k, v in kept.items()),
        flush=True,
    )
  median = {k: float(np.median(v)) for k, v in kept.items()}
  return {
      'median_step_seconds': median,
      'steps_counted': {k: len(v) for k, v in kept.items()},
      'xla_over_eager': median['trainer_xla'] / median['trainer'],
      'trainer_over_hand_written': median['trainer'] / median['hand_written'],
      'trainer_step_only_over_hand_written': median['trainer_step_only'] / median['hand_written'],
  }


def _bench_decode():
  from taskology_tf.training import local_cluster  # pylint: disable=g-import-not-at-top

  tmp = tempfile.mkdtemp(prefix='bench_decode_')
  steps = FLAGS.decode_steps

  def args(i, attempt):
    return dict(
        data_dir=os.path.abspath(FLAGS.data_dir),
        out=os.path.join(tmp, f'try{attempt}_worker{i}'),
        run_dir=os.path.join(tmp, f'try{attempt}_run'),
        height=48,
        width=64,
        base_filters=8,
        levels=4,
        batch_size=8,
        steps=steps,
        checkpoint_every=10**6,
        schedule='joint',
    )

  # The checkout under test comes first on sys.path (the -c script's '' is its cwd).
  run = local_cluster.run_local_cluster(
      local_cluster.PROBE_WORKER, args, cwd=FLAGS.code_root, timeout_seconds=1800
  )
  if not run.ok:
    raise RuntimeError('decode workers failed:\n' + run.report())
  results = []
  for i in range(2):
    with open(os.path.join(tmp, f'try{run.attempt}_worker{i}.json')) as f:
      results.append({k: len(v) for k, v in json.load(f)['read'].items()})
  return {
      'code_root': os.path.abspath(FLAGS.code_root),
      'global_batch': 8,
      'steps': steps,
      'decoded_per_worker': results,
      'decoded_per_worker_per_step': [{k: v / steps for k, v in r.items()} for r in results],
  }


def main(argv):
  del argv
  result = _bench_step() if FLAGS.mode == 'step' else _bench_decode()
  result['command'] = 'python tools/benchmark_step.py ' + shlex.join(sys.argv[1:])
  print(json.dumps(result, indent=2))
  if FLAGS.output:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    files.write_json_atomic(FLAGS.output, result, indent=2)
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
