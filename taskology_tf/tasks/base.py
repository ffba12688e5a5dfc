"""The task contract.

A task knows what it predicts (its output spec), how to build its network, which raw inputs it
takes from a mediator clip (so peers can be queried over the wire with uint8 tensors), its
supervised loss and its evaluation metrics. It never knows about gRPC, other tasks, or gin.

Shapes used throughout:
- A *dedicated* batch holds single labelled frames: `image` uint8 [B, H, W, 3] plus labels.
- A *mediator* batch holds unlabelled clips: `image` uint8 [B, T, H, W, 3], `intrinsics`
  float32 [B, 3, 3].
- `serving_inputs(mediator)` flattens a clip into the network's wire inputs (uint8, leading
  dimension N), `call(model, inputs)` runs the network on them, and `unflatten` restores the
  clip structure ([B, T, ...] for per-frame tasks, [B, T-1, ...] for per-pair tasks), which is
  what consistency relations consume. A stale peer answering over gRPC returns exactly what
  `call` returns, so relations cannot tell the two apart.
- A task may take another task's predictions as inputs (`input_tasks`, e.g. a motion network
  fed the predicted depth, the cascade of Li et al. 2020). Whoever predicts it first adds the
  upstream task's predictions to the mediator under `upstream_key(task, output)`
  (`with_upstream`); `serving_inputs` reads them from there, so a remote peer is sent them on
  the wire. They are constants to the downstream task (no gradient flows into the upstream
  task through them); `predict_in_order` runs a set of tasks upstream-first.
"""

import abc
from typing import Dict, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

Tensors = Dict[str, tf.Tensor]


def to_float_image(image: tf.Tensor) -> tf.Tensor:
  """uint8 [..., 3] in [0, 255] -> float32 in [0, 1]; float input is passed through."""
  if image.dtype == tf.uint8:
    return tf.cast(image, tf.float32) / 255.0
  return tf.cast(image, tf.float32)


UPSTREAM_PREFIX = 'upstream/'


def upstream_key(task: str, output: str) -> str:
  """The mediator key under which task `task`'s output `output` reaches downstream tasks."""
  return f'{UPSTREAM_PREFIX}{task}/{output}'


def with_upstream(mediator: Mapping[str, tf.Tensor], task: str, predictions: Tensors) -> Tensors:
  """A copy of `mediator` carrying `task`'s (unflattened) predictions, as constants."""
  out = dict(mediator)
  for k, v in predictions.items():
    out[upstream_key(task, k)] = tf.stop_gradient(v)
  return out


def has_upstream(mediator: Mapping[str, tf.Tensor], task: str) -> bool:
  """Whether `mediator` already carries predictions of `task`."""
  prefix = f'{UPSTREAM_PREFIX}{task}/'
  return any(k.startswith(prefix) for k in mediator)


def upstream_order(tasks: Mapping[str, 'Task']) -> Tuple[str, ...]:
  """Task names with every task after the tasks of this set it takes inputs from.

  Raises ValueError on a cycle (a task that, through others, feeds itself).
  """
  order, state = [], {}

  def visit(name, path):
    if state.get(name) == 'done':
      return
    if state.get(name) == 'visiting':
      raise ValueError(f'tasks feed each other in a cycle: {" -> ".join(path + [name])}')
    state[name] = 'visiting'
    for up in tasks[name].input_tasks:
      if up in tasks:
        visit(up, path + [name])
    state[name] = 'done'
    order.append(name)

  for name in tasks:
    visit(name, [])
  return tuple(order)


def predict_in_order(
    tasks: Mapping[str, 'Task'],
    models: Mapping[str, keras.Model],
    mediator: Mapping[str, tf.Tensor],
    training: bool = False,
    given: Optional[Mapping[str, Tensors]] = None,
) -> Dict[str, Tensors]:
  """`predict_mediator` of every task, upstream tasks first, each fed what it takes.

  A task's upstream predictions come from `given` (e.g. a stale peer's), else from this set's
  own predictions, else from what `mediator` already carries; missing everywhere is an error
  naming both tasks.
  """
  given = dict(given or {})
  out = {}
  for name in upstream_order(tasks):
    task = tasks[name]
    batch = mediator
    for up in task.input_tasks:
      source = given.get(up, out.get(up))
      if source is not None:
        batch = with_upstream(batch, up, source)
      elif not has_upstream(batch, up):
        raise KeyError(
            f'task {name!r} takes the predictions of task {up!r} as inputs, but {up!r} is '
            'neither predicted here nor given (nor already in the mediator batch)'
        )
    out[name] = task.predict_mediator(models[name], batch, training=training)
  return out


class Task(abc.ABC):
  """Base class of all tasks. Subclasses set `name` and implement the abstract methods."""

  name: str = 'task'

  @property
  def input_tasks(self) -> Sequence[str]:
    """Tasks whose predictions this task takes as inputs (none by default)."""
    return ()

  @property
  @abc.abstractmethod
  def output_spec(self) -> Dict[str, tf.TensorSpec]:
    """Per-example outputs of `call`, e.g. {'depth': TensorSpec([H, W, 1], float32)}."""

  @property
  @abc.abstractmethod
  def input_spec(self) -> Dict[str, tf.TensorSpec]:
    """Per-example wire inputs of `call` (uint8), e.g. {'image': TensorSpec([H, W, 3], uint8)}."""

  @abc.abstractmethod
  def build_network(self) -> keras.Model:
    """Builds a fresh, randomly initialised network."""

  @abc.abstractmethod
  def call(
      self, model: keras.Model, inputs: Mapping[str, tf.Tensor], training: bool = False
  ) -> Tensors:
    """Runs `model` on wire inputs (dict of uint8 [N, ...]) and returns outputs [N, ...]."""

  @abc.abstractmethod
  def serving_inputs(self, mediator: Mapping[str, tf.Tensor]) -> Tensors:
    """Wire inputs (uint8, leading dim N) for the clips of a mediator batch."""

  @abc.abstractmethod
  def unflatten(
      self, outputs: Mapping[str, tf.Tensor], batch_size: int, num_frames: int
  ) -> Tensors:
    """Restores clip structure: [N, ...] -> [B, T, ...] (or [B, T-1, ...] for pairs)."""

  def dedicated_inputs(self, batch: Mapping[str, tf.Tensor]) -> Tensors:
    """Wire inputs for a dedicated (labelled) batch. Default: the single-frame `image`."""
    return {'image': batch['image']}

  def supervised_loss(
      self, batch: Mapping[str, tf.Tensor], outputs: Mapping[str, tf.Tensor]
  ) -> Tuple[tf.Tensor, Tensors]:
    """Supervised loss on a dedicated batch: (scalar loss, dict of scalar metrics).

    The default has no labels to learn from (a fully self-supervised task).
    """
    del batch, outputs
    return tf.constant(0.0), {}

  def new_metrics(self):
    """A fresh streaming evaluator with update(batch, outputs) and result(); None if none."""
    return None

  def predict_mediator(
      self, model: keras.Model, mediator: Mapping[str, tf.Tensor], training: bool = False
  ) -> Tensors:
    """Convenience: serving_inputs -> call -> unflatten for a live model."""
    shape = tf.shape(mediator['image'])
    flat = self.call(model, self.serving_inputs(mediator), training=training)
    return self.unflatten(flat, shape[0], shape[1])

  def serving_function(self, model: keras.Model):
    """A tf.function over uint8 wire inputs with a fixed signature, for SavedModel export."""
    signature = {
        k: tf.TensorSpec([None] + list(s.shape), s.dtype, name=k)
        for k, s in self.input_spec.items()
    }

    @tf.function(input_signature=[signature])
    def serve(inputs):
      return self.call(model, inputs, training=False)

    # The exported signature takes keyword arguments named after the inputs.
    @tf.function(input_signature=list(signature.values()))
    def serve_kwargs(*args):
      return serve(dict(zip(signature.keys(), args)))

    return serve_kwargs

  def image_summaries(self, outputs: Mapping[str, tf.Tensor]) -> Tensors:
    """Images (float [N, H, W, C] in [0, 1]) worth showing in TensorBoard."""
    del outputs
    return {}

  def scalar_summaries(self, model: keras.Model) -> Dict[str, float]:
    """Scalars of the network's state worth a TensorBoard curve (e.g. learnt output scales),
    written by the trainer at its summary cadence as `<task>/<key>`."""
    del model
    return {}


class FrameTask(Task):
  """A task that predicts one dense map per frame from that frame alone.

  Args:
    height: frame height in pixels.
    width: frame width in pixels.
    name: task name (the key of its predictions and its snapshot directory).
  """

  def __init__(self, height: int, width: int, name: str):
    self.height = height
    self.width = width
    self.name = name

  @property
  def input_spec(self):
    return {'image': tf.TensorSpec([self.height, self.width, 3], tf.uint8)}

  def serving_inputs(self, mediator):
    image = mediator['image']
    shape = tf.shape(image)
    return {'image': tf.reshape(image, tf.concat([[-1], shape[2:]], 0))}

  def unflatten(self, outputs, batch_size, num_frames):
    return {
        k: tf.reshape(v, tf.concat([[batch_size, num_frames], tf.shape(v)[1:]], 0))
        for k, v in outputs.items()
    }

  def _check_image(self, image: tf.Tensor) -> None:
    if image.shape.rank is not None and image.shape.rank != 4:
      raise ValueError(
          f'task {self.name!r}: input tensor `image` must be [N, H, W, 3], '
          f'got shape {image.shape}'
      )
