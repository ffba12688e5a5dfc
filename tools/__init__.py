"""Command-line entry points (absl), installed as `taskology_tf_tools` (see pyproject.toml).

Each tool runs as a console script (`taskology-train`, ...), as `python -m
taskology_tf_tools.<tool>`, or from a checkout as `python tools/<tool>.py`.
"""

import os

# Quieter TF start-up for command-line use; an explicit setting wins.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# The checkout this package was installed from (editable installs), where gin/ lives; relative
# --gin_file paths are tried as given first, then here.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_SEARCH_DIRS = [REPO_ROOT] if os.path.isdir(os.path.join(REPO_ROOT, 'gin')) else []


def run_app(main, module_name):
  """absl's app.run for a tool that may run as a console script.

  absl's --help lists the flags of the main module, which for a console script is the script
  wrapper, not the tool; registering the tool's flags as key flags of the program makes --help
  show them either way.
  """
  import sys  # pylint: disable=g-import-not-at-top

  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  program = sys.argv[0]
  for flag in flags.FLAGS.get_key_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(program, flag)
  app.run(main)
