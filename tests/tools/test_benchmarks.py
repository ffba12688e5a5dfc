"""The benchmark tools' shared timing loop (tools/benchmark_lib.py) and what the DfVitW step
benchmark (tools/benchmark_dfv.py) times: call order and counts, output form, and that each
'without <term>' variant leaves out exactly that term. No assertion reads a clock's value."""

import json
import os

from absl import app
import numpy as np
import pytest
import tensorflow as tf

from taskology_tf_tools import benchmark_lib


def test_interleaved_rounds_rotate_and_count_calls():
  calls = []
  steps = {name: (lambda name=name: calls.append(name)) for name in 'abc'}
  first, durations = benchmark_lib.interleaved_rounds(steps, rounds=3, calls_per_round=2)
  # First calls in order, then round r starts at step r mod 3, each step twice in a row.
  assert ''.join(calls) == 'abc' + 'aabbcc' + 'bbccaa' + 'ccaabb'
  assert sorted(first) == ['a', 'b', 'c']
  assert {k: len(v) for k, v in durations.items()} == {'a': 6, 'b': 6, 'c': 6}
  assert all(t >= 0.0 for v in durations.values() for t in v)
  with pytest.raises(ValueError, match='rounds'):
    benchmark_lib.interleaved_rounds(steps, rounds=0, calls_per_round=1)


def test_timed_call_copies_results_to_the_host():
  value, seconds = benchmark_lib.timed_call(lambda: {'a': tf.constant(2.0), 'b': [tf.ones(2)]})
  assert not isinstance(value['a'], tf.Tensor) and value['a'] == 2.0
  np.testing.assert_array_equal(value['b'][0], [1.0, 1.0])
  assert seconds >= 0.0


def test_time_step_keys_in_the_tools_order():
  calls = []
  result = benchmark_lib.time_step(lambda: calls.append(1), 3, items_per_step={'frames': 4})
  assert len(calls) == 4  # the first call and 3 timed ones
  assert list(result) == [
      'first_step_seconds',
      'median_step_seconds',
      'steps_per_second',
      'frames_per_second',
      'timed_steps',
      'load_average_1min',
  ]
  # frames/s = 4 / median = 4 * steps/s.
  assert result['frames_per_second'] == pytest.approx(4 * result['steps_per_second'])
  assert result['timed_steps'] == 3


def test_parse_size_and_its_errors():
  assert benchmark_lib.parse_size('128x416', 'size') == (128, 416)
  assert benchmark_lib.parse_size('48X64', 'sizes') == (48, 64)
  with pytest.raises(app.UsageError, match='--sizes:.*not HxW'):
    benchmark_lib.parse_size('48x64x3', 'sizes')
  with pytest.raises(app.UsageError, match='--size:.*positive'):
    benchmark_lib.parse_size('0x64', 'size')


def test_write_json_is_optional_and_leaves_no_temporary(tmp_path):
  benchmark_lib.write_json(None, {'a': 1})  # no --output: nothing to do
  path = os.path.join(tmp_path, 'sub', 'out.json')
  benchmark_lib.write_json(path, {'a': [1, 2]})
  with open(path) as f:
    assert json.load(f) == {'a': [1, 2]}
  assert os.listdir(os.path.dirname(path)) == ['out.json']


def test_dfv_ratio_is_the_median_of_per_round_ratios():
  from taskology_tf_tools import benchmark_dfv  # pylint: disable=g-import-not-at-top

  # Round 0: medians 1 (full) and 0.5 -> 0.5; round 1: 2 and 1.5 -> 0.75; median 0.625.
  durations = {benchmark_dfv.FULL: [1.0, 1.0, 2.0, 2.0], 'x': [0.5, 0.5, 1.5, 1.5]}
  assert benchmark_dfv._ratio(durations, 'x', 2, 2) == pytest.approx(0.625)  # pylint: disable=protected-access


def test_dfv_variants_leave_out_exactly_one_term():
  """At 16x24 with 1/8 widths: the full loss is the loss without a term plus that term alone,
  for every term; the surrogate loss of 'networks only' reaches every trainable weight."""
  from taskology_tf_tools import benchmark_dfv  # pylint: disable=g-import-not-at-top

  setup = benchmark_dfv._Setup(16, 24, 2, 0.125, jit=False)  # pylint: disable=protected-access
  names = list(setup.variants())
  assert names[0] == benchmark_dfv.FULL
  assert [n for n in names if n.startswith('without ')] == [
      f'without {t}' for t in benchmark_dfv.TERMS
  ]
  assert [n for n in names if n.endswith(' alone')] == [f'{t} alone' for t in benchmark_dfv.TERMS]
  predictions = {
      n: setup.tasks[n].predict_mediator(setup.models[n], setup.mediator, training=True)
      for n in setup.tasks
  }
  loss = setup._loss  # pylint: disable=protected-access
  full = float(loss(predictions, benchmark_dfv.TERMS))
  for term in benchmark_dfv.TERMS:
    rest = tuple(t for t in benchmark_dfv.TERMS if t != term)
    alone = float(loss(predictions, (term,)))
    assert alone > 0.0, term
    assert float(loss(predictions, rest)) + alone == pytest.approx(full, rel=1e-5), term
  with tf.GradientTape() as tape:
    predictions = {
        n: setup.tasks[n].predict_mediator(setup.models[n], setup.mediator, training=True)
        for n in setup.tasks
    }
    surrogate = benchmark_dfv._surrogate(predictions)  # pylint: disable=protected-access
  variables = [v for m in setup.models.values() for v in m.trainable_variables]
  missing = [v.name for v, g in zip(variables, tape.gradient(surrogate, variables)) if g is None]
  assert not missing


def test_common_flags_reject_bad_values_naming_the_flag():
  from absl import flags  # pylint: disable=g-import-not-at-top

  def parse(*argv):
    values = flags.FlagValues()
    common = benchmark_lib.define_common_flags(4, 'Frames.', filters_scale=True, flag_values=values)
    values(['prog', *argv])
    return common

  common = parse('--batch_size=2', '--filters_scale=0.25')
  assert (common.batch_size.value, common.filters_scale.value) == (2, 0.25)
  assert common.jit_compile.value is False and common.output.value is None
  with pytest.raises(flags.IllegalFlagValueError, match='--batch_size must be >= 1'):
    parse('--batch_size=0')
  with pytest.raises(flags.IllegalFlagValueError, match='--filters_scale must be > 0'):
    parse('--filters_scale=0')
  # Without filters_scale=True the flag does not exist.
  values = flags.FlagValues()
  assert benchmark_lib.define_common_flags(2, 'Images.', flag_values=values).filters_scale is None
  assert 'filters_scale' not in values
