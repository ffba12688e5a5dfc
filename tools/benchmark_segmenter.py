r"""Benchmarks the NAS-FPN segmentation task's training step: first-step time and steps/s.

  python tools/benchmark_segmenter.py --config=full --height=128 --width=416 \
      --output=runs/bench_segmenter_full.json          # BENCHMARKS.md (NAS-FPN segmenter)
  python tools/benchmark_segmenter.py --config=small --height=48 --width=64 \
      --output=runs/bench_segmenter_small.json

One training step is what the trainer runs per task: the task's forward pass in training mode,
Model Garden's segmentation loss, gradients, and an Adam update, inside one tf.function
(optionally XLA-compiled). The first call traces (and compiles) the step; the following
`--steps` calls are timed. Configs:

  full   ResNet-50, NAS-FPN levels 3-7, 256 filters, 5 repeats, head 2 x 256 (the paper's).
  small  ResNet-18 at 1/4 width, 64 filters, 3 repeats, head 1 x 64 (synthetic scale).
"""

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras as keras

from taskology_tf.tasks.segmentation import SegmentationTask
import taskology_tf_tools
from taskology_tf_tools import benchmark_lib

CONFIGS = {
    'full': dict(),
    'small': dict(
        backbone_depth=18,
        backbone_width_multiplier=0.25,
        num_filters=64,
        num_repeats=3,
        head_num_convs=1,
        head_num_filters=64,
    ),
}

_CONFIG = flags.DEFINE_enum('config', 'full', list(CONFIGS), 'Segmenter size.')
_HEIGHT = flags.DEFINE_integer('height', 128, 'Image rows.')
_WIDTH = flags.DEFINE_integer('width', 416, 'Image columns.')
_COMMON = benchmark_lib.define_common_flags(2, 'Images per step.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps after the first.')


def benchmark(config: str, height: int, width: int, batch_size: int, steps: int, jit: bool):
  """Returns the measurements as a dict."""
  keras.utils.set_random_seed(0)
  task = SegmentationTask(height, width, network='nasfpn', project_classes=True, **CONFIGS[config])
  model, build_seconds = benchmark_lib.timed_call(task.build_network)
  optimizer = keras.optimizers.Adam(1e-4)
  rng = np.random.default_rng(0)
  batch = {
      'image': tf.constant(rng.integers(0, 256, (batch_size, height, width, 3), np.uint8)),
      'semantics': tf.constant(rng.integers(0, task.num_classes, (batch_size, height, width))),
  }

  @tf.function(jit_compile=jit)
  def step(batch):
    with tf.GradientTape() as tape:
      outputs = task.call(model, task.dedicated_inputs(batch), training=True)
      loss, _ = task.supervised_loss(batch, outputs)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None]
    )
    return loss

  timing = benchmark_lib.time_step(lambda: step(batch), steps)
  return {
      'config': config,
      'size': [height, width],
      'batch_size': batch_size,
      'jit_compile': jit,
      'parameters': int(model.count_params()),
      'build_seconds': build_seconds,
      **timing,
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  result = benchmark(
      _CONFIG.value,
      _HEIGHT.value,
      _WIDTH.value,
      _COMMON.batch_size.value,
      _STEPS.value,
      _COMMON.jit_compile.value,
  )
  print(
      f"| {result['config']} | {_HEIGHT.value}x{_WIDTH.value} | {result['batch_size']} | "
      f"{result['parameters']:,} | {result['first_step_seconds']:.1f} s | "
      f"{result['steps_per_second']:.2f} | {result['load_average_1min']:.1f} |"
  )
  benchmark_lib.write_json(_COMMON.output.value, result)


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(main, __name__)


if __name__ == '__main__':
  run()
