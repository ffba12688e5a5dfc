"""Peer sources: where a trainer gets the predictions of the tasks it does not train.

A trainer trains its *live* tasks and, for every relation, needs predictions of the other
tasks on the same mediator batch. Those come from a peer source, injected into the trainer:

- `StaleCopyPeers`: in-process frozen copies of the peer networks, refreshed from the live
  networks every `refresh_steps` steps or every `refresh_seconds` seconds of wall-clock time. With every task live in one process this simulates the
  distributed mode's staleness exactly and cheaply (Fig. 5's study).
- `GrpcPeers` (taskology_tf/training/grpc_peers.py): stale snapshots served over TF Serving's
  gRPC API by a model server.

Both return plain tensors; consistency relations cannot tell where predictions came from.
"""

import abc
import time
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from taskology_tf.tasks import base as task_base
from taskology_tf.tasks.base import Task

Predictions = Dict[str, Dict[str, tf.Tensor]]


class PeerSource(abc.ABC):
  """Supplies stale predictions of peer tasks on mediator batches."""

  @property
  @abc.abstractmethod
  def task_names(self) -> Tuple[str, ...]:
    """Names of the tasks this source answers for."""

  def prefetch(self, step: int, mediator: Mapping[str, tf.Tensor]) -> None:
    """Hints that `mediator` will be asked for at `step` (lets a remote source start early)."""
    del step, mediator

  @abc.abstractmethod
  def predictions(
      self, step: int, mediator: Mapping[str, tf.Tensor]
  ) -> Tuple[Optional[Predictions], Dict[str, float]]:
    """Returns ({task: {output: [B, T, ...]}} or None if unavailable, info scalars).

    info holds e.g. `staleness_steps/<task>`; None means the trainer must skip consistency
    this step (and say so), not fail.
    """

  def checkpoint_items(self) -> Dict[str, tf.Module]:
    """Trackable state to save with the trainer's checkpoint (for exact resume)."""
    return {}

  def close(self) -> None:
    """Releases threads and channels."""


class StaleCopyPeers(PeerSource):
  """Frozen in-process copies of live networks, refreshed every `refresh_steps` steps or every
  `refresh_seconds` seconds of wall-clock time.

  By steps: at step s the copies hold the weights the live networks had at step
  floor(s / refresh_steps) * refresh_steps, i.e. the peers are between 0 and refresh_steps - 1
  steps stale, as a distributed trainer whose peers export every `refresh_steps` steps and
  whose client pins that version.

  By seconds (Fig. 5's "peers refreshed every T minutes"): the copies are refreshed at the first
  step and then at the first step that starts at least `refresh_seconds` after the last refresh,
  so they are between 0 and refresh_seconds (plus one step) old, however fast steps run. A
  resumed run refreshes at its first step (wall-clock time does not survive a restart).

  Args:
    tasks: the peer tasks.
    live_models: {task name: live network} to copy from.
    refresh_steps: refresh period in steps (>= 1), or None when refreshing by seconds.
    refresh_seconds: refresh period in seconds (> 0), or None when refreshing by steps.
    clock: monotonic seconds (injectable for tests).
  """

  def __init__(
      self,
      tasks: Sequence[Task],
      live_models: Mapping[str, keras.Model],
      refresh_steps: Optional[int] = None,
      refresh_seconds: Optional[float] = None,
      clock: Callable[[], float] = time.monotonic,
  ):
    if (refresh_steps is None) == (refresh_seconds is None):
      raise ValueError(
          'StaleCopyPeers: give exactly one of refresh_steps and refresh_seconds, got '
          f'refresh_steps={refresh_steps!r}, refresh_seconds={refresh_seconds!r}'
      )
    if refresh_steps is not None and refresh_steps < 1:
      raise ValueError(f'StaleCopyPeers: refresh_steps must be >= 1, got {refresh_steps}')
    if refresh_seconds is not None and not refresh_seconds > 0:
      raise ValueError(f'StaleCopyPeers: refresh_seconds must be > 0, got {refresh_seconds}')
    self._tasks = {t.name: t for t in tasks}
    self._live = dict(live_models)
    self.refresh_steps = refresh_steps
    self.refresh_seconds = refresh_seconds
    self._clock = clock
    self._refreshed_time: Optional[float] = None
    self._copies = {name: t.build_network() for name, t in self._tasks.items()}
    # The step whose weights the copies hold; saved with checkpoints so a resumed run sees the
    # same stale peers it saw before the crash.
    self._version = tf.Variable(-1, dtype=tf.int64, trainable=False, name='peer_version')
    for name in self._copies:
      self._copies[name].trainable = False
    self._predict = tf.function(self._predict_all)

  @property
  def task_names(self):
    return tuple(self._tasks)

  def _refresh(self, version: int) -> None:
    for name, copy in self._copies.items():
      for dst, src in zip(copy.weights, self._live[name].weights):
        dst.assign(src)
    self._version.assign(version)

  def _predict_all(self, mediator):
    # Upstream-first: a copy fed another task's predictions gets the other copy's, as one
    # stale snapshot of both networks answers (tasks/base.predict_in_order).
    return task_base.predict_in_order(self._tasks, self._copies, mediator)

  def predictions(self, step, mediator):
    info = {}
    if self.refresh_seconds is not None:
      now = self._clock()
      if self._refreshed_time is None or now - self._refreshed_time >= self.refresh_seconds:
        self._refresh(step)
        self._refreshed_time = now
      age = float(now - self._refreshed_time)
      info.update({f'staleness_seconds/{n}': age for n in self._tasks})
    else:
      due = (step // self.refresh_steps) * self.refresh_steps
      if int(self._version.numpy()) != due:
        # Normally step == due here. A run resumed without this state (or started mid-period)
        # refreshes now and counts staleness from `due`, the version it stands in for.
        self._refresh(due)
    out = self._predict(dict(mediator))
    staleness = float(step - int(self._version.numpy()))
    info.update({f'staleness_steps/{n}': staleness for n in self._tasks})
    return out, info

  def checkpoint_items(self):
    items = {f'peer_copy_{name}': model for name, model in self._copies.items()}
    items['peer_version'] = self._version
    return items
