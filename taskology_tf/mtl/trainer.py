"""A small trainer for the shared-encoder model (a different thing from Taskology's separate nets).

Per step: one forward pass of the shared encoder, every task's decoder on its features, and
then one backward pass per task (a persistent tape, one `tape.gradient` per task) for the
per-task gradients on the shared parameters, which the gradient method combines. Each head is
updated by its own task's loss. EW needs no per-task gradients and takes a single backward pass
of the summed loss (LibMTL's EW does the same), so the cost ratios in BENCHMARKS.md are against
the cheapest honest baseline.

Checkpoints (tf.train.CheckpointManager), TensorBoard summaries and the progress line
(training/summaries.py), evaluation (training/trainer.evaluate_models with the tasks' own
metrics) and the run-directory layout (`eval_results.json`, `eval_history.jsonl`) are those of
the collective trainer, so tools gather both kinds of run the same way.
"""

import json
import math
import os
from typing import Dict, Mapping, Optional, Sequence

from absl import logging
import tensorflow as tf
import tf_keras as keras

from taskology_tf import files
from taskology_tf.inputs import pipelines
from taskology_tf.mtl import methods as methods_lib
from taskology_tf.mtl.model import SharedBackbone
from taskology_tf.mtl.model import task_outputs
from taskology_tf.tasks.base import to_float_image
from taskology_tf.training import summaries
from taskology_tf.training.trainer import evaluate_models
from taskology_tf.training.trainer import LoopConfig
from taskology_tf.training.trainer import NonFiniteLossError


def _flatten(grads: Sequence[tf.Tensor]) -> tf.Tensor:
  return tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0)


def _unflatten(flat: tf.Tensor, like: Sequence[tf.Variable]):
  out, start = [], 0
  for v in like:
    size = int(v.shape.num_elements())
    out.append(tf.reshape(flat[start : start + size], v.shape))
    start += size
  return out


def _dense(grads, variables):
  return [
      tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)
  ]


class MTLTrainer:
  """Trains a SharedBackbone with one gradient method.

  Args:
    backbone: the shared-encoder model.
    method: a parameter-gradient method (methods.EW, MGDA, PCGrad, CAGrad, MCLGS) or GradDrop.
    optimizer: one optimizer for every parameter (as LibMTL).
    dataset: endless dataset of labelled frames with every task's labels.
    loop: loop cadence (num_steps, log/summary/checkpoint cadence).
    run_dir: checkpoints, summaries and results.
    evaluation: labelled frames for evaluation (None: none).
    loss_weights: {task: weight} on each task's supervised loss (default 1).
    jit_compile: compile the step with XLA.
  """

  def __init__(
      self,
      backbone: SharedBackbone,
      method,
      optimizer: keras.optimizers.Optimizer,
      dataset: tf.data.Dataset,
      loop: LoopConfig,
      run_dir: str,
      evaluation: Optional[tf.data.Dataset] = None,
      loss_weights: Optional[Mapping[str, float]] = None,
      jit_compile: bool = False,
  ):
    self.backbone = backbone
    self.method = method
    self.optimizer = optimizer
    self.dataset = dataset
    self.loop = loop
    self.run_dir = run_dir
    self.evaluation = evaluation
    self.task_names = list(backbone.tasks)
    loss_weights = dict(loss_weights or {})
    unknown = set(loss_weights) - set(self.task_names)
    if unknown:
      raise ValueError(
          f'MTLExperiment.loss_weights names tasks {sorted(unknown)} that are not in '
          f'MTLExperiment.tasks {self.task_names}'
      )
    self.loss_weights = {n: float(loss_weights.get(n, 1.0)) for n in self.task_names}
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    self.checkpoint = tf.train.Checkpoint(
        step=self.step,
        encoder=backbone.encoder,
        optimizer=optimizer,
        **{f'decoder_{n}': d for n, d in backbone.decoders.items()},
    )
    self.checkpoint_manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(run_dir, 'checkpoints'), max_to_keep=loop.keep_checkpoints
    )
    self.writer = summaries.SummaryWriter(os.path.join(run_dir, 'train'))
    self.eval_writer = summaries.SummaryWriter(os.path.join(run_dir, 'eval'))
    self._step_fn = tf.function(self._train_step, jit_compile=jit_compile)
    self._models = {n: backbone.task_model(n) for n in self.task_names}

  # --------------------------------------------------------------------------------------------
  # The step.

  def _losses(self, batch, training=True, tape=None):
    """(decoder inputs, weighted losses, scalars). With a `tape`, the decoders read watched
    stop-gradient copies of the encoder outputs, so dL/d(input) is each decoder's own
    (partial) gradient: the U-Net's outputs are nested (level k+1 is computed from level k), and
    the total derivative w.r.t. level k would count the path through level k+1 twice when the
    combined gradients are back-propagated into the encoder."""
    images = to_float_image(batch['image'])
    features = self.backbone.encoder(images, training=training)
    if tape is not None:
      self._encoder_outputs = list(features)
      features = [tf.stop_gradient(f) for f in features]
      tape.watch(features)
    outputs = task_outputs(self.backbone, features, {'image': batch['image']}, training)
    losses, metrics = [], {}
    for name in self.task_names:
      loss, task_metrics = self.backbone.tasks[name].supervised_loss(batch, outputs[name])
      losses.append(self.loss_weights[name] * loss)
      metrics[f'supervised/{name}'] = loss
      for k, v in task_metrics.items():
        metrics[f'metrics/{name}/{k}'] = v
    return features, losses, metrics

  def gradients(self, batch, step):
    """(gradients, variables, scalars): the update of one step without applying it."""
    shared = self.backbone.shared_variables
    heads = {n: self.backbone.task_variables(n) for n in self.task_names}
    with tf.GradientTape(persistent=True) as tape:
      cut = self.method.uses_representation and not isinstance(self.method, methods_lib.EW)
      features, losses, scalars = self._losses(batch, tape=tape if cut else None)
      total = tf.add_n(losses)
    grads, variables = [], []
    if isinstance(self.method, methods_lib.EW):
      # sum_t g_t is the gradient of sum_t L_t: one backward pass, every head by its own loss.
      all_vars = shared + [v for n in self.task_names for v in heads[n]]
      grads = _dense(tape.gradient(total, all_vars), all_vars)
      variables = all_vars
    elif self.method.uses_representation:
      rep_grads, head_grads = [], []
      for name, loss in zip(self.task_names, losses):
        g = tape.gradient(loss, list(features) + heads[name])
        rep_grads.append(_dense(g[: len(features)], features))
        head_grads.append(_dense(g[len(features) :], heads[name]))
      stacked = [tf.stack([r[k] for r in rep_grads]) for k in range(len(features))]
      combined = self.method.combine_representation(list(features), stacked, step)
      grads = _dense(
          tape.gradient(self._encoder_outputs, shared, output_gradients=combined), shared
      )
      variables = list(shared)
      for name, g in zip(self.task_names, head_grads):
        grads += g
        variables += heads[name]
    else:
      per_task = []
      head_grads = []
      for name, loss in zip(self.task_names, losses):
        g = tape.gradient(loss, shared + heads[name])
        per_task.append(_flatten(_dense(g[: len(shared)], shared)))
        head_grads.append(_dense(g[len(shared) :], heads[name]))
      flat = self.method.combine(tf.stack(per_task), tf.stack(losses), step)
      grads = _unflatten(flat, shared)
      variables = list(shared)
      for name, g in zip(self.task_names, head_grads):
        grads += g
        variables += heads[name]
    del tape
    scalars['total'] = total
    return grads, variables, scalars

  def _train_step(self, batch):
    grads, variables, scalars = self.gradients(batch, self.step)
    self.optimizer.apply_gradients(zip(grads, variables))
    return scalars

  # --------------------------------------------------------------------------------------------
  # The loop.

  def restore(self) -> int:
    latest = self.checkpoint_manager.latest_checkpoint
    if latest:
      self.checkpoint.restore(latest)
      logging.info('resumed from %s at step %d', latest, int(self.step.numpy()))
    return int(self.step.numpy())

  def save(self) -> str:
    return self.checkpoint_manager.save(checkpoint_number=int(self.step.numpy()))

  def train(self) -> Dict[str, Dict[str, float]]:
    """Runs to loop.num_steps (resuming from the latest checkpoint); returns final eval metrics."""
    start = self.restore()
    # The stream is deterministic for a seed, so a resumed run skips the batches it has used.
    batches = iter(self.dataset.skip(start))
    progress = summaries.Progress(self.loop.num_steps, start, prefix=f'[{self.method.name}] ')
    for step in range(start, self.loop.num_steps):
      terms = self._step_fn(next(batches))
      self.step.assign_add(1)
      done = step + 1
      due = (
          done % self.loop.log_every == 0
          or done % self.loop.summary_every == 0
          or done % self.loop.checkpoint_every == 0
          or done == self.loop.num_steps
      )
      if due:
        scalars = {k: float(v) for k, v in terms.items()}
        for k, v in scalars.items():
          if not math.isfinite(v):
            raise NonFiniteLossError(
                f'step {step}: {k} is {v}; stopping (method {self.method.name}). Last good '
                f'checkpoint: {self.checkpoint_manager.latest_checkpoint or "(none yet)"}'
            )
        progress.update(done, scalars, self.loop.log_every)
        if done % self.loop.summary_every == 0:
          self.writer.scalars(done, {**scalars, 'steps_per_second': progress.rate})
      if done % self.loop.checkpoint_every == 0 and done < self.loop.num_steps:
        self.save()
      if self.loop.eval_every and done % self.loop.eval_every == 0 and done < self.loop.num_steps:
        self.evaluate_and_log(done)
    latest = self.checkpoint_manager.latest_checkpoint
    if not latest or int(latest.rsplit('-', 1)[-1]) != self.loop.num_steps:
      self.save()
    results = self.evaluate_and_log(self.loop.num_steps)
    self.writer.flush()
    return results

  def evaluate(self) -> Dict[str, Dict[str, float]]:
    if self.evaluation is None:
      return {}
    return evaluate_models(self.backbone.tasks, self._models, self.evaluation)

  def evaluate_and_log(self, step: int) -> Dict[str, Dict[str, float]]:
    results = self.evaluate()
    for name, metrics in results.items():
      self.eval_writer.scalars(step, {f'{name}/{k}': v for k, v in metrics.items()})
      logging.info(
          'eval step %d %s: %s', step, name, ', '.join(f'{k}={v:.4f}' for k, v in metrics.items())
      )
    if results:
      files.write_json_atomic(
          os.path.join(self.run_dir, 'eval_results.json'),
          {'step': step, 'metrics': results},
          sort_keys=True,
      )
      with tf.io.gfile.GFile(os.path.join(self.run_dir, 'eval_history.jsonl'), 'a') as f:
        f.write(json.dumps({'step': step, 'metrics': results}, sort_keys=True) + '\n')
    self.eval_writer.flush()
    return results


class MTLExperiment:
  """The gin root of a shared-encoder experiment (registered in training/experiment.py).

  Args:
    tasks: FrameTasks with one dense head each (e.g. @DepthTask(), @NormalsTask(),
      @SegmentationTask()); every training frame carries all their labels.
    method: the gradient method, e.g. @PCGrad() (a gin reference, so a misspelt method is a gin
      error naming the binding).
    optimizer: optimizer factory (e.g. @mtl/Adam, unparenthesised).
    train_clips: clip source of the labelled training clips.
    height, width: image size in pixels.
    base_filters, levels: U-Net size.
    batch_size: frames per step.
    train_frames: frame indices per clip used for training (None: all).
    loss_weights: {task: weight} (default 1 each).
    evaluation_clips: clip source of labelled evaluation clips (None: no evaluation).
    evaluation_frames: frames per evaluation clip (None: all).
    evaluation_max_clips: cap on evaluation clips.
    loop: loop cadence.
    seed: initialisation, data order and the methods' stateless randomness.
    jit_compile: compile the training step with XLA.
  """

  def __init__(
      self,
      tasks: Sequence,
      method,
      optimizer,
      train_clips,
      height: int,
      width: int,
      base_filters: int = 8,
      levels: int = 4,
      batch_size: int = 8,
      train_frames: Optional[Sequence[int]] = None,
      loss_weights: Optional[Mapping[str, float]] = None,
      evaluation_clips=None,
      evaluation_frames: Optional[Sequence[int]] = None,
      evaluation_max_clips: Optional[int] = None,
      loop: Optional[LoopConfig] = None,
      seed: int = 0,
      jit_compile: bool = False,
  ):
    if not tasks:
      raise ValueError('MTLExperiment.tasks is empty; give the tasks sharing the encoder')
    if not (
        isinstance(method, methods_lib.GradientMethod)
        or getattr(method, 'uses_representation', False)
    ):
      raise ValueError(
          f'MTLExperiment.method must be a gradient method (@EW(), @MGDA(), @PCGrad(), '
          f'@GradDrop(), @CAGrad(), @MCLGS()), got {method!r}'
      )
    if batch_size < 1:
      raise ValueError(f'MTLExperiment.batch_size must be >= 1, got {batch_size}')
    self.tasks = list(tasks)
    self.method = method
    self.optimizer = optimizer
    self.train_clips = train_clips
    self.height, self.width = height, width
    self.base_filters, self.levels = base_filters, levels
    self.batch_size = batch_size
    self.train_frames = train_frames
    self.loss_weights = loss_weights
    self.evaluation_clips = evaluation_clips
    self.evaluation_frames = evaluation_frames
    self.evaluation_max_clips = evaluation_max_clips
    self.loop = loop or LoopConfig()
    self.seed = seed
    self.jit_compile = jit_compile
    if hasattr(method, 'seed'):
      # The methods' stateless randomness follows the experiment's seed.
      method.seed = seed

  def build_trainer(self, run_dir: str) -> MTLTrainer:
    keras.utils.set_random_seed(self.seed)
    backbone = SharedBackbone(self.tasks, self.height, self.width, self.base_filters, self.levels)
    dataset = pipelines.dedicated_dataset(
        self.train_clips(), self.batch_size, 1.0, self.train_frames, seed=self.seed
    )
    evaluation = None
    if self.evaluation_clips is not None:
      evaluation = pipelines.evaluation_dataset(
          self.evaluation_clips(), 16, self.evaluation_frames, self.evaluation_max_clips
      )
    return MTLTrainer(
        backbone,
        self.method,
        self.optimizer(),
        dataset,
        self.loop,
        run_dir,
        evaluation=evaluation,
        loss_weights=self.loss_weights,
        jit_compile=self.jit_compile,
    )
