r"""Which settings keep a run bit-reproducible: trains one experiment in separate processes, each
under its own environment, and compares the final weights bit for bit with the first.

  python tools/reproducibility.py \
      --gin_file=gin/experiments/synthetic/depth_normals_sim2real.gin \
      --gin_bindings="synthetic_world_clips.data_dir='/tmp/demo_data'" --steps=20 \
      --variant=default: --variant=deterministic:@deterministic \
      --variant=isa_avx2:ONEDNN_MAX_CPU_ISA=AVX2,TF_ENABLE_ONEDNN_OPTS=0 \
      --variant=isa_sse41:ONEDNN_MAX_CPU_ISA=SSE41

A variant is NAME:SETTINGS, SETTINGS a comma-separated list of ENV=VALUE and `@deterministic`
(Experiment.deterministic = True). oneDNN (and TF's oneDNN-backed matrix multiplication) picks
kernels by the CPU's instruction set, so capping it (ONEDNN_MAX_CPU_ISA) simulates a machine
with an older or newer CPU.
"""

import os
import shlex
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

from taskology_tf import files
import taskology_tf_tools
from taskology_tf_tools import GIN_SEARCH_DIRS

flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s) of the experiment.')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings applied after the files.')
flags.DEFINE_integer('steps', 20, 'Training steps per run.')
flags.DEFINE_multi_string('variant', ['default:'], 'NAME:SETTINGS (see the module docstring).')
flags.DEFINE_string('output', None, 'Optional JSON file for the results.')
flags.DEFINE_string('worker_out', None, 'Internal: train once and save the weights here (.npz).')
FLAGS = flags.FLAGS


def _train_and_save(out):
  import numpy as np

  from taskology_tf.training import experiment as experiment_lib

  experiment_lib.parse_gin(
      FLAGS.gin_file,
      [*FLAGS.gin_bindings, f'LoopConfig.num_steps = {FLAGS.steps}'],
      search_dirs=GIN_SEARCH_DIRS,
  )
  trainer = experiment_lib.Experiment().build_trainer(tempfile.mkdtemp(prefix='repro_'))
  trainer.train()
  weights = [w.numpy() for name in sorted(trainer.models) for w in trainer.models[name].weights]
  np.savez(out, *weights)


def _parse_variant(text):
  name, _, settings = text.partition(':')
  if not name:
    raise app.UsageError(f'--variant={text!r}: expected NAME:SETTINGS')
  env, bindings = {}, []
  for item in filter(None, settings.split(',')):
    if item == '@deterministic':
      bindings.append('Experiment.deterministic = True')
    elif '=' in item:
      key, value = item.split('=', 1)
      env[key] = value
    else:
      raise app.UsageError(f'--variant={text!r}: {item!r} is neither ENV=VALUE nor @deterministic')
  return name, env, bindings


def main(argv):
  del argv
  if FLAGS.worker_out:
    _train_and_save(FLAGS.worker_out)
    return 0
  import numpy as np

  if not FLAGS.gin_file:
    raise app.UsageError('--gin_file is required')
  variants = [_parse_variant(v) for v in FLAGS.variant]
  tmp = tempfile.mkdtemp(prefix='repro_weights_')
  weights = {}
  for name, env, bindings in variants:
    out = os.path.join(tmp, f'{name}.npz')
    cmd = [sys.executable, '-m', 'taskology_tf_tools.reproducibility', f'--worker_out={out}']
    cmd += [f'--gin_file={g}' for g in FLAGS.gin_file]
    cmd += [f'--gin_bindings={b}' for b in [*FLAGS.gin_bindings, *bindings]]
    cmd += [f'--steps={FLAGS.steps}']
    print(
        f'[{name}] {" ".join(f"{k}={v}" for k, v in env.items())} training {FLAGS.steps} steps',
        flush=True,
    )
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode:
      print(proc.stderr[-3000:], file=sys.stderr)
      raise RuntimeError(f'variant {name!r} failed with exit code {proc.returncode}')
    with np.load(out) as data:
      weights[name] = [data[k] for k in data.files]
  reference = variants[0][0]
  rows = []
  for name, _, _ in variants:
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(weights[reference], weights[name]))
    same = all(np.array_equal(a, b) for a, b in zip(weights[reference], weights[name]))
    rows.append({'variant': name, 'bit_identical': same, 'max_abs_weight_difference': diff})
  print(f'\n| variant (vs {reference}) | bit-identical | max |weight difference| |')
  print('|---|---|---|')
  for r in rows:
    print(f"| {r['variant']} | {r['bit_identical']} | {r['max_abs_weight_difference']:.3g} |")
  if FLAGS.output:
    files.write_json_atomic(
        FLAGS.output,
        {'command': 'python tools/reproducibility.py ' + shlex.join(sys.argv[1:]), 'rows': rows},
    )
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
