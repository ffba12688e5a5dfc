"""Randomized layer normalization (Gordon et al., ICCV 2019, Sec. 4 "Randomized layer norm").

Depth from Videos in the Wild replaces batch normalization in its depth encoder by a layer
normalization whose moments are perturbed during training: for every example and channel the
mean and variance over H and W are computed, and in training each is multiplied by
1 + n, n ~ TruncatedNormal(0, s), with s ramped up parabolically over the first 10,000 steps,

    s(step) = 0.5 * min(step / 10000, 1)^2.

0.5 is the largest stddev for which 1 + n (truncated at two stddevs) stays non-negative. At
inference (and at s = 0) the layer is a plain per-example, per-channel layer norm with a learnt
scale `gamma` and offset `beta` and variance epsilon 1e-3, the reference's values.

The step is read from an int64 variable owned by the network (`noise_step`), so the ramp is a
graph computation that compiles under XLA and whoever drives training (the task advancing it once
per training forward pass, or a trainer assigning its optimizer's iterations) can feed it.
"""

from typing import Optional

import tensorflow as tf
import tf_keras as keras

# Reference values (depth_from_video_in_the_wild/model.py and randomized_layer_normalization.py).
MAX_NOISE_STDDEV = 0.5
NOISE_RAMPUP_STEPS = 10000
VARIANCE_EPSILON = 1e-3


def noise_stddev(
    step: tf.Tensor,
    max_stddev: float = MAX_NOISE_STDDEV,
    rampup_steps: int = NOISE_RAMPUP_STEPS,
) -> tf.Tensor:
  """The stddev of the multiplicative moment noise at a training step.

  s = max_stddev * min(step / rampup_steps, 1)^2 (the reference's parabolic ramp).

  Args:
    step: scalar int or float tensor, the training step (0 at the first step).
    max_stddev: float, the stddev once the ramp is complete.
    rampup_steps: int > 0, steps until the ramp is complete.

  Returns:
    Scalar float32 stddev.
  """
  if rampup_steps <= 0:
    raise ValueError(f'noise_stddev: rampup_steps must be > 0, got {rampup_steps}')
  fraction = tf.minimum(tf.cast(step, tf.float32) / float(rampup_steps), 1.0)
  return max_stddev * tf.square(fraction)


class StepReference:
  """Holds the network's step variable without Keras tracking it once per layer.

  The variable is tracked (and checkpointed) once, as an attribute of the model; every
  normalization layer only reads it through this plain holder.
  """

  def __init__(self, variable: tf.Variable):
    self.variable = variable


class RandomizedLayerNormalization(keras.layers.Layer):
  """Per-example, per-channel normalization over H and W with noisy moments in training.

  Args:
    step: StepReference to the int64 training-step variable, or None for no noise ever.
    max_stddev: stddev of the noise once ramped up (0.5 in the reference).
    rampup_steps: length of the parabolic ramp (10,000 in the reference).
    epsilon: variance epsilon (1e-3 in the reference).
    **kwargs: Keras layer arguments (name, ...).

  Call arguments:
    x: [B, H, W, C] float32 features.
    training: Python bool; the noise is applied only when True.
  """

  def __init__(
      self,
      step: Optional[StepReference] = None,
      max_stddev: float = MAX_NOISE_STDDEV,
      rampup_steps: int = NOISE_RAMPUP_STEPS,
      epsilon: float = VARIANCE_EPSILON,
      **kwargs,
  ):
    super().__init__(**kwargs)
    self._step = step
    self.max_stddev = float(max_stddev)
    self.rampup_steps = int(rampup_steps)
    self.epsilon = float(epsilon)

  def build(self, input_shape):
    channels = input_shape[-1]
    if channels is None:
      raise ValueError(f'{self.name}: the channel dimension must be known, got {input_shape}')
    self.gamma = self.add_weight('gamma', shape=[channels], initializer='ones')
    self.beta = self.add_weight('beta', shape=[channels], initializer='zeros')
    super().build(input_shape)

  def current_stddev(self) -> tf.Tensor:
    """The noise stddev at the current value of the step variable (0 without one)."""
    if self._step is None:
      return tf.constant(0.0)
    return noise_stddev(self._step.variable, self.max_stddev, self.rampup_steps)

  def call(self, x, training=None):
    mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)  # [B, 1, 1, C] each.
    if training and self._step is not None:
      stddev = self.current_stddev()
      mean *= 1.0 + tf.random.truncated_normal(tf.shape(mean), stddev=stddev)
      variance *= 1.0 + tf.random.truncated_normal(tf.shape(variance), stddev=stddev)
    return tf.nn.batch_normalization(
        x, mean, variance, offset=self.beta, scale=self.gamma, variance_epsilon=self.epsilon
    )

  def get_config(self):
    config = super().get_config()
    config.update(max_stddev=self.max_stddev, rampup_steps=self.rampup_steps, epsilon=self.epsilon)
    return config
