"""Frozen tasks: a task network loaded from an earlier run and never trained (Table 1 C and D).

A task whose `TaskConfig.frozen_from` names an earlier run is not live in any trainer. Its
network is rebuilt from the task definition and its weights are loaded from

- a run directory (its `checkpoints/` folder, latest checkpoint), a checkpoint directory, or a
  checkpoint prefix (`.../ckpt-500`): the trainer's checkpoint, whose network is saved under
  `model_<task name>`; or
- a SavedModel directory (`saved_model.pb`), or a TF Serving base path of numbered versions
  (`snapshots/<task>`, the newest is taken): a snapshot written by `serving.export`, whose
  variables are the network's in order (`model_variables`).

Either way the loaded network computes exactly what the source network computed. In one
process the frozen network answers as a peer (`FrozenPeers`), so relations cannot tell it from
a live or a stale peer; in distributed mode `tools/launch.py` exports it once into the snapshot
root and the model server serves it like any other peer (`export_frozen_snapshot`).
"""

import os
from typing import Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import tensorflow as tf
import tf_keras as keras

from taskology_tf.serving import export as export_lib
from taskology_tf.tasks import base as task_base
from taskology_tf.tasks.base import Task
from taskology_tf.training.peers import PeerSource


class FrozenLoadError(ValueError):
  """A frozen task's source does not exist or does not match the task's network."""


def _binding(task_name: str) -> str:
  return f'TaskConfig.frozen_from of task {task_name!r}'


def resolve_source(path: str, task_name: str) -> Tuple[str, str]:
  """Finds what `path` holds: ('checkpoint', prefix) or ('saved_model', directory).

  Args:
    path: a run directory, a checkpoint directory or prefix, a SavedModel directory or a TF
      Serving base path (tf.io.gfile path).
    task_name: the frozen task (named in errors).

  Raises:
    FrozenLoadError: nothing loadable at `path` (the message names the path and the binding).
  """
  where = f'{_binding(task_name)} = {path!r}'
  if not path:
    raise FrozenLoadError(f'{where}: empty path')
  if tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
    return 'saved_model', path
  versions = export_lib.list_versions(path)
  if versions:
    newest = os.path.join(path, str(versions[-1]))
    if tf.io.gfile.exists(os.path.join(newest, 'saved_model.pb')):
      return 'saved_model', newest
  for directory in (os.path.join(path, 'checkpoints'), path):
    if tf.io.gfile.isdir(directory):
      latest = tf.train.latest_checkpoint(directory)
      if latest:
        return 'checkpoint', latest
  if tf.io.gfile.exists(path + '.index'):
    return 'checkpoint', path
  if not tf.io.gfile.exists(path) and not tf.io.gfile.exists(path + '.index'):
    raise FrozenLoadError(f'{where}: no such file or directory')
  raise FrozenLoadError(
      f'{where}: holds neither a checkpoint (a run directory with checkpoints/, a checkpoint '
      'directory or prefix) nor a SavedModel (saved_model.pb, or numbered versions of one)'
  )


def checkpoint_step(prefix: str) -> Optional[int]:
  """The global step of a trainer checkpoint (its `step` variable), or None."""
  try:
    return int(tf.train.load_variable(prefix, 'step/.ATTRIBUTES/VARIABLE_VALUE'))
  except (tf.errors.NotFoundError, ValueError):
    return None


def _load_checkpoint(task: Task, model: keras.Model, prefix: str, path: str) -> None:
  key = f'model_{task.name}'
  names = [n for n, _ in tf.train.list_variables(prefix)]
  held = sorted({n.split('/', 1)[0] for n in names if n.startswith('model_')})
  if not any(n.startswith(key + '/') for n in names):
    raise FrozenLoadError(
        f'{_binding(task.name)} = {path!r}: checkpoint {prefix} holds no network named {key!r} '
        f'(it holds {held or "no networks"}); the source run must have trained a task named '
        f'{task.name!r}'
    )
  try:
    status = tf.train.Checkpoint(**{key: model}).restore(prefix)
    status.expect_partial()
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError) as e:  # ValueError: a variable's shape differs.
    raise FrozenLoadError(
        f'{_binding(task.name)} = {path!r}: the variables of {key!r} in {prefix} do not match '
        f"task {task.name!r}'s network (built from this experiment's gin): {e}"
    ) from e


def _load_saved_model(task: Task, model: keras.Model, directory: str, path: str) -> None:
  loaded = tf.saved_model.load(directory)
  source = getattr(loaded, 'model_variables', None)
  if source is None:
    raise FrozenLoadError(
        f'{_binding(task.name)} = {path!r}: SavedModel {directory} has no `model_variables` '
        '(it was not written by taskology_tf.serving.export for a tf_keras network)'
    )
  source = list(source)
  target = list(model.variables)
  if len(source) != len(target):
    raise FrozenLoadError(
        f'{_binding(task.name)} = {path!r}: SavedModel {directory} holds {len(source)} '
        f"network variables, task {task.name!r}'s network has {len(target)}; the task's gin "
        'settings differ from the source run'
    )
  for i, (src, dst) in enumerate(zip(source, target)):
    if src.shape != dst.shape or src.dtype != dst.dtype:
      raise FrozenLoadError(
          f'{_binding(task.name)} = {path!r}: variable {i} ({dst.name}) is {dst.shape} '
          f'{dst.dtype.name} in the network but {src.shape} {src.dtype.name} in {directory}'
      )
  for src, dst in zip(source, target):
    dst.assign(src)


def load_frozen_network(task: Task, path: str) -> Tuple[keras.Model, Dict[str, object]]:
  """Builds `task`'s network and loads its weights from `path` (see the module docstring).

  Returns:
    (network with trainable = False, info {'kind', 'source', 'step'}); step is the source's
    global step when known (a checkpoint's, or a snapshot's version), else None.

  Raises:
    FrozenLoadError: `path` is missing, holds nothing loadable, or does not match the network.
  """
  kind, source = resolve_source(path, task.name)
  model = task.build_network()
  if kind == 'checkpoint':
    _load_checkpoint(task, model, source, path)
    step = checkpoint_step(source)
  else:
    _load_saved_model(task, model, source, path)
    base = os.path.basename(source.rstrip('/'))
    step = int(base) if base.isdigit() else None
  model.trainable = False
  logging.info('frozen task %r loaded from %s %s (step %s)', task.name, kind, source, step)
  return model, {'kind': kind, 'source': source, 'step': step}


class FrozenPeers(PeerSource):
  """Frozen networks answering as peers: constant, never trained, never refreshed.

  Args:
    tasks: the frozen tasks.
    models: {task name: loaded network} (`load_frozen_network`).
    steps: {task name: the source's step or None}, logged as `frozen_step/<task>`.
  """

  def __init__(
      self,
      tasks: Sequence[Task],
      models: Mapping[str, keras.Model],
      steps: Optional[Mapping[str, Optional[int]]] = None,
  ):
    self._tasks = {t.name: t for t in tasks}
    missing = [n for n in self._tasks if n not in models]
    if missing:
      raise ValueError(f'FrozenPeers: no network given for frozen task(s) {missing}')
    self.models = {n: models[n] for n in self._tasks}
    self._info = {f'frozen_step/{n}': float(s) for n, s in (steps or {}).items() if s is not None}
    self._predict = tf.function(self._predict_all)

  @classmethod
  def load(cls, tasks_and_paths: Sequence[Tuple[Task, str]]) -> 'FrozenPeers':
    """Loads every (task, frozen_from) pair."""
    models, steps = {}, {}
    for task, path in tasks_and_paths:
      models[task.name], info = load_frozen_network(task, path)
      steps[task.name] = info['step']
    return cls([t for t, _ in tasks_and_paths], models, steps)

  @property
  def task_names(self):
    return tuple(self._tasks)

  def _predict_all(self, mediator):
    return task_base.predict_in_order(self._tasks, self.models, mediator, training=False)

  def predictions(self, step, mediator):
    del step
    return self._predict(dict(mediator)), dict(self._info)


class CombinedPeers(PeerSource):
  """Several peer sources as one (e.g. frozen peers next to stale copies or gRPC peers).

  Consistency is skipped (None) when any source cannot answer.
  """

  def __init__(self, sources: Sequence[PeerSource]):
    self.sources = [s for s in sources if s is not None]
    names = [n for s in self.sources for n in s.task_names]
    if len(names) != len(set(names)):
      raise ValueError(f'CombinedPeers: a task is answered by two peer sources: {names}')

  @property
  def task_names(self):
    return tuple(n for s in self.sources for n in s.task_names)

  def prefetch(self, step, mediator):
    for s in self.sources:
      s.prefetch(step, mediator)

  def predictions(self, step, mediator):
    out, info = {}, {}
    for s in self.sources:
      preds, more = s.predictions(step, mediator)
      info.update(more)
      if preds is None:
        return None, info
      out.update(preds)
    return out, info

  def checkpoint_items(self):
    items = {}
    for s in self.sources:
      items.update(s.checkpoint_items())
    return items

  def close(self):
    for s in self.sources:
      s.close()


def export_frozen_snapshot(task: Task, path: str, snapshot_root: str) -> str:
  """Exports a frozen task once into `<snapshot_root>/<task>/<version>/` for a model server.

  The version is the source's step (0 if unknown); an existing version is left as it is, so a
  relaunch does not rewrite it. Returns the version directory.
  """
  model, info = load_frozen_network(task, path)
  version = info['step'] if info['step'] is not None else 0
  return export_lib.export_snapshot(
      model, task.serving_function(model), snapshot_root, task.name, version, keep_last=0
  )
