"""Taskonomy-style transfers between our trained tasks (Zamir et al. 2018, Sec. 3.2).

Each trained task network's encoder (the U-Net's bottleneck, the representation every decoder
level grows from) is frozen; a small readout (a shallow decoder) is trained on a little
transfer data from the frozen features of one source (first order) or of a set of sources
concatenated along channels (higher order) to a target's output, with the target's own
supervised loss. Every transfer is then scored per test image by that loss, which is what the
win rates, AHP affinities, Gain (vs a network trained from scratch on the transfer data) and
Quality (vs the fully supervised network) are computed from (taxonomy/ahp.py).
"""

import dataclasses
import re
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from taskology_tf.mtl.model import FixedOutput
from taskology_tf.mtl.model import head_channels
from taskology_tf.tasks.base import to_float_image
from taskology_tf.taxonomy import ahp

_DOWN = re.compile(r'_down(\d+)_relu1$')


def frozen_encoder(model: keras.Model) -> keras.Model:
  """image [B, H, W, 3] float in [0, 1] -> the U-Net's bottleneck [B, H/2^L, W/2^L, C], frozen.

  The encoder shares its layers with `model`, so those layers become non-trainable there too.
  """
  levels = {int(m.group(1)): l for l in model.layers if (m := _DOWN.search(l.name))}
  if not levels:
    raise ValueError(
        f'frozen_encoder: {model.name!r} is not a build_unet U-Net (no *_down<k>_relu1 layer)'
    )
  encoder = keras.Model(model.input, levels[max(levels)].output, name=f'{model.name}_encoder')
  encoder.trainable = False
  return encoder


def build_readout(
    feature_shape: Sequence[int],
    out_channels: int,
    upsamplings: int,
    filters: int = 16,
    name='readout',
) -> keras.Model:
  """A small decoder: features [h, w, C] -> raw [h 2^u, w 2^u, out_channels] (conv, upsample)."""
  inputs = keras.Input(shape=tuple(feature_shape), name='features')
  x = keras.layers.Conv2D(filters, 3, padding='same', activation='relu', name=f'{name}_in')(inputs)
  for i in range(upsamplings):
    x = keras.layers.UpSampling2D(2, interpolation='bilinear', name=f'{name}_up{i}')(x)
    x = keras.layers.Conv2D(filters, 3, padding='same', activation='relu', name=f'{name}_conv{i}')(
        x
    )
  out = keras.layers.Conv2D(out_channels, 3, padding='same', name=f'{name}_out')(x)
  return keras.Model(inputs, out, name=name)


class TransferModel:
  """Frozen source encoders + a trainable readout onto one target (a first- or k-th order transfer).

  Args:
    target: the target Task.
    encoders: frozen encoders of the sources, in order.
    height, width: image size.
  """

  def __init__(self, target, encoders: Sequence[keras.Model], height: int, width: int):
    self.target = target
    self.encoders = list(encoders)
    shapes = [e.output_shape for e in self.encoders]
    h, w = shapes[0][1], shapes[0][2]
    up = int(round(np.log2(height / h)))
    if h * 2**up != height or w * 2**up != width:
      raise ValueError(f'TransferModel: features {h}x{w} do not upsample to {height}x{width}')
    channels = sum(s[-1] for s in shapes)
    self.readout = build_readout(
        (h, w, channels), head_channels(target), up, name=f'readout_{target.name}'
    )

  @property
  def trainable_variables(self):
    return self.readout.trainable_variables

  def raw(self, image_uint8: tf.Tensor) -> tf.Tensor:
    x = to_float_image(image_uint8)
    feats = [e(x, training=False) for e in self.encoders]
    feats = feats[0] if len(feats) == 1 else tf.concat(feats, axis=-1)
    return self.readout(tf.stop_gradient(feats), training=True)

  def outputs(self, batch):
    return self.target.call(FixedOutput(self.raw(batch['image'])), {'image': batch['image']})


class _WholeNetwork:
  """A full network (the fully supervised one, or scratch training) behind the same interface."""

  def __init__(self, target, model: keras.Model):
    self.target = target
    self.model = model

  @property
  def trainable_variables(self):
    return self.model.trainable_variables

  def outputs(self, batch):
    return self.target.call(self.model, {'image': batch['image']}, training=True)


def train(predictor, dataset: tf.data.Dataset, steps: int, learning_rate: float) -> List[float]:
  """Trains a predictor's trainable variables with the target's supervised loss; returns losses."""
  optimizer = keras.optimizers.Adam(learning_rate)
  variables = predictor.trainable_variables

  @tf.function
  def step(batch):
    with tf.GradientTape() as tape:
      loss, _ = predictor.target.supervised_loss(batch, predictor.outputs(batch))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  it = iter(dataset)
  return [float(step(next(it))) for _ in range(steps)]


def per_image_losses(predictor, dataset: tf.data.Dataset) -> np.ndarray:
  """The target's supervised loss of each test image, [N] float64 (the win-rate unit)."""
  out = []
  fn = tf.function(predictor.outputs)
  for batch in dataset:
    outputs = fn(batch)
    n = int(batch['image'].shape[0])
    for i in range(n):
      b = {k: v[i : i + 1] for k, v in batch.items()}
      o = {k: v[i : i + 1] for k, v in outputs.items()}
      out.append(float(predictor.target.supervised_loss(b, o)[0]))
  return np.asarray(out, np.float64)


@dataclasses.dataclass
class TargetResult:
  """Everything measured onto one target.

  Attributes:
    names: transfer names: 'a', 'a+b' (source sets), 'full' (its own network), 'scratch'.
    sources: the source tuple of each name (full: (target,), scratch: ()).
    losses: [len(names), N] per-image losses.
    affinity: AHP affinities over the candidate transfers (every name but 'scratch'), sum 1.
    gain, quality: per candidate name, win rates vs scratch and vs full.
    mean_loss: per name, the mean test loss.
  """

  names: List[str]
  sources: List[Tuple[str, ...]]
  losses: np.ndarray
  affinity: Dict[str, float]
  gain: Dict[str, float]
  quality: Dict[str, float]
  mean_loss: Dict[str, float]


def measure_target(
    target,
    source_sets: Sequence[Tuple[str, ...]],
    models: Mapping[str, keras.Model],
    transfer_data: tf.data.Dataset,
    test_data: tf.data.Dataset,
    steps: int,
    learning_rate: float,
    height: int,
    width: int,
    log: Callable[[str], None] = print,
) -> TargetResult:
  """Trains every transfer onto `target` plus a scratch network; scores all per test image."""
  encoders = {n: frozen_encoder(m) for n, m in models.items()}
  names, sources, losses = [], [], []
  for sset in source_sets:
    tm = TransferModel(target, [encoders[s] for s in sset], height, width)
    curve = train(tm, transfer_data, steps, learning_rate)
    names.append('+'.join(sset))
    sources.append(tuple(sset))
    losses.append(per_image_losses(tm, test_data))
    log(
        f'  {names[-1]:>24s} -> {target.name}: train loss {curve[-1]:.4f}, test {losses[-1].mean():.4f}'
    )
  full = _WholeNetwork(target, models[target.name])
  names.append('full')
  sources.append((target.name,))
  losses.append(per_image_losses(full, test_data))
  scratch = _WholeNetwork(target, target.build_network())
  train(scratch, transfer_data, steps, learning_rate)
  names.append('scratch')
  sources.append(())
  losses.append(per_image_losses(scratch, test_data))
  log(
      f'  {"full / scratch":>24s} -> {target.name}: test {losses[-2].mean():.4f} / {losses[-1].mean():.4f}'
  )
  losses = np.stack(losses)
  candidates = names[:-1]
  aff = ahp.ahp_affinities(losses[:-1])
  gain = {n: ahp.win_rate(losses[i], losses[-1]) for i, n in enumerate(candidates)}
  quality = {n: ahp.win_rate(losses[i], losses[-2]) for i, n in enumerate(candidates)}
  return TargetResult(
      names,
      sources,
      losses,
      {n: float(a) for n, a in zip(candidates, aff)},
      gain,
      quality,
      {n: float(losses[i].mean()) for i, n in enumerate(names)},
  )
