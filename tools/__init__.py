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


def parse_record_at(values, steps: int):
  """The probes' --record_at: sorted distinct integer steps, each in [0, steps].

  Raises:
    ValueError: naming --record_at, for a value that is not an integer, one outside [0, steps]
      (naming --steps), or none at all.
  """
  try:
    record_at = sorted({int(s) for s in values})
  except ValueError as e:
    raise ValueError(f'--record_at must be integers, got {values}') from e
  outside = [s for s in record_at if not 0 <= s <= steps]
  if outside or not record_at:
    raise ValueError(
        f'--record_at: {outside or "none given"}; each must be in [0, --steps={steps}]'
    )
  return record_at


def experiment_for_probe(gin_files, gin_bindings, task_flag: str, task_name: str):
  """Parses an experiment's gin files for a probe tool and checks what probes need.

  Args:
    gin_files, gin_bindings: the tool's --gin_file and --gin_bindings.
    task_flag: the flag naming the probed task (e.g. 'depth_task'), for the error message.
    task_name: its value.

  Returns:
    (experiment, task): the gin-built `Experiment` and the probed task.

  Raises:
    ValueError: naming the flag when the experiment has no such task, or the gin files when
      `Experiment.evaluation_clips` (the probes' data) is not set.
  """
  from taskology_tf.training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  experiment_lib.parse_gin(gin_files, gin_bindings, search_dirs=GIN_SEARCH_DIRS)
  experiment = experiment_lib.Experiment()
  if task_name not in experiment.task_names:
    raise ValueError(
        f'--{task_flag}={task_name!r}: the experiment of {gin_files} has tasks '
        f'{experiment.task_names}'
    )
  if experiment.evaluation_clips is None:
    raise ValueError(f'{gin_files}: Experiment.evaluation_clips is not set; nothing to probe on')
  return experiment, experiment.config(task_name).task
