"""training/results.py: mean/stderr tables and the peer-staleness summary of distributed runs."""

import math

import tensorflow as tf

from taskology_tf.training import results


def test_summarize_mean_and_standard_error():
  runs = [{'depth': {'abs_rel': v, 'num_pixels': 10.0}} for v in (1.0, 2.0, 3.0)]
  table = results.summarize({'a': runs}, metrics=[])
  # Mean 2; sample variance ((1-2)^2 + 0 + (3-2)^2) / 2 = 1; stderr sqrt(1 / 3).
  mean, se, n = table['a']['depth/abs_rel']
  assert (mean, n) == (2.0, 3)
  assert math.isclose(se, math.sqrt(1 / 3))
  assert 'depth/num_pixels' not in table['a']
  # One seed: no standard error, shown as the mean alone.
  single = results.summarize({'b': runs[:1]}, metrics=['depth/abs_rel'])
  assert math.isnan(single['b']['depth/abs_rel'][1])
  assert '| b | 1.0000 |' in results.to_markdown(single, 'T', 'cmd')


def test_peer_staleness_reads_the_trainers_tensorboard_scalars(tmp_path):
  for task, peer, steps in (('depth', 'normals', (9, 19)), ('normals', 'depth', (29,))):
    writer = tf.summary.create_file_writer(str(tmp_path / task / 'train'))
    with writer.as_default():
      for i, s in enumerate(steps):
        tf.summary.scalar(f'staleness_steps/{peer}', float(s), step=25 * (i + 1))
        tf.summary.scalar(f'staleness_seconds/{peer}', s / 10, step=25 * (i + 1))
        tf.summary.scalar('total', 123.0, step=25 * (i + 1))  # Not a staleness: ignored.
    writer.close()
  samples = results.peer_staleness(str(tmp_path))
  assert sorted(samples['steps']) == [9.0, 19.0, 29.0]
  assert [round(v, 6) for v in sorted(samples['seconds'])] == [0.9, 1.9, 2.9]


def test_staleness_summary_percentiles():
  # Sorted 1..10: the median pick is index 5 (6), 10th percentile index 1 (2), 90th index 9 (10).
  text = results.staleness_summary({'steps': list(range(10, 0, -1)), 'seconds': []})
  assert text.startswith('median 6 steps (10th-90th percentile 2 to 10, 10 samples)')
  assert 'no s samples' in text
