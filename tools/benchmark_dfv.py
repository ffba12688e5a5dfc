r"""Benchmarks the DfVitW depth + motion training step and what each loss term costs (issue 8).

  nice -n 5 python tools/benchmark_dfv.py --size=128x416 --rounds=3 --steps_per_round=1 \
      --output=runs/bench_dfv_128x416.json             # BENCHMARKS.md (DfVitW depth + motion)
  nice -n 5 python tools/benchmark_dfv.py --size=48x64 --rounds=5 --steps_per_round=4 \
      --output=runs/bench_dfv_48x64.json

The step is the published recipe's joint step as the trainer runs it for
gin/experiments/kitti/depth_motion.gin (no dedicated data; one mediator batch of `--batch_size`
triplets): DfvDepthTask on the 3 frames of every triplet, DfvMotionTask on its 2 pairs in both
frame orders (one batched call), both in training mode; the loss is the decoder / motion-net
weight decay (`model.losses`, 1e-2) plus DfvConsistency (RGB 0.85, SSIM 3.0, depth consistency
0.01, rotation / translation cycle 1e-3 / 1e-2) + 0.01 DfvDepthSmoothness + 1e-3
DfvMotionSmoothness; gradients into both networks (peer_gradients, as the reference) and an
Adam(1e-4, global_clipnorm 10) update per network, inside one tf.function (XLA off by default,
as the trainer on this CPU; `--jit_compile` compiles every variant). Images are random uint8
(the cost does not depend on the content), intrinsics a pinhole with f = 0.6 W.

Variants, each its own tf.function on the same networks, optimizers and batch, timed in
interleaved rounds (each round runs every variant `--steps_per_round` times in turn, so a
neighbour that loads the machine slows all of them alike; the order rotates by one variant a
round); for every variant the trace (`get_concrete_function`: Python to graph) and the first
call after it (graph optimisation, variable and optimizer-slot initialisation, one run) are
timed separately and not counted:

  all terms                    the step above
  without <term>               the same step with one term left out (its weight 0 and its graph
                               gone), for each of weight_decay and the three relations
  networks only                both networks' forward and backward passes and updates, no loss
                               term: the loss is the sum of every prediction's mean, which
                               costs a few reductions and sends a gradient into every output
  depth / motion network only  the same for one network
  <term> alone                 the term's forward and backward pass with the networks'
                               predictions held constant (gradients into the predictions, or
                               into the weights for weight_decay), no network pass and no update

A term's cost as a fraction of a step is read two ways: (all terms - without it) / all terms,
and (it alone) / all terms. Ratios are medians over rounds of each round's ratio of medians.
"""

import os
import shlex
import statistics
import sys

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras as keras

from taskology_tf.consistency import dfv
from taskology_tf.tasks.base import to_float_image
from taskology_tf.tasks.dfv_depth import DfvDepthTask
from taskology_tf.tasks.dfv_motion import DfvMotionTask
import taskology_tf_tools
from taskology_tf_tools import benchmark_lib

_SIZE = flags.DEFINE_string('size', '48x64', 'Image size HxW (128x416 published).')
_COMMON = benchmark_lib.define_common_flags(
    4, 'Triplets per step (4 published).', filters_scale=True
)
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Interleaved timing rounds after the first calls.')
_STEPS = flags.DEFINE_integer('steps_per_round', 1, 'Timed calls of each variant per round.')

FULL = 'all terms'
NETWORKS_ONLY = 'networks only'
# The relations of gin/experiments/kitti/depth_motion.gin with their relation weights.
RELATIONS = (
    (dfv.DfvConsistency(), 1.0),
    (dfv.DfvDepthSmoothness(), dfv.SMOOTHNESS_WEIGHT),
    (dfv.DfvMotionSmoothness(), dfv.MOTION_SMOOTHING_WEIGHT),
)
WEIGHT_DECAY = 'weight_decay'
TERMS = (WEIGHT_DECAY,) + tuple(r.name for r, _ in RELATIONS)


def _mediator(height: int, width: int, batch_size: int):
  """A mediator batch: uint8 triplets [B, 3, H, W, 3] and pinhole intrinsics [B, 3, 3]."""
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (batch_size, 3, height, width, 3), np.uint8)
  f = 0.6 * width
  k = np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
  return {
      'image': tf.constant(image),
      'intrinsics': tf.constant(np.tile(k, (batch_size, 1, 1)), tf.float32),
  }


def _surrogate(predictions):
  """Sum of every prediction's mean: a gradient into every output for a few reductions."""
  return tf.add_n([tf.reduce_mean(t) for t in tf.nest.flatten(predictions)])


class _Setup:
  """The two tasks, their networks and optimizers, one batch, and the step variants."""

  def __init__(self, height, width, batch_size, filters_scale, jit):
    keras.utils.set_random_seed(0)
    self.tasks = {
        'depth': DfvDepthTask(height, width, filters_scale=filters_scale, max_depth=80.0),
        'motion': DfvMotionTask(height, width, filters_scale=filters_scale),
    }
    self.models, self.build_seconds = {}, {}
    for name, task in self.tasks.items():
      self.models[name], self.build_seconds[name] = benchmark_lib.timed_call(task.build_network)
    self.optimizers = {
        n: keras.optimizers.Adam(1e-4, beta_1=0.9, global_clipnorm=10.0) for n in self.tasks
    }
    self.mediator = _mediator(height, width, batch_size)
    self.relation_batch = dict(self.mediator, image=to_float_image(self.mediator['image']))
    self.jit = jit

  def parameters(self, name):
    return int(sum(np.prod(v.shape) for v in self.models[name].trainable_variables))

  def _loss(self, predictions, terms):
    total = tf.constant(0.0)
    if WEIGHT_DECAY in terms:
      total += tf.add_n([loss for n in predictions for loss in self.models[n].losses])
    for relation, weight in RELATIONS:
      if relation.name in terms:
        total += weight * relation(predictions, self.relation_batch)[0]
    return total

  def training_step(self, networks, terms):
    """A training step of `networks` with the loss `terms` (none: the surrogate loss)."""

    @tf.function(jit_compile=self.jit, autograph=False)
    def step():
      variables = {n: self.models[n].trainable_variables for n in networks}
      with tf.GradientTape() as tape:
        predictions = {
            n: self.tasks[n].predict_mediator(self.models[n], self.mediator, training=True)
            for n in networks
        }
        total = self._loss(predictions, terms) if terms else _surrogate(predictions)
      grads = tape.gradient(total, variables)
      for n in networks:
        # A term that reads only some outputs leaves other heads without a gradient.
        pairs = [(g, v) for g, v in zip(grads[n], variables[n]) if g is not None]
        self.optimizers[n].apply_gradients(pairs)
      return total

    return step

  def term_alone(self, term, predictions):
    """`term`'s forward and backward pass on constant `predictions` (see module docstring)."""

    @tf.function(jit_compile=self.jit, autograph=False)
    def step():
      with tf.GradientTape() as tape:
        if term == WEIGHT_DECAY:
          sources = [v for m in self.models.values() for v in m.trainable_variables]
        else:
          sources = tf.nest.flatten(predictions)
          tape.watch(sources)
        total = self._loss(predictions, (term,))
      grads = [g for g in tape.gradient(total, sources) if g is not None]
      return total + tf.add_n([tf.reduce_sum(g) for g in grads])

    return step

  def variants(self):
    both = tuple(self.tasks)
    steps = {FULL: self.training_step(both, TERMS)}
    for term in TERMS:
      steps[f'without {term}'] = self.training_step(both, tuple(t for t in TERMS if t != term))
    steps[NETWORKS_ONLY] = self.training_step(both, ())
    for name in both:
      steps[f'{name} network only'] = self.training_step((name,), ())
    # Predictions of the networks in training mode, computed once and held constant.
    predictions = {
        n: tf.nest.map_structure(
            tf.identity,
            self.tasks[n].predict_mediator(self.models[n], self.mediator, training=True),
        )
        for n in both
    }
    for term in TERMS:
      steps[f'{term} alone'] = self.term_alone(term, predictions)
    return steps


def _ratio(durations, name, rounds, calls):
  """Median over rounds of (round median of `name`) / (round median of the full step)."""

  def round_median(k, r):
    return statistics.median(durations[k][r * calls : (r + 1) * calls])

  return statistics.median(round_median(name, r) / round_median(FULL, r) for r in range(rounds))


def benchmark(height, width, batch_size, rounds, calls, filters_scale, jit):
  """Returns the measurements at one size as a dict."""
  setup = _Setup(height, width, batch_size, filters_scale, jit)
  steps = setup.variants()
  trace = {n: benchmark_lib.timed_call(s.get_concrete_function)[1] for n, s in steps.items()}
  first, durations = benchmark_lib.interleaved_rounds(steps, rounds, calls)
  variants = {}
  for name, times in durations.items():
    median = statistics.median(times)
    variants[name] = {
        'trace_seconds': trace[name],
        'first_call_seconds': first[name],
        'median_seconds': median,
        'steps_per_second': 1.0 / median,
        'ratio_to_full_step': _ratio(durations, name, rounds, calls),
        'seconds': times,
    }
  fractions = {
      term: {
          'removed': 1.0 - variants[f'without {term}']['ratio_to_full_step'],
          'alone': variants[f'{term} alone']['ratio_to_full_step'],
      }
      for term in TERMS
  }
  return {
      'size': [height, width],
      'batch_size': batch_size,
      'filters_scale': filters_scale,
      'jit_compile': jit,
      'rounds': rounds,
      'steps_per_round': calls,
      'timed_calls_per_variant': rounds * calls,
      'parameters': {n: setup.parameters(n) for n in setup.tasks},
      'build_seconds': setup.build_seconds,
      'variants': variants,
      'term_fractions_of_step': fractions,
      'load_average_1min': os.getloadavg()[0],
  }


def _print_tables(result):
  h, w = result['size']
  print(
      f"\n{h}x{w}, batch {result['batch_size']} triplets, "
      f"{result['timed_calls_per_variant']} timed calls per variant "
      f"({result['rounds']} rounds x {result['steps_per_round']}), parameters: "
      + ', '.join(f'{n} {p:,}' for n, p in result['parameters'].items())
      + f", load average {result['load_average_1min']:.1f}"
  )
  print('| variant | trace | first call | median | steps/s | / all terms |')
  print('|---|---|---|---|---|---|')
  for name, v in result['variants'].items():
    print(
        f"| {name} | {v['trace_seconds']:.1f} s | {v['first_call_seconds']:.1f} s | "
        f"{v['median_seconds']:.3f} s | "
        f"{v['steps_per_second']:.3f} | {v['ratio_to_full_step']:.3f} |"
    )
  print('\n| term | removed: 1 - without / all | alone / all |')
  print('|---|---|---|')
  for term, f in result['term_fractions_of_step'].items():
    print(f"| {term} | {f['removed']:.3f} | {f['alone']:.3f} |")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  for flag in (_ROUNDS, _STEPS):
    if flag.value < 1:
      raise app.UsageError(f'--{flag.name} must be >= 1, got {flag.value}')
  height, width = benchmark_lib.parse_size(_SIZE.value, 'size')
  result = benchmark(
      height,
      width,
      _COMMON.batch_size.value,
      _ROUNDS.value,
      _STEPS.value,
      _COMMON.filters_scale.value,
      _COMMON.jit_compile.value,
  )
  result['command'] = 'python tools/benchmark_dfv.py ' + shlex.join(sys.argv[1:])
  _print_tables(result)
  benchmark_lib.write_json(_COMMON.output.value, result)


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(main, __name__)


if __name__ == '__main__':
  run()
