r"""Benchmarks the indoor (Table 3) networks' training steps: first-step time and steps/s.

  nice -n 10 python tools/benchmark_indoor.py --sizes=240x320,48x64 \
      --output=runs/bench_indoor.json                  # BENCHMARKS.md (indoor networks)

For each network (`DfvDepthTask`, the DfVitW ResNet-18 U-Net; `DfvNormalsTask`, the same U-Net
with a unit-normal head) and each size, one training step is what the trainer runs per task: the
task's forward pass in training mode (randomized layer norm noise on), its supervised loss with
the valid-depth mask (the batch has ScanNet-like holes: 5% of pixels at depth 0 with zero
normals), the decoder weight decay (`model.losses`), gradients and an Adam update, inside one
tf.function (optionally XLA-compiled). The first call traces (and compiles) the step; the
following `--steps` calls are timed and their median reported. The 1-minute load average is
read after the timed steps (the machine may be shared; a high load slows every number).
"""

import json
import os
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras as keras

from taskology_tf.tasks.dfv_depth import DfvDepthTask
from taskology_tf.tasks.dfv_normals import DfvNormalsTask
import taskology_tf_tools

NETWORKS = {'depth': DfvDepthTask, 'normals': DfvNormalsTask}

_NETWORKS = flags.DEFINE_list('networks', ['depth', 'normals'], 'Subset of depth, normals.')
_SIZES = flags.DEFINE_list('sizes', ['240x320', '48x64'], 'Image sizes HxW.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Frames per step.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed steps after the first.')
_FILTERS_SCALE = flags.DEFINE_float('filters_scale', 1.0, 'Network widths (1.0 = published).')
_JIT = flags.DEFINE_bool('jit_compile', False, 'Compile the step with XLA.')
_OUTPUT = flags.DEFINE_string('output', None, 'Optional JSON file for the results.')


def _parse_size(text: str):
  try:
    height, width = (int(v) for v in text.lower().split('x'))
  except ValueError:
    raise app.UsageError(f'--sizes: {text!r} is not HxW (e.g. 240x320)') from None
  if height < 1 or width < 1:
    raise app.UsageError(f'--sizes: {text!r} must be positive')
  return height, width


def _batch(height: int, width: int, batch_size: int):
  """uint8 images, depth in [0.5, 10) m with 5% holes (0), unit normals (zero at the holes)."""
  rng = np.random.default_rng(0)
  depth = rng.uniform(0.5, 10.0, (batch_size, height, width, 1)).astype(np.float32)
  holes = rng.uniform(size=depth.shape) < 0.05
  depth[holes] = 0.0
  normals = rng.normal(size=(batch_size, height, width, 3))
  normals = (normals / np.linalg.norm(normals, axis=-1, keepdims=True)).astype(np.float32)
  normals *= ~holes
  return {
      'image': tf.constant(rng.integers(0, 256, (batch_size, height, width, 3), np.uint8)),
      'depth': tf.constant(depth),
      'normals': tf.constant(normals),
  }


def benchmark(
    network: str,
    height: int,
    width: int,
    batch_size: int,
    steps: int,
    jit: bool,
    filters_scale: float = 1.0,
):
  """Returns the measurements of one network at one size as a dict."""
  keras.utils.set_random_seed(0)
  task = NETWORKS[network](height, width, filters_scale=filters_scale, max_depth=10.0)
  start = time.perf_counter()
  model = task.build_network()
  build_seconds = time.perf_counter() - start
  optimizer = keras.optimizers.Adam(1e-4)
  batch = _batch(height, width, batch_size)

  @tf.function(jit_compile=jit)
  def step(batch):
    with tf.GradientTape() as tape:
      outputs = task.call(model, task.dedicated_inputs(batch), training=True)
      loss, _ = task.supervised_loss(batch, outputs)
      loss += tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  start = time.perf_counter()
  float(step(batch))
  first_seconds = time.perf_counter() - start
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    float(step(batch))
    times.append(time.perf_counter() - start)
  return {
      'network': type(task).__name__,
      'size': [height, width],
      'batch_size': batch_size,
      'filters_scale': filters_scale,
      'jit_compile': jit,
      'parameters': int(sum(np.prod(v.shape) for v in model.trainable_variables)),
      'build_seconds': build_seconds,
      'first_step_seconds': first_seconds,
      'median_step_seconds': float(np.median(times)),
      'steps_per_second': float(1.0 / np.median(times)),
      'frames_per_second': float(batch_size / np.median(times)),
      'timed_steps': steps,
      'load_average_1min': os.getloadavg()[0],
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  unknown = sorted(set(_NETWORKS.value) - set(NETWORKS))
  if unknown:
    raise app.UsageError(f'--networks: unknown {unknown}; choose from {sorted(NETWORKS)}')
  if _STEPS.value < 1:
    raise app.UsageError(f'--steps must be >= 1, got {_STEPS.value}')
  sizes = [_parse_size(s) for s in _SIZES.value]
  results = []
  print('| network | size | batch | parameters | first step | steps/s | frames/s | load |')
  print('|---|---|---|---|---|---|---|---|')
  for height, width in sizes:
    for network in _NETWORKS.value:
      r = benchmark(
          network,
          height,
          width,
          _BATCH.value,
          _STEPS.value,
          _JIT.value,
          _FILTERS_SCALE.value,
      )
      results.append(r)
      print(
          f"| {r['network']} | {height}x{width} | {r['batch_size']} | {r['parameters']:,} | "
          f"{r['first_step_seconds']:.1f} s | {r['steps_per_second']:.2f} | "
          f"{r['frames_per_second']:.1f} | {r['load_average_1min']:.1f} |",
          flush=True,
      )
  if _OUTPUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
    tmp = _OUTPUT.value + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(results, f, indent=2)
    os.replace(tmp, _OUTPUT.value)


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(main, __name__)


if __name__ == '__main__':
  run()
