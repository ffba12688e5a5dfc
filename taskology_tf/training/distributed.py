"""Distributed collective training: one trainer per task, peers served over gRPC (Sec. 3.3).

`build_task_trainer` turns a multi-task experiment into the trainer of ONE task: its own
network, optimizer, schedule and tf.distribute strategy (from its TaskConfig), exporting
SavedModel snapshots every `export_every` steps into TF Serving's layout, and reading its peers'
predictions on mediator batches from a model server. Consistency gradients reach only its own
network; the peers are constants (the distributed semantics of trainer.py).
"""

import os
import time
from typing import Callable, Optional

import gin

from taskology_tf.serving.export import SnapshotWriter
from taskology_tf.training import frozen as frozen_lib
from taskology_tf.training.grpc_peers import GrpcPeers
from taskology_tf.training.trainer import Trainer


@gin.configurable(module='taskology_tf.training')
class DistributedConfig:
  """How a task trainer talks to its peers.

  Args:
    server: 'host:port' of the model server (ours or tensorflow_model_server).
    snapshot_root: where this trainer exports `<snapshot_root>/<task>/<step>/` (any
      tf.io.gfile path, gs:// included); the server's models.config points at it. Default:
      `<run_dir>/../snapshots`.
    export_every: export a snapshot every this many steps (and at the start).
    export_every_seconds: instead of export_every, export at the first step that ends at least
      this many seconds of wall-clock time after the last export (> 0; None: by steps). With
      peer_refresh_steps = 1 the peers in use then change every this many seconds (Fig. 5).
    keep_snapshots: snapshots kept per task (0: keep all).
    peer_refresh_steps: the peer version in use changes at most every this many steps.
    peer_refresh_seconds: instead of peer_refresh_steps, the peer version in use (the server's
      latest) changes at most every this many seconds of wall-clock time (> 0; None: by steps).
    pin_versions: deterministic staleness: ask for exactly version
      floor(step / peer_refresh_steps) * peer_refresh_steps (export_every must divide it).
    peer_timeout_seconds: longest wait for one peer answer before skipping consistency.
  """

  def __init__(
      self,
      server: str = '127.0.0.1:8500',
      snapshot_root: Optional[str] = None,
      export_every: int = 100,
      export_every_seconds: Optional[float] = None,
      keep_snapshots: int = 5,
      peer_refresh_steps: int = 1,
      peer_refresh_seconds: Optional[float] = None,
      pin_versions: bool = False,
      peer_timeout_seconds: float = 30.0,
  ):
    for name, value, low in (
        ('export_every', export_every, 1),
        ('keep_snapshots', keep_snapshots, 0),
        ('peer_refresh_steps', peer_refresh_steps, 1),
    ):
      if value < low:
        raise ValueError(f'DistributedConfig.{name} must be >= {low}, got {value}')
    for name, value in (
        ('export_every_seconds', export_every_seconds),
        ('peer_refresh_seconds', peer_refresh_seconds),
    ):
      if value is not None and not value > 0:
        raise ValueError(f'DistributedConfig.{name} must be > 0 (or None), got {value!r}')
    if pin_versions and (peer_refresh_seconds is not None or export_every_seconds is not None):
      raise ValueError(
          'DistributedConfig: pin_versions asks for versions by step number; it cannot be '
          'combined with DistributedConfig.peer_refresh_seconds or '
          'DistributedConfig.export_every_seconds (wall-clock cadences)'
      )
    if peer_timeout_seconds <= 0:
      raise ValueError(
          'DistributedConfig.peer_timeout_seconds must be > 0, got ' f'{peer_timeout_seconds}'
      )
    if pin_versions and peer_refresh_steps % export_every:
      raise ValueError(
          f'DistributedConfig: pin_versions needs export_every ({export_every}) to divide '
          f'peer_refresh_steps ({peer_refresh_steps}), or pinned versions never exist'
      )
    self.server = server
    self.snapshot_root = snapshot_root
    self.export_every = export_every
    self.export_every_seconds = export_every_seconds
    self.keep_snapshots = keep_snapshots
    self.peer_refresh_steps = peer_refresh_steps
    self.peer_refresh_seconds = peer_refresh_seconds
    self.pin_versions = pin_versions
    self.peer_timeout_seconds = peer_timeout_seconds


def versions_to_keep_loaded(config: DistributedConfig) -> Optional[int]:
  """How many versions per model the server should keep loaded for trainers so configured.

  Trainers taking their peers' latest snapshot need only the newest one; pinned versions
  (pin_versions) may be any snapshot still on disk, i.e. the last `keep_snapshots`, or all
  of them (None) when keep_snapshots is 0.
  """
  if not config.pin_versions:
    return 1
  return config.keep_snapshots or None


def models_config_text(snapshot_root: str, tasks, num_versions: Optional[int]) -> str:
  """A TF Serving ModelServerConfig text proto serving each task's snapshots.

  The same file works for our ModelServer (tools/serve.py) and for tensorflow_model_server
  (--model_config_file), with `<snapshot_root>/<task>` as each model's base path.
  num_versions: serve the newest this many versions (latest policy); None serves all.
  """
  if num_versions is not None and num_versions < 1:
    raise ValueError(f'num_versions must be >= 1 (or None for all versions), got {num_versions}')
  policy = 'all {}' if num_versions is None else f'latest {{ num_versions: {num_versions} }}'
  entries = []
  for task in tasks:
    entries.append(
        '  config {\n'
        f'    name: "{task}"\n'
        f'    base_path: "{os.path.join(snapshot_root, task)}"\n'
        '    model_platform: "tensorflow"\n'
        f'    model_version_policy {{ {policy} }}\n'
        '  }\n'
    )
  return 'model_config_list {\n' + ''.join(entries) + '}\n'


class SnapshotExporter:
  """A trainer hook exporting the live task's network (TF Serving layout): at the start, every
  `every` steps or, with `every_seconds`, at the first step ending at least that many seconds
  after the last export, and at the end.

  Version = global step, so a peer's answer tells its staleness in steps.
  """

  def __init__(
      self,
      task_name: str,
      snapshot_root: str,
      every: int,
      keep_last: int,
      every_seconds: Optional[float] = None,
      clock: Callable[[], float] = time.monotonic,
  ):
    if every_seconds is not None and not every_seconds > 0:
      raise ValueError(f'SnapshotExporter: every_seconds must be > 0, got {every_seconds!r}')
    self.task_name = task_name
    self.snapshot_root = snapshot_root
    self.every = every
    self.every_seconds = every_seconds
    self.keep_last = keep_last
    self._clock = clock
    self._writer: Optional[SnapshotWriter] = None
    self.last_exported: Optional[int] = None
    self._last_export_time: Optional[float] = None

  def _due(self, step: int, trainer: Trainer) -> bool:
    if step == trainer.loop.num_steps:
      return True
    if self.every_seconds is None:
      return step % self.every == 0
    return (
        self._last_export_time is None
        or self._clock() - self._last_export_time >= self.every_seconds
    )

  def __call__(self, step: int, trainer: Trainer) -> None:
    if not self._due(step, trainer):
      return
    if step == self.last_exported or not trainer.is_chief:  # One export per task, the chief's.
      return
    if self._writer is None:  # Traced once, at the first export.
      task = trainer.setups[self.task_name].task
      model = trainer.models[self.task_name]
      self._writer = SnapshotWriter(
          model,
          task.serving_function(model),
          self.snapshot_root,
          self.task_name,
          keep_last=self.keep_last,
      )
    self._writer.write(step)
    self.last_exported = step
    self._last_export_time = self._clock()


def build_task_trainer(
    experiment, task_name: str, run_dir: str, config: Optional[DistributedConfig] = None
) -> Trainer:
  """The trainer of one task of `experiment`, with gRPC peers and snapshot export.

  Args:
    experiment: a taskology_tf.training.experiment.Experiment.
    task_name: the task to train here.
    run_dir: this trainer's run directory.
    config: DistributedConfig (default: from gin).
  """
  config = config or DistributedConfig()
  if experiment.config(task_name).frozen_from:  # config() fails with the task list if unknown.
    raise ValueError(
        f'task {task_name!r} is frozen (TaskConfig.frozen_from = '
        f'{experiment.config(task_name).frozen_from!r}) and has no trainer; tools/launch.py '
        'exports it once for the model server (training/frozen.py)'
    )
  peer_names = sorted(
      {t for r in experiment.relations if task_name in r.tasks for t in r.tasks if t != task_name}
  )
  frozen = set(experiment.frozen_task_names)
  trained_peers = [n for n in peer_names if n not in frozen]
  frozen_peers = [n for n in peer_names if n in frozen]
  sources = []
  if trained_peers:
    sources.append(
        GrpcPeers(
            [experiment.config(n).task for n in trained_peers],
            config.server,
            refresh_steps=config.peer_refresh_steps,
            refresh_seconds=config.peer_refresh_seconds,
            pin_versions=config.pin_versions,
            timeout_seconds=config.peer_timeout_seconds,
        )
    )
  if frozen_peers:
    # A frozen peer has one served version: always take the latest, never a pinned step.
    sources.append(
        GrpcPeers(
            [experiment.config(n).task for n in frozen_peers],
            config.server,
            refresh_steps=1,
            pin_versions=False,
            timeout_seconds=config.peer_timeout_seconds,
        )
    )
  peers = None
  if len(sources) == 1:
    peers = sources[0]
  elif sources:
    peers = frozen_lib.CombinedPeers(sources)
  snapshot_root = config.snapshot_root or os.path.join(
      os.path.dirname(os.path.abspath(run_dir)), 'snapshots'
  )
  exporter = SnapshotExporter(
      task_name,
      snapshot_root,
      config.export_every,
      config.keep_snapshots,
      every_seconds=config.export_every_seconds,
  )
  experiment.peer_gradients = False  # Peers are remote constants.
  experiment.peer_refresh_steps = 0
  experiment.peer_refresh_seconds = None
  return experiment.build_trainer(run_dir, live=[task_name], peer_source=peers, hooks=[exporter])
