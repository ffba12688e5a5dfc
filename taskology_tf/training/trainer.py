"""The training loop shared by collective (one process) and distributed (one task) training.

Eq. 1: L = sum_i L_sup_i + sum_r w_r L_con_r(y_1 .. y_n). Each task keeps its own network,
optimizer and learning-rate schedule; only the consistency relations tie them.

Two gradient semantics (`peer_gradients`):
- True (collective only): one joint loss; consistency gradients reach every live network.
- False (distributed semantics): task i minimises L_sup_i + c_i sum_{r containing i} w_r
  L_con_r(y_i, y_peers) with the peers' predictions held constant. The peers are the live
  networks (stop-gradient), stale in-process copies, or snapshots served over gRPC, all
  through a `PeerSource`.

With every network live, staleness 0 and c_i = 1 the two semantics give the same gradients:
dL/dtheta_i only flows through y_i, whether or not y_j is a constant. They differ once peers are
stale or per-task consistency weights c_i differ; tests check both facts.
"""

import copy
import dataclasses
import json
import math
import os
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import tensorflow as tf
import tf_keras as keras

from taskology_tf import files
from taskology_tf.inputs.pipelines import MixingSchedule
from taskology_tf.tasks import base as task_base
from taskology_tf.tasks.base import Task
from taskology_tf.tasks.base import to_float_image
from taskology_tf.training import summaries
from taskology_tf.training.peers import PeerSource

# Builds one input pipeline's dataset from its tf.distribute.InputContext (None: the only one).
DatasetFn = Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]


class NonFiniteLossError(RuntimeError):
  """A loss term became NaN or Inf; the run stops before writing another checkpoint."""


@dataclasses.dataclass
class TaskSetup:
  """Everything one task trains with: its own network, optimizer, data and hyperparameters.

  Attributes:
    task: the task.
    optimizer: a factory returning a fresh tf_keras optimizer (with its own learning rate or
      schedule); called under the task's strategy scope.
    dedicated: builds one input pipeline's endless stream of labelled batches (its shard, in
      per-replica batches) from a tf.distribute.InputContext (None when there is one pipeline);
      None for a self-supervised task.
    consistency_weight: c_i, multiplies every relation loss in this task's objective when
      peer_gradients is False (each distributed trainer has its own).
    strategy: a factory returning this task's tf.distribute strategy (None: default).
    jit_compile: compile the training step with XLA.
  """

  task: Task
  optimizer: Callable[[], keras.optimizers.Optimizer]
  dedicated: Optional[DatasetFn] = None
  consistency_weight: float = 1.0
  strategy: Optional[Callable[[], tf.distribute.Strategy]] = None
  jit_compile: bool = False


@dataclasses.dataclass
class LoopConfig:
  """Loop cadence. Steps are global steps of the live tasks.

  Attributes:
    num_steps: train until this global step.
    log_every: progress line (steps/s, ETA, losses) every this many steps.
    summary_every: TensorBoard scalars every this many steps.
    image_every: TensorBoard images every this many steps (0: never).
    checkpoint_every: checkpoint every this many steps (and always at the end).
    keep_checkpoints: checkpoints kept on disk.
    eval_every: evaluation every this many steps (0: only at the end).
  """

  num_steps: int = 1000
  log_every: int = 50
  summary_every: int = 25
  image_every: int = 250
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  eval_every: int = 0

  def __post_init__(self):
    for name, low in (
        ('num_steps', 1),
        ('log_every', 1),
        ('summary_every', 1),
        ('image_every', 0),
        ('checkpoint_every', 1),
        ('keep_checkpoints', 1),
        ('eval_every', 0),
    ):
      value = getattr(self, name)
      if not isinstance(value, int) or value < low:
        raise ValueError(f'LoopConfig.{name} must be an integer >= {low}, got {value!r}')


class _Counter(tf.Module):
  """Batches drawn from one dataset, checkpointed so a resumed run continues the same stream."""

  def __init__(self, name):
    super().__init__(name=name)
    self.value = tf.Variable(0, dtype=tf.int64, trainable=False, name='batches_drawn')


def _chief_and_worker_name(strategy: tf.distribute.Strategy) -> Tuple[bool, str]:
  """(is this process the chief, its '<task type>_<task id>') under a multi-worker strategy."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True, 'chief'
  task_type, task_id = resolver.task_type, resolver.task_id
  jobs = resolver.cluster_spec().as_dict()
  chief = task_type == 'chief' or (task_type == 'worker' and task_id == 0 and 'chief' not in jobs)
  return chief, f'{task_type}_{task_id}'


class Trainer:
  """Trains the live tasks of an experiment.

  Args:
    setups: TaskSetup of every task in the experiment (live or not); non-live tasks only
      contribute their Task definitions (to query peers with).
    live: names of the tasks trained here (all of them in collective mode, one in distributed).
    relations: consistency relations; each is applied when all of its tasks have predictions.
    relation_weights: {relation name: w_r}; relations not named get weight 1.
    mediator: builds one input pipeline's endless stream of unlabelled clips (image uint8
      [B, T, H, W, 3], intrinsics; its shard, per-replica batches) from a
      tf.distribute.InputContext; None: no consistency.
    peer_source_factory: builds, from the live networks, the source of non-live (or stale)
      peer predictions; None means peers are the live networks themselves (only possible when
      every relation's tasks are all live).
    peer_gradients: joint gradients through all live networks (True) or per-task objectives
      with constant peers (False).
    schedule: dedicated/mediator mixing (Sec. 3.1).
    loop: loop cadence.
    run_dir: checkpoints, TensorBoard logs and results go here.
    evaluation: optional endless-free dataset of labelled frames for evaluation.
    hooks: callables hook(step, trainer) run after every step (e.g. snapshot export).
  """

  def __init__(
      self,
      setups: Sequence[TaskSetup],
      live: Sequence[str],
      relations: Sequence,
      relation_weights: Optional[Mapping[str, float]],
      mediator: Optional[DatasetFn],
      peer_source_factory: Optional[Callable[[Mapping[str, keras.Model]], PeerSource]],
      peer_gradients: bool,
      schedule: MixingSchedule,
      loop: LoopConfig,
      run_dir: str,
      evaluation: Optional[tf.data.Dataset] = None,
      hooks: Sequence[Callable[[int, 'Trainer'], None]] = (),
  ):
    self.setups = {s.task.name: s for s in setups}
    if len(self.setups) != len(setups):
      raise ValueError(f'duplicate task names in {[s.task.name for s in setups]}')
    unknown = [n for n in live if n not in self.setups]
    if unknown:
      raise ValueError(f'live task(s) {unknown} not among the experiment tasks {list(self.setups)}')
    self.live = list(live)
    self.relations = list(relations)
    self.relation_weights = dict(relation_weights or {})
    known_relations = {r.name for r in self.relations}
    for name in self.relation_weights:
      if name not in known_relations:
        raise ValueError(
            f'relation_weights names unknown relation {name!r}; '
            f'relations are {sorted(known_relations)}'
        )
    for r in self.relations:
      missing = [t for t in r.tasks if t not in self.setups]
      if missing:
        raise ValueError(
            f'relation {r.name!r} needs task(s) {missing}, which the experiment '
            f'does not define (tasks: {list(self.setups)})'
        )
    self.mediator = mediator if self.relations else None
    self.peer_gradients = peer_gradients
    self.schedule = schedule
    self.loop = loop
    self.run_dir = run_dir
    self.evaluation = evaluation
    self.hooks = list(hooks)
    self._last_terms, self._last_info, self._last_scalars = {}, {}, {}

    strategies = {self.setups[n].strategy for n in self.live}
    if len(self.live) > 1 and any(s is not None for s in strategies):
      raise ValueError(
          'per-task strategies apply to distributed (one live task) training; '
          'collective mode trains every task under one default strategy'
      )
    factory = self.setups[self.live[0]].strategy if len(self.live) == 1 else None
    self.strategy = factory() if factory is not None else tf.distribute.get_strategy()
    # Multi-worker: every worker runs this same trainer. The chief writes to run_dir (and exports
    # snapshots); the others keep their own checkpoints and logs under run_dir/<type>_<id>, so
    # no two workers write the same files.
    self.is_chief, worker = _chief_and_worker_name(self.strategy)
    if not self.is_chief:
      run_dir = self.run_dir = os.path.join(run_dir, worker)

    with self.strategy.scope():
      self.models: Dict[str, keras.Model] = {}
      self.optimizers: Dict[str, keras.optimizers.Optimizer] = {}
      for name in self.live:
        self.models[name] = self.setups[name].task.build_network()
        self.optimizers[name] = self.setups[name].optimizer()
        # Create the slots now, so a restore fills them at once (not deferred to step 1).
        self.optimizers[name].build(self.models[name].trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')
    # Networks whose training-mode computation depends on the training step (the randomized
    # layer norm's noise ramp) read this trainer's step variable inside the compiled step: a
    # task with `bind_training_step(model, step)` points its network at it (no host round trip).
    for name in self.live:
      bind = getattr(self.setups[name].task, 'bind_training_step', None)
      if bind is not None:
        bind(self.models[name], self.step)
    # Relations with a step-dependent schedule (DfvConsistency's motion warm-up) read it too.
    # Each trainer binds its own shallow copy: an experiment's relation objects are shared by
    # every trainer built from it (one per task in a distributed launch), each with its own step.
    for i, r in enumerate(self.relations):
      if hasattr(r, 'bind_training_step'):
        self.relations[i] = copy.copy(r)
        self.relations[i].bind_training_step(self.step)
    self.peer_source = peer_source_factory(self.models) if peer_source_factory else None
    if (
        peer_gradients
        and self.peer_source is not None
        and set(self.peer_source.task_names) & set(self.live)
    ):
      raise ValueError(
          'peer_gradients=True needs live peers; stale peers are constants by '
          'definition. Set peer_gradients=False to use stale peers.'
      )
    self._check_peer_coverage()
    self._counters = {
        name: _Counter(f'dedicated_{name}')
        for name in self.live
        if self.setups[name].dedicated is not None
    }
    if self.mediator is not None:
      self._counters['mediator'] = _Counter('mediator')
    jit = {self.setups[n].jit_compile for n in self.live}
    if len(jit) > 1:
      raise ValueError(
          'TaskConfig.jit_compile differs between the live tasks '
          f'{ {n: self.setups[n].jit_compile for n in self.live} }; collective mode trains them '
          'in one joint step, so set it the same for every task'
      )
    self.jit_compile = jit.pop()
    # The per-replica step is what XLA compiles (as Keras does with jit_compile): the cross-replica
    # gradient all-reduce inside apply_gradients compiles with it; strategy.run around it does not.
    # No AutoGraph: the step's control flow is Python over static structure (tasks, relations,
    # frames), which tracing unrolls as it is; AutoGraph's source conversion of every function and
    # Keras layer it reaches was about a third of the tracing time of the DfVitW step. A relation
    # that branches on a tensor value must use tf.cond / tf.where (as XLA and TPUs need anyway).
    self._replica_fn = (
        tf.function(self._replica_step, jit_compile=True, autograph=False)
        if self.jit_compile
        else self._replica_step
    )
    self._step_fn = tf.function(self._distributed_step, autograph=False)

    os.makedirs(run_dir, exist_ok=True)
    items = dict(step=self.step)
    for name in self.live:
      items[f'model_{name}'] = self.models[name]
      items[f'optimizer_{name}'] = self.optimizers[name]
    for name, counter in self._counters.items():
      items[f'counter_{name}'] = counter
    if self.peer_source is not None:
      items.update(self.peer_source.checkpoint_items())
    self.checkpoint = tf.train.Checkpoint(**items)
    self.checkpoint_manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(run_dir, 'checkpoints'), max_to_keep=loop.keep_checkpoints
    )
    self.writer = summaries.SummaryWriter(os.path.join(run_dir, 'train'))
    self.eval_writer = summaries.SummaryWriter(os.path.join(run_dir, 'eval'))

  # ----------------------------------------------------------------------------------------------
  # Set-up checks.

  def _check_peer_coverage(self):
    if self.mediator is None:
      return
    peer_names = set(self.peer_source.task_names) if self.peer_source else set()
    for r in self.relations:
      if not any(t in self.live for t in r.tasks):
        raise ValueError(
            f'relation {r.name!r} involves none of the live tasks {self.live}; '
            'drop it from this trainer'
        )
      for t in r.tasks:
        if t not in self.live and t not in peer_names:
          raise ValueError(
              f'relation {r.name!r} needs predictions of task {t!r}, which is not '
              'live here and has no peer source (configure peers for it)'
          )
    for name in list(self.live) + sorted(peer_names):
      task = self.setups[name].task if name in self.setups else None
      for up in getattr(task, 'input_tasks', ()):
        if up not in self.live and up not in peer_names:
          raise ValueError(
              f'task {name!r} takes the predictions of task {up!r} as inputs, which is not '
              'live here and has no peer source (configure peers for it)'
          )

  # ----------------------------------------------------------------------------------------------
  # One step.

  def _relation_batch(self, mediator):
    # Labels reach relations only if a relation asked for them (mediator_label_keys).
    batch = dict(mediator)
    batch['image'] = to_float_image(mediator['image'])
    return batch

  def _losses(self, dedicated, mediator, peers):
    """Computes every loss term of the live tasks. Returns (total, {term: scalar})."""
    terms = {}
    total = tf.constant(0.0)
    for name in self.live:
      # Keras regularisation losses (model.losses, e.g. DfVitW's L2 weight decay): part of the
      # task's objective every step, as the reference adds its regularisation loss to the total.
      # They involve only the task's own weights, so both gradient semantics agree on them.
      if self.models[name].losses:
        reg = tf.add_n(self.models[name].losses)
        terms[f'regularization/{name}'] = reg
        total += reg
    for name, batch in dedicated.items():
      task = self.setups[name].task
      outputs = task.call(self.models[name], task.dedicated_inputs(batch), training=True)
      loss, metrics = task.supervised_loss(batch, outputs)
      terms[f'supervised/{name}'] = loss
      for k, v in metrics.items():
        terms[f'metrics/{name}/{k}'] = v
      total += loss
    if mediator is None:
      return total, terms
    rel_batch = self._relation_batch(mediator)
    peers = dict(peers or {})
    # Upstream-first; a task fed another's predictions (input_tasks) gets the peer's version
    # when that task is a peer here (the one its relation terms see), else the live one, as a
    # constant either way.
    live_preds = task_base.predict_in_order(
        {n: self.setups[n].task for n in self.live},
        self.models,
        mediator,
        training=True,
        given=peers,
    )
    for r in self.relations:
      if any(t not in live_preds and t not in peers for t in r.tasks):
        continue  # A peer this relation needs did not answer: skip it this step.
      w = self.relation_weights.get(r.name, 1.0)
      if self.peer_gradients:
        preds = {t: live_preds[t] if t in live_preds else peers[t] for t in r.tasks}
        loss, metrics = r(preds, rel_batch)
        terms[f'consistency/{r.name}'] = loss
        total += w * loss
      else:
        for t in r.tasks:
          if t not in live_preds:
            continue
          preds = {}
          for u in r.tasks:
            if u == t:
              preds[u] = live_preds[u]
            elif u in peers:
              preds[u] = peers[u]
            else:  # A live peer at staleness 0: a constant, as a remote peer would be.
              preds[u] = tf.nest.map_structure(tf.stop_gradient, live_preds[u])
          loss, metrics = r(preds, rel_batch)
          terms[f'consistency/{r.name}/{t}'] = loss
          total += w * self.setups[t].consistency_weight * loss
      for k, v in metrics.items():
        terms[f'metrics/{r.name}/{k}'] = v
    return total, terms

  def _replica_step(self, dedicated, mediator, peers):
    """One replica's step on its own share of the batch (distribute_datasets_from_function)."""
    variables = {n: self.models[n].trainable_variables for n in self.live}
    with tf.GradientTape() as tape:
      total, terms = self._losses(dedicated, mediator, peers)
      # Gradients are summed across replicas, so each replica's share is scaled by 1/n.
      scaled = total / tf.cast(tf.distribute.get_replica_context().num_replicas_in_sync, tf.float32)
    grads = tape.gradient(scaled, variables)
    for name in self.live:
      pairs = [(g, v) for g, v in zip(grads[name], variables[name]) if g is not None]
      if pairs:
        self.optimizers[name].apply_gradients(pairs)
    terms['total'] = total
    return terms

  def _distributed_step(self, dedicated, mediator, peers):
    per_replica = self.strategy.run(self._replica_fn, args=(dedicated, mediator, peers))
    return {
        k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
        for k, v in per_replica.items()
    }

  # ----------------------------------------------------------------------------------------------
  # The loop.

  def _iterators(self):
    """Fresh distributed iterators positioned after the batches a restored run had drawn.

    Every stream goes through `strategy.distribute_datasets_from_function`: each input pipeline
    reads its own shard and batches per-replica batches, and a step's replicas take disjoint
    batches that together make the global batch.
    """
    its = {}
    for name, counter in self._counters.items():
      fn = self.mediator if name == 'mediator' else self.setups[name].dedicated
      drawn = int(counter.value.numpy())

      def dataset_fn(input_context, fn=fn, drawn=drawn):
        ds = fn(input_context)
        return ds.skip(drawn) if drawn else ds

      its[name] = iter(self.strategy.distribute_datasets_from_function(dataset_fn))
    return its

  # ----------------------------------------------------------------------------------------------
  # Per-replica values and this worker's host batch (what peers are asked about).

  def _local_batch(self, value):
    """This worker's examples of a distributed batch, concatenated in replica order."""
    parts = self.strategy.experimental_local_results(value)
    if len(parts) == 1:
      return parts[0]
    return tf.nest.map_structure(lambda *xs: tf.concat(xs, axis=0), *parts)

  def _to_replicas(self, structure, like):
    """Splits host tensors [sum of local batches, ...] back into per-replica values.

    `like` is the distributed mediator batch the structure answers for: replica r gets exactly
    the rows of the examples replica r consumes, so peer predictions stay aligned with them.
    """
    parts = self.strategy.experimental_local_results(like['image'])
    if len(parts) == 1:
      return structure
    sizes = [int(p.shape[0]) for p in parts]
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    shares = [
        tf.nest.map_structure(lambda x, i=i: x[offsets[i] : offsets[i + 1]], structure)
        for i in range(len(sizes))
    ]
    # Local replicas of a worker have consecutive global ids (MultiWorkerMirroredStrategy numbers
    # worker k's replicas k * n_local .. k * n_local + n_local - 1).
    return self.strategy.experimental_distribute_values_from_function(
        lambda ctx: shares[ctx.replica_id_in_sync_group % len(shares)]
    )

  def restore(self) -> int:
    """Restores the latest checkpoint if any; returns the step to continue from."""
    latest = self.checkpoint_manager.latest_checkpoint
    if latest:
      self.checkpoint.restore(latest)
      logging.info('resumed from %s at step %d', latest, int(self.step.numpy()))
    return int(self.step.numpy())

  def save(self) -> str:
    """Writes a checkpoint of the current step. TF writes the state file last and atomically,
    so a crash mid-save leaves the previous checkpoint as the latest."""
    return self.checkpoint_manager.save(checkpoint_number=int(self.step.numpy()))

  def _check_finite(self, step, terms):
    for k, v in terms.items():
      if not math.isfinite(v):
        kind, _, rest = k.partition('/')
        raise NonFiniteLossError(
            f'step {step}: loss term {k!r} ({kind} loss of {rest or "all tasks"}) is {v}; '
            f'stopping. The last good checkpoint stays intact: '
            f'{self.checkpoint_manager.latest_checkpoint or "(none written yet)"}'
        )

  def train(self) -> Dict[str, Dict[str, float]]:
    """Runs to loop.num_steps (resuming if a checkpoint exists); returns final eval metrics."""
    start = self.restore()
    its = self._iterators()
    has_dedicated = any(n in its for n in self.live)
    progress = summaries.Progress(self.loop.num_steps, start)
    for hook in self.hooks:  # Hooks see the starting state too (e.g. export version `start`).
      hook(start, self)
    pending_mediator = None
    for step in range(start, self.loop.num_steps):
      use_ded, use_med = self.schedule.kinds(step, has_dedicated, 'mediator' in its)
      dedicated = {}
      if use_ded:
        for name in self.live:
          if name in its:
            dedicated[name] = next(its[name])
            self._counters[name].value.assign_add(1)
      mediator, peers, info = None, None, {}
      if use_med:
        mediator = pending_mediator if pending_mediator is not None else next(its['mediator'])
        pending_mediator = None
        self._counters['mediator'].value.assign_add(1)
        if self.peer_source is not None:
          # Peers answer for exactly this worker's examples, then each replica gets its rows.
          peers, info = self.peer_source.predictions(
              step, self._with_live_upstream(self._local_batch(mediator))
          )
          if peers is None:
            logging.log_every_n_seconds(
                logging.WARNING,
                'step %d: peers unavailable (%s); consistency skipped, supervised training goes on',
                30,
                step,
                info.get('reason', 'unknown'),
            )
            info = {
                **{k: v for k, v in info.items() if k != 'reason'},
                'consistency_skipped': 1.0,
            }
            mediator = None
          else:
            peers = self._to_replicas(peers, mediator)
          # Look one mediator batch ahead so a remote peer source can start answering it while
          # this step trains (the gRPC peers' prefetch).
          if step + 1 < self.loop.num_steps:
            pending_mediator = next(its['mediator'])
            self.peer_source.prefetch(
                step + 1, self._with_live_upstream(self._local_batch(pending_mediator))
            )
      if not dedicated and mediator is None:
        self.step.assign_add(1)
        self._after_step(step + 1, {}, info, progress)
        continue
      terms = self._step_fn(dedicated, mediator, peers)
      self.step.assign_add(1)
      if mediator is not None and self.loop.image_every and (step + 1) % self.loop.image_every == 0:
        self._write_images(step + 1, self._local_batch(mediator))
      self._after_step(step + 1, terms, info, progress)
    if self.peer_source is not None:
      self.peer_source.close()
    if (
        not self.checkpoint_manager.latest_checkpoint
        or int(self.checkpoint_manager.latest_checkpoint.rsplit('-', 1)[-1]) != self.loop.num_steps
    ):
      self.save()
    results = self.evaluate_and_log(self.loop.num_steps)
    self.writer.flush()
    return results

  def _host_scalars_due(self, step) -> bool:
    """Whether the losses of `step` are copied to the host: at the logging and summary cadence,
    before every checkpoint, and at the end. Other steps never wait on a device-to-host copy."""
    loop = self.loop
    return (
        step % loop.log_every == 0
        or step % loop.summary_every == 0
        or step % loop.checkpoint_every == 0
        or step == loop.num_steps
    )

  @property
  def last_scalars(self) -> Dict[str, float]:
    """What the step that just finished logged (for hooks); copies its losses to the host."""
    if self._last_scalars is None:
      self._last_scalars = {
          **{k: float(v) for k, v in self._last_terms.items()},
          **self._last_info,
      }
    return self._last_scalars

  def _after_step(self, step, terms, info, progress):
    self._last_terms, self._last_info, self._last_scalars = terms, info, None
    if self._host_scalars_due(step):
      scalars = self.last_scalars
      # A NaN anywhere since the last check has reached the weights, so the losses of this
      # step show it too; checking here (and before every checkpoint) keeps the last good
      # checkpoint intact.
      self._check_finite(step - 1, {k: v for k, v in scalars.items() if k in terms})
      progress.update(step, scalars, self.loop.log_every)
    if step % self.loop.summary_every == 0:
      self.writer.scalars(step, {**self.last_scalars, 'steps_per_second': progress.rate})
      for name in self.live:
        lr = self.optimizers[name].learning_rate
        lr = lr(self.optimizers[name].iterations) if callable(lr) else lr
        self.writer.scalars(step, {f'learning_rate/{name}': float(tf.convert_to_tensor(lr))})
        state = self.setups[name].task.scalar_summaries(self.models[name])
        self.writer.scalars(step, {f'{name}/{k}': v for k, v in state.items()})
    for hook in self.hooks:
      hook(step, self)
    if step % self.loop.checkpoint_every == 0 and step < self.loop.num_steps:
      self.save()
    if self.loop.eval_every and step % self.loop.eval_every == 0 and step < self.loop.num_steps:
      self.evaluate_and_log(step)

  def _with_live_upstream(self, mediator):
    """`mediator` plus the live predictions that peer tasks take as inputs (input_tasks).

    A remote peer fed another task's predictions is sent them with the clip; when that task is
    live here, they are its current predictions. None when no peer needs any.
    """
    if mediator is None or self.peer_source is None:
      return mediator
    peer_names = set(self.peer_source.task_names)
    needed = set()
    for name in peer_names:
      task = self.setups[name].task if name in self.setups else None
      needed |= {u for u in getattr(task, 'input_tasks', ()) if u in self.live}
    needed -= peer_names  # A peer source that has the upstream task feeds it itself.
    out = mediator
    for up in sorted(needed):
      preds = self.setups[up].task.predict_mediator(self.models[up], mediator, training=False)
      out = task_base.with_upstream(out, up, preds)
    return out

  def _write_images(self, step, mediator):
    images = {'mediator/image': to_float_image(mediator['image'][:, 0])}
    live = task_base.predict_in_order(
        {n: self.setups[n].task for n in self.live}, self.models, mediator
    )
    for name in self.live:
      task = self.setups[name].task
      outputs = live[name]
      first = {k: v[:, 0] for k, v in outputs.items()}
      for k, v in task.image_summaries(first).items():
        images[f'{name}/{k}'] = v
    self.writer.images(step, images)

  # ----------------------------------------------------------------------------------------------
  # Evaluation.

  def evaluate(self) -> Dict[str, Dict[str, float]]:
    """Scores every live task with its metrics on the evaluation dataset."""
    if self.evaluation is None:
      return {}
    return evaluate_models(
        {n: self.setups[n].task for n in self.live}, self.models, self.evaluation
    )

  def evaluate_and_log(self, step) -> Dict[str, Dict[str, float]]:
    results = self.evaluate()
    for name, metrics in results.items():
      self.eval_writer.scalars(step, {f'{name}/{k}': v for k, v in metrics.items()})
      logging.info(
          'eval step %d %s: %s', step, name, ', '.join(f'{k}={v:.4f}' for k, v in metrics.items())
      )
    if results:
      path = os.path.join(self.run_dir, 'eval_results.json')
      files.write_json_atomic(path, {'step': step, 'metrics': results}, sort_keys=True)
      # The whole curve, for plots (e.g. Fig. 5's error against step); one JSON line per eval.
      with tf.io.gfile.GFile(os.path.join(self.run_dir, 'eval_history.jsonl'), 'a') as f:
        f.write(json.dumps({'step': step, 'metrics': results}, sort_keys=True) + '\n')
    self.eval_writer.flush()
    return results


def evaluate_models(
    tasks: Mapping[str, Task], models: Mapping[str, keras.Model], dataset: tf.data.Dataset
) -> Dict[str, Dict[str, float]]:
  """One pass over `dataset` (labelled frames); returns {task: metrics}."""
  evaluators = {n: t.new_metrics() for n, t in tasks.items()}
  evaluators = {n: e for n, e in evaluators.items() if e is not None}
  if not evaluators:
    return {}
  calls = {
      n: tf.function(lambda inputs, _n=n: tasks[_n].call(models[_n], inputs)) for n in evaluators
  }
  for batch in dataset:
    for name, evaluator in evaluators.items():
      outputs = calls[name](tasks[name].dedicated_inputs(batch))
      evaluator.update(batch, outputs)
  return {n: {k: float(v) for k, v in e.result().items()} for n, e in evaluators.items()}
