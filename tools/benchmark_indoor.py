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

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras as keras

from taskology_tf.tasks.dfv_depth import DfvDepthTask
from taskology_tf.tasks.dfv_normals import DfvNormalsTask
import taskology_tf_tools
from taskology_tf_tools import benchmark_lib

NETWORKS = {'depth': DfvDepthTask, 'normals': DfvNormalsTask}

_NETWORKS = flags.DEFINE_list('networks', ['depth', 'normals'], 'Subset of depth, normals.')
_SIZES = flags.DEFINE_list('sizes', ['240x320', '48x64'], 'Image sizes HxW.')
_COMMON = benchmark_lib.define_common_flags(4, 'Frames per step.', filters_scale=True)
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed steps after the first.')


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
  model, build_seconds = benchmark_lib.timed_call(task.build_network)
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

  timing = benchmark_lib.time_step(
      lambda: step(batch), steps, items_per_step={'frames': batch_size}
  )
  return {
      'network': type(task).__name__,
      'size': [height, width],
      'batch_size': batch_size,
      'filters_scale': filters_scale,
      'jit_compile': jit,
      'parameters': int(sum(np.prod(v.shape) for v in model.trainable_variables)),
      'build_seconds': build_seconds,
      **timing,
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  unknown = sorted(set(_NETWORKS.value) - set(NETWORKS))
  if unknown:
    raise app.UsageError(f'--networks: unknown {unknown}; choose from {sorted(NETWORKS)}')
  if _STEPS.value < 1:
    raise app.UsageError(f'--steps must be >= 1, got {_STEPS.value}')
  sizes = [benchmark_lib.parse_size(s, 'sizes') for s in _SIZES.value]
  results = []
  print('| network | size | batch | parameters | first step | steps/s | frames/s | load |')
  print('|---|---|---|---|---|---|---|---|')
  for height, width in sizes:
    for network in _NETWORKS.value:
      r = benchmark(
          network,
          height,
          width,
          _COMMON.batch_size.value,
          _STEPS.value,
          _COMMON.jit_compile.value,
          _COMMON.filters_scale.value,
      )
      results.append(r)
      print(
          f"| {r['network']} | {height}x{width} | {r['batch_size']} | {r['parameters']:,} | "
          f"{r['first_step_seconds']:.1f} s | {r['steps_per_second']:.2f} | "
          f"{r['frames_per_second']:.1f} | {r['load_average_1min']:.1f} |",
          flush=True,
      )
  benchmark_lib.write_json(_COMMON.output.value, results)


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(main, __name__)


if __name__ == '__main__':
  run()
