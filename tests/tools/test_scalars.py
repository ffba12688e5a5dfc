"""tools/scalars.py on event files written here."""

import os

from tests.conftest import run_tool


def test_prints_the_matching_scalars_at_the_steps_asked(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  writer = tf.summary.create_file_writer(str(tmp_path / 'run' / 'train'))
  with writer.as_default():
    for step in (1, 2, 3):
      tf.summary.scalar('metrics/closer_fraction', 0.25 * step, step=step)  # 0.25, 0.5, 0.75
      tf.summary.scalar('total', 10.0 + step, step=step)
    tf.summary.image('picture', tf.zeros([1, 2, 2, 3]), step=2)
  writer.flush()
  out = str(tmp_path / 'table.md')
  proc = run_tool(
      'scalars',
      [f'--run_dir={tmp_path}/run', '--tags=closer', '--steps=1,3', f'--output={out}'],
      timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  text = open(out).read()
  assert text.splitlines() == [
      '| step | metrics/closer_fraction |',
      '|---|---|',
      '| 1 | 0.25 |',
      '| 3 | 0.75 |',
  ]
  assert 'total' not in proc.stdout and '0.5 ' not in proc.stdout
  missing = run_tool('scalars', [f'--run_dir={tmp_path}/nowhere'], timeout=300)
  assert missing.returncode != 0 and 'no TensorBoard event files' in missing.stderr
  assert os.path.join('nowhere', 'train') in missing.stderr
  nothing = run_tool('scalars', [f'--run_dir={tmp_path}/run', '--tags=absent'], timeout=300)
  assert nothing.returncode != 0 and "no scalar matches --tags='absent'" in nothing.stderr
