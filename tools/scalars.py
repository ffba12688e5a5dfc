r"""Prints a run's TensorBoard scalars as a table: the numbers a README cites from a curve.

Reads every event file under `<run_dir>/<subdir>` (the trainer writes `train/` and `eval/`),
keeps the scalar summaries whose tag matches --tags (a regular expression, searched) at the
--steps asked for (all steps if none), and prints a markdown table, one row per step, one
column per tag (`-` where a tag has no value at that step). With --output also writes it.

  python tools/scalars.py --run_dir=runs/table1_fprior_wide_he_ts1/a/seed_1 \
      --tags='closer_fraction|dfv_consistency/(rgb|translation)_error' --steps=50,100
"""

import glob
import os
import re
import sys

from absl import flags

from taskology_tf import files
import taskology_tf_tools

flags.DEFINE_string('run_dir', None, 'Run directory.')
flags.DEFINE_string('subdir', 'train', "Summary folder under --run_dir ('train' or 'eval').")
flags.DEFINE_string('tags', '.', 'Regular expression; tags where it is found are kept.')
flags.DEFINE_list('steps', [], 'Steps to print (all steps if empty).')
flags.DEFINE_string('output', None, 'Also write the table here (markdown).')
flags.mark_flag_as_required('run_dir')
FLAGS = flags.FLAGS


def read_scalars(folder, pattern, steps=None):
  """{step: {tag: value}} of the scalar summaries in `folder` whose tag matches `pattern`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  paths = sorted(glob.glob(os.path.join(folder, 'events.out.tfevents*')))
  if not paths:
    raise FileNotFoundError(f'{folder}: no TensorBoard event files (events.out.tfevents*)')
  regex = re.compile(pattern)
  table = {}
  for path in paths:
    for event in tf.compat.v1.train.summary_iterator(path):
      if steps is not None and event.step not in steps:
        continue
      for value in event.summary.value:
        if not regex.search(value.tag):
          continue
        if value.HasField('tensor'):
          array = tf.make_ndarray(value.tensor)
          if array.size != 1:
            continue  # images and histograms are not scalars
          number = float(array.reshape(()))
        elif value.HasField('simple_value'):
          number = float(value.simple_value)
        else:
          continue
        table.setdefault(int(event.step), {})[value.tag] = number
  return table


def to_markdown(table):
  tags = sorted({tag for row in table.values() for tag in row})
  lines = ['| step | ' + ' | '.join(tags) + ' |', '|---' * (len(tags) + 1) + '|']
  for step in sorted(table):
    cells = [f'{table[step][t]:.6g}' if t in table[step] else '-' for t in tags]
    lines.append(f'| {step} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  try:
    re.compile(FLAGS.tags)
  except re.error as e:
    raise ValueError(f'--tags {FLAGS.tags!r} is not a regular expression: {e}') from e
  try:
    steps = {int(s) for s in FLAGS.steps} if FLAGS.steps else None
  except ValueError as e:
    raise ValueError(f'--steps must be integers, got {FLAGS.steps}') from e
  table = read_scalars(os.path.join(FLAGS.run_dir, FLAGS.subdir), FLAGS.tags, steps)
  if not table:
    raise ValueError(
        f'{FLAGS.run_dir}/{FLAGS.subdir}: no scalar matches --tags={FLAGS.tags!r}'
        + (f' at --steps={sorted(steps)}' if steps else '')
    )
  text = to_markdown(table)
  if FLAGS.output:
    files.write_text_atomic(FLAGS.output, text)
  print(text)
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
