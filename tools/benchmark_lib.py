"""What the tools/benchmark_*.py scripts share (not a tool itself): the timing loop, sizes, output.

A step is a callable with no arguments whose result (tensors, or a nest of them) is copied to the
host before the clock stops, so asynchronous work is counted in the step that launched it. Its
first call traces (and, under XLA, compiles) and is timed on its own; the calls after it are
timed one by one. Several steps are timed in interleaved rounds (round r runs every step's
calls in turn, starting at step r mod n so no step always runs first), so a neighbour that loads
the machine for a while slows every step alike and their ratios stay meaningful on a shared
machine.
"""

import os
import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from absl import app
from absl import flags
import tensorflow as tf

from taskology_tf import files


def _to_host(value):
  return value.numpy() if isinstance(value, (tf.Tensor, tf.Variable)) else value


def timed_call(fn: Callable[[], Any]) -> Tuple[Any, float]:
  """(fn()'s result copied to the host, wall-clock seconds including the copy)."""
  start = time.perf_counter()
  value = tf.nest.map_structure(_to_host, fn())
  return value, time.perf_counter() - start


def interleaved_rounds(
    steps: Mapping[str, Callable[[], Any]], rounds: int, calls_per_round: int
) -> Tuple[Dict[str, float], Dict[str, List[float]]]:
  """Times every step's first call, then `rounds` interleaved rounds of `calls_per_round` each.

  Args:
    steps: {name: step}; round r runs them in this order rotated by r.
    rounds: timed rounds (>= 1), after the first calls.
    calls_per_round: timed calls of each step per round (>= 1).

  Returns:
    first_seconds: {name: seconds of the first call (trace, compile and one run)}.
    durations: {name: seconds of each timed call, in order}.
  """
  if rounds < 1 or calls_per_round < 1:
    raise ValueError(f'rounds and calls_per_round must be >= 1, got {rounds}, {calls_per_round}')
  first_seconds = {name: timed_call(step)[1] for name, step in steps.items()}
  durations = {name: [] for name in steps}
  names = list(steps)
  for r in range(rounds):
    shift = r % len(names)
    for name in names[shift:] + names[:shift]:
      for _ in range(calls_per_round):
        durations[name].append(timed_call(steps[name])[1])
  return first_seconds, durations


def time_step(
    step: Callable[[], Any], steps: int, items_per_step: Optional[Mapping[str, int]] = None
) -> Dict[str, Any]:
  """One step's first call and `steps` timed calls after it, summarised.

  Args:
    step: the step (module docstring).
    steps: timed calls after the first (>= 1).
    items_per_step: e.g. {'frames': 4}: adds 'frames_per_second' (4 / median step).

  Returns:
    {'first_step_seconds', 'median_step_seconds', 'steps_per_second', then '<item>_per_second'
    for each of `items_per_step`, 'timed_steps', 'load_average_1min'} (the 1-minute load
    average read after the timed calls).
  """
  first, durations = interleaved_rounds({'step': step}, rounds=1, calls_per_round=steps)
  median = statistics.median(durations['step'])
  result = {
      'first_step_seconds': first['step'],
      'median_step_seconds': median,
      'steps_per_second': 1.0 / median,
  }
  for item, count in (items_per_step or {}).items():
    result[f'{item}_per_second'] = count / median
  result['timed_steps'] = steps
  result['load_average_1min'] = os.getloadavg()[0]
  return result


def parse_size(text: str, flag: str) -> Tuple[int, int]:
  """'HxW' -> (H, W), both positive; a usage error names `flag` otherwise."""
  try:
    height, width = (int(v) for v in text.lower().split('x'))
  except ValueError:
    raise app.UsageError(f'--{flag}: {text!r} is not HxW (e.g. 128x416)') from None
  if height < 1 or width < 1:
    raise app.UsageError(f'--{flag}: {text!r} must be positive')
  return height, width


def write_json(path: Optional[str], obj) -> None:
  """Writes `obj` as indented JSON to `path` atomically (a temporary file, then a rename).

  A tool's optional --output: nothing is written when `path` is None or empty.
  """
  if not path:
    return
  files.write_json_atomic(os.path.abspath(path), obj)


class CommonFlags(NamedTuple):
  """The flags every benchmark tool declares (their holders; read `.value` after parsing)."""

  batch_size: flags.FlagHolder
  jit_compile: flags.FlagHolder
  output: flags.FlagHolder
  filters_scale: Optional[flags.FlagHolder]


def define_common_flags(
    batch_size: int,
    batch_help: str,
    filters_scale: bool = False,
    flag_values: flags.FlagValues = flags.FLAGS,
) -> CommonFlags:
  """Declares --batch_size, --jit_compile, --output (and --filters_scale) for a benchmark tool.

  Parsing rejects --batch_size < 1 and --filters_scale <= 0 with an error naming the flag.

  Args:
    batch_size: --batch_size's default.
    batch_help: what one batch item is, e.g. 'Triplets per step (4 published).'.
    filters_scale: also declare --filters_scale (network widths, 1.0 = published).
    flag_values: where to declare them (absl's global FLAGS; tests pass their own).
  """
  batch = flags.DEFINE_integer('batch_size', batch_size, batch_help, flag_values=flag_values)
  flags.register_validator(
      'batch_size', lambda v: v >= 1, '--batch_size must be >= 1', flag_values=flag_values
  )
  scale = None
  if filters_scale:
    scale = flags.DEFINE_float(
        'filters_scale', 1.0, 'Network widths (1.0 = published).', flag_values=flag_values
    )
    flags.register_validator(
        'filters_scale', lambda v: v > 0.0, '--filters_scale must be > 0', flag_values=flag_values
    )
  return CommonFlags(
      batch_size=batch,
      jit_compile=flags.DEFINE_bool(
          'jit_compile', False, 'Compile the timed steps with XLA.', flag_values=flag_values
      ),
      output=flags.DEFINE_string(
          'output', None, 'Optional JSON file for the results.', flag_values=flag_values
      ),
      filters_scale=scale,
  )
