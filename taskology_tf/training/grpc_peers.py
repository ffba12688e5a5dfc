"""Peers served over TF Serving's gRPC API: the distributed mode's peer source (Sec. 3.3).

Each step's mediator clip is sent to the model server (uint8 images: 4x fewer bytes than
float32), and the stale peer's predictions come back. The request for step s+1 goes out while
step s trains (`prefetch`), so the trainer rarely waits. Every answer carries the snapshot's
version (its global step) and export time, so staleness is logged in steps and seconds.

Version choice (`refresh_steps` or `refresh_seconds`, `pin_versions`):
- pin_versions False: every `refresh_steps` steps (or, with `refresh_seconds`, at the first
  step at least that many seconds of wall-clock time after the last refresh) the source asks
  the server for its latest version and sticks to it until the next refresh (refresh_steps=1:
  always the latest).
- pin_versions True (deterministic, Fig. 5's semantics): at step s it asks for exactly version
  floor(s / refresh_steps) * refresh_steps, waiting (bounded) for the peer to export it, so
  "staleness S" means the peers seen are refreshed every S steps regardless of timing. The peers
  must export every `refresh_steps` steps (or a divisor of it) and the server must keep those
  versions (models.config version policy).

A peer fed another peer's predictions (Task.input_tasks, e.g. a motion network fed the depth)
is asked after that peer has answered, with its answer in the request (tasks/base.with_upstream);
it cannot be prefetched, as its inputs are not known before. When the upstream task is live in
the trainer instead, the trainer puts its predictions into the mediator batch and the peer is
prefetched as any other.

Unreachable peers never crash or block the trainer: the step's consistency is skipped (and
logged as such), and picked up again once the peer answers.
"""

import time
from typing import Callable, Dict, Optional, Sequence

from absl import logging
import grpc
import numpy as np
import tensorflow as tf

from taskology_tf.serving.client import PeerClient
from taskology_tf.serving.client import PeerError
from taskology_tf.serving.client import PrefetchingPeerClient
from taskology_tf.tasks import base as task_base
from taskology_tf.tasks.base import Task
from taskology_tf.training.peers import PeerSource


class GrpcPeers(PeerSource):
  """Queries peer tasks on a TF-Serving-compatible server.

  Args:
    tasks: the peer tasks (their definitions say how to build wire inputs and unflatten).
    target: 'host:port' of the model server.
    refresh_steps: how often (in steps) the peer version in use may change.
    refresh_seconds: instead, how often (in seconds of wall-clock time) it may change (> 0;
      None: by steps; not with pin_versions).
    pin_versions: deterministic staleness (see module docstring).
    timeout_seconds: the longest the trainer waits for one answer (or for a pinned version).
    channel_credentials: optional grpc.ChannelCredentials for a TLS server.
    max_message_bytes: gRPC message size cap.
    clock: monotonic seconds for refresh_seconds (injectable for tests).
  """

  def __init__(
      self,
      tasks: Sequence[Task],
      target: str,
      refresh_steps: int = 1,
      pin_versions: bool = False,
      timeout_seconds: float = 30.0,
      channel_credentials=None,
      max_message_bytes: int = 64 << 20,
      refresh_seconds: Optional[float] = None,
      clock: Callable[[], float] = time.monotonic,
  ):
    if refresh_steps < 1:
      raise ValueError(f'GrpcPeers: refresh_steps must be >= 1, got {refresh_steps}')
    if refresh_seconds is not None and not refresh_seconds > 0:
      raise ValueError(f'GrpcPeers: refresh_seconds must be > 0, got {refresh_seconds!r}')
    if refresh_seconds is not None and pin_versions:
      raise ValueError('GrpcPeers: pin_versions pins versions by step; use refresh_steps')
    self.refresh_seconds = refresh_seconds
    self._clock = clock
    self._refreshed_time: Dict[str, Optional[float]] = {t.name: None for t in tasks}
    self._tasks = {t.name: t for t in tasks}
    # Upstream peers first (ValueError on a cycle), so each answer can feed the next request.
    self._order = task_base.upstream_order(self._tasks)
    self.target = target
    self.refresh_steps = refresh_steps
    self.pin_versions = pin_versions
    self.timeout_seconds = timeout_seconds
    self._clients = {
        name: PeerClient(
            target,
            name,
            timeout_seconds=min(timeout_seconds, 10.0),
            retries=2,
            backoff_seconds=0.2,
            channel_credentials=channel_credentials,
            max_message_bytes=max_message_bytes,
        )
        for name in self._tasks
    }
    self._prefetch = {
        name: PrefetchingPeerClient(c, max_in_flight=2) for name, c in self._clients.items()
    }
    # Version look-ups fail fast (a down server must not stall every step for a deadline).
    self._status_clients = {
        name: PeerClient(
            target, name, timeout_seconds=2.0, retries=0, channel_credentials=channel_credentials
        )
        for name in self._tasks
    }
    self._current: Dict[str, Optional[int]] = {name: None for name in self._tasks}
    self._refreshed_at: Dict[str, int] = {name: -1 for name in self._tasks}
    self._unavailable_since: Optional[float] = None
    self.bytes_sent = 0
    self.bytes_received = 0

  @property
  def task_names(self):
    return tuple(self._tasks)

  def _refresh_due(self, name: str, step: int) -> bool:
    """Whether the version in use is to be looked up again (and notes the refresh)."""
    if self.refresh_seconds is not None:
      now = self._clock()
      last = self._refreshed_time[name]
      if last is None or now - last >= self.refresh_seconds or self._current[name] is None:
        self._refreshed_time[name] = now
        return True
      return False
    due = (step // self.refresh_steps) * self.refresh_steps
    return self._refreshed_at[name] != due or self._current[name] is None

  def _version_for(self, name: str, step: int) -> Optional[int]:
    due = (step // self.refresh_steps) * self.refresh_steps
    if self.pin_versions:
      return due
    if self._refresh_due(name, step):
      try:
        self._current[name] = self._status_clients[name].latest_version()
      except PeerError:
        self._current[name] = None  # Ask again next step; Predict will report the failure.
      self._refreshed_at[name] = due
    return self._current[name]

  def _submit(self, name: str, step: int, mediator) -> None:
    task = self._tasks[name]
    inputs = {k: np.asarray(v) for k, v in task.serving_inputs(mediator).items()}
    version = self._version_for(name, step)
    try:
      self._prefetch[name].submit(step, inputs, version)
    except KeyError:
      pass  # Already in flight for this step.

  def _peer_upstream(self, name, mediator):
    """The peers here whose answers task `name` takes as inputs and `mediator` lacks."""
    return [
        up
        for up in self._tasks[name].input_tasks
        if up in self._tasks and not task_base.has_upstream(mediator, up)
    ]

  def prefetch(self, step, mediator):
    for name in self._order:
      if not self._peer_upstream(name, mediator):
        self._submit(name, step, mediator)

  def predictions(self, step, mediator):
    out, info = {}, {}
    shape = mediator['image'].shape
    wait_start = time.monotonic()
    for name in self._order:
      task = self._tasks[name]
      request_batch = mediator
      upstream = self._peer_upstream(name, mediator)
      for up in upstream:
        request_batch = task_base.with_upstream(request_batch, up, out[up])
      if upstream or step not in self._prefetch[name].pending():
        self._submit(name, step, request_batch)
      result = None
      deadline = time.monotonic() + self.timeout_seconds
      while result is None:
        try:
          result = self._prefetch[name].result(step, timeout=max(deadline - time.monotonic(), 0.1))
        except PeerError as e:
          # A pinned version the peer has not exported yet answers NOT_FOUND: wait for it
          # (bounded), as Fig. 5's deterministic staleness requires.
          if (
              self.pin_versions
              and getattr(e, 'code', None) == grpc.StatusCode.NOT_FOUND
              and time.monotonic() < deadline
          ):
            time.sleep(0.2)
            self._submit(name, step, request_batch)
            continue
          self._note_unavailable(name, e)
          return None, {
              'reason': f'{name}: {e}',
              'peer_wait_seconds': time.monotonic() - wait_start,
          }
      self.bytes_sent += result.request_bytes
      self.bytes_received += result.response_bytes
      outputs = {k: tf.convert_to_tensor(v) for k, v in result.outputs.items()}
      out[name] = task.unflatten(outputs, shape[0], shape[1])
      info[f'staleness_steps/{name}'] = float(step - result.version)
      if result.age_seconds is not None:
        info[f'staleness_seconds/{name}'] = float(result.age_seconds)
      info[f'peer_version/{name}'] = float(result.version)
    if self._unavailable_since is not None:
      logging.info(
          'peers back after %.1f s; consistency resumes', time.monotonic() - self._unavailable_since
      )
      self._unavailable_since = None
    info['peer_wait_seconds'] = time.monotonic() - wait_start
    info['peer_bytes_sent'] = float(self.bytes_sent)
    info['peer_bytes_received'] = float(self.bytes_received)
    return out, info

  def _note_unavailable(self, name, error):
    if self._unavailable_since is None:
      self._unavailable_since = time.monotonic()
      logging.warning(
          'peer %r at %s unavailable (%s): consistency skipped until it answers',
          name,
          self.target,
          error,
      )
    # Drop queued requests so a dead peer does not pile up work for when it returns.
    for prefetch in self._prefetch.values():
      for key in prefetch.pending():
        try:
          prefetch.result(key, timeout=0.01)
        except (PeerError, KeyError):
          pass

  def close(self):
    for p in self._prefetch.values():
      p.close()
    for c in list(self._clients.values()) + list(self._status_clients.values()):
      c.close()
