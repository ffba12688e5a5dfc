r"""Proposes which consistency relations to wire in a collective experiment, from affinities.

Reads the affinities tools/taxonomy.py measured, ranks task pairs by their mutual transfer
affinity and prints (or writes) a gin fragment that wires the relations whose score passes
--threshold, weighted by score, to append to a collective experiment:

  python tools/propose_relations.py --affinities=runs/taxonomy/affinities.json \
      --output=runs/taxonomy/proposed_relations.gin
"""

import json
import sys

from absl import flags

from taskology_tf import files
import taskology_tf_tools

flags.DEFINE_string('affinities', None, 'affinities.json written by tools/taxonomy.py.')
flags.DEFINE_float('threshold', 1.0, 'Wire relations scoring at least this (1 = average source).')
flags.DEFINE_string('output', None, 'Write the gin fragment here (default: print only).')
flags.mark_flag_as_required('affinities')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from taskology_tf.taxonomy import relations  # pylint: disable=g-import-not-at-top

  try:
    with open(FLAGS.affinities) as f:
      data = json.load(f)
    affinities = {t: d['affinity'] for t, d in data['targets'].items()}
  except (OSError, KeyError, ValueError) as e:
    print(f'error: --affinities {FLAGS.affinities!r}: {type(e).__name__}: {e}', file=sys.stderr)
    return 2
  fragment = relations.propose(affinities, FLAGS.threshold)
  print(fragment, end='')
  if FLAGS.output:
    files.write_text_atomic(FLAGS.output, fragment)
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
