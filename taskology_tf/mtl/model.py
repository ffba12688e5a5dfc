"""The shared-encoder multi-task model: one U-Net encoder, one U-Net decoder and head per task.

The encoder is the down path of `taskology_tf.networks.unet.build_unet` (its skips and its
bottleneck are the shared representation) and each task's decoder is that U-Net's up path and
output conv. A one-task instance is therefore exactly the U-Net of the separate-network tasks
(same layers, same parameter count; a test checks it), so the single-task (STL) baselines and
Taskology's collective training run the very networks the shared model splits.
"""

from typing import Dict, List, Mapping, Sequence

import tensorflow as tf
import tf_keras as keras

from taskology_tf.networks import unet
from taskology_tf.tasks.base import FrameTask


def head_channels(task) -> int:
  """Raw output channels of a task's head; ValueError if the task has no dense per-pixel head.

  A head is a per-pixel map [H, W, C]: the task must be a FrameTask with exactly one output.
  """
  spec = getattr(task, 'output_spec', None)
  if not isinstance(task, FrameTask) or spec is None or len(spec) != 1:
    raise ValueError(
        f'MTLExperiment.tasks: task {getattr(task, "name", task)!r} has no dense per-pixel head '
        'for the shared encoder (it needs one [H, W, C] output per frame, like depth, normals or '
        f'segmentation); its output spec is {spec}'
    )
  (only,) = spec.values()
  if only.shape.rank != 3:
    raise ValueError(
        f'MTLExperiment.tasks: task {task.name!r} has no dense per-pixel head: its output '
        f'{list(spec)[0]!r} has shape {only.shape}, not [H, W, C]'
    )
  return int(only.shape[-1])


def build_encoder(
    height: int, width: int, base_filters: int, levels: int, name: str = 'shared'
) -> keras.Model:
  """The U-Net down path: image [B, H, W, 3] float in [0, 1] -> [skip_0 .. skip_{L-2}, bottom].

  skip_l is [B, H / 2^l, W / 2^l, base_filters 2^l] float32; bottom is the coarsest level.
  """
  factor = 2 ** (levels - 1)
  for dim_name, dim in (('height', height), ('width', width)):
    if dim % factor:
      raise ValueError(
          f'MTL encoder: {dim_name}={dim} is not divisible by 2**(levels-1)={factor}; '
          'change MTLExperiment.levels or the image size'
      )
  inputs = keras.Input(shape=(height, width, 3), name='image')
  x = inputs
  outputs = []
  for level in range(levels):
    # The same blocks as build_unet's down path (so one task == one U-Net).
    x = unet._conv_block(x, base_filters * 2**level, name=f'{name}_down{level}')  # pylint: disable=protected-access
    outputs.append(x)
    if level < levels - 1:
      x = keras.layers.MaxPool2D(2, name=f'{name}_pool{level}')(x)
  return keras.Model(inputs, outputs, name=f'{name}_encoder')


def build_decoder(
    encoder: keras.Model, out_channels: int, base_filters: int, levels: int, name: str
) -> keras.Model:
  """A task's U-Net up path and output conv: encoder outputs -> raw [B, H, W, out_channels]."""
  feats = [
      keras.Input(shape=t.shape[1:], name=f'{name}_in{i}') for i, t in enumerate(encoder.outputs)
  ]
  x = feats[-1]
  for level in reversed(range(levels - 1)):
    x = keras.layers.UpSampling2D(2, interpolation='bilinear', name=f'{name}_up{level}')(x)
    x = keras.layers.Concatenate(name=f'{name}_skip{level}')([x, feats[level]])
    x = unet._conv_block(x, base_filters * 2**level, name=f'{name}_dec{level}')  # pylint: disable=protected-access
  out = keras.layers.Conv2D(out_channels, 3, padding='same', name=f'{name}_head')(x)
  return keras.Model(feats, out, name=f'{name}_decoder')


class SharedBackbone(tf.Module):
  """A shared encoder and one decoder per task.

  Args:
    tasks: FrameTasks with one dense output each (depth, normals, segmentation).
    height, width: image size in pixels.
    base_filters, levels: U-Net size (shared by the encoder and every decoder).
  """

  def __init__(
      self, tasks: Sequence, height: int, width: int, base_filters: int = 8, levels: int = 4
  ):
    super().__init__(name='shared_backbone')
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
      raise ValueError(f'MTLExperiment.tasks: task names must be unique, got {names}')
    self.tasks = {t.name: t for t in tasks}
    self.encoder = build_encoder(height, width, base_filters, levels)
    self.decoders: Dict[str, keras.Model] = {
        t.name: build_decoder(self.encoder, head_channels(t), base_filters, levels, t.name)
        for t in tasks
    }

  @property
  def shared_variables(self) -> List[tf.Variable]:
    return list(self.encoder.trainable_variables)

  def task_variables(self, name: str) -> List[tf.Variable]:
    return list(self.decoders[name].trainable_variables)

  def task_model(self, name: str) -> keras.Model:
    """image [B, H, W, 3] float -> raw task output: the shared encoder plus this decoder, one
    Keras model sharing their weights (for evaluation and export through `Task.call`)."""
    inputs = keras.Input(shape=self.encoder.input_shape[1:], name='image')
    return keras.Model(
        inputs, self.decoders[name](self.encoder(inputs)), name=f'{name}_shared_model'
    )


class FixedOutput:
  """Stands in for a network inside `Task.call`: returns precomputed raw outputs.

  The shared encoder runs once per step and each decoder once on its features; `Task.call`
  then applies the task's own output head (softplus for depth, normalisation for normals) to
  the decoder's raw output exactly as it does for a separate network.
  """

  def __init__(self, raw: tf.Tensor):
    self.raw = raw

  def __call__(self, image, training=False):
    del image, training
    return self.raw


def task_outputs(
    backbone: SharedBackbone,
    features: Sequence[tf.Tensor],
    inputs: Mapping[str, tf.Tensor],
    training,
) -> Dict[str, Dict[str, tf.Tensor]]:
  """Every task's outputs from one encoder pass: {task: Task.call outputs}."""
  out = {}
  for name, task in backbone.tasks.items():
    raw = backbone.decoders[name](list(features), training=training)
    out[name] = task.call(FixedOutput(raw), inputs, training=training)
  return out
