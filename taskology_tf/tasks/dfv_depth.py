"""Monocular depth with the Depth from Videos in the Wild network (Gordon et al., ICCV 2019)."""

import functools
from typing import Optional

from taskology_tf.networks import dfv_depth
from taskology_tf.tasks.base import to_float_image
from taskology_tf.tasks.depth import DepthTask


class DfvNetworkMixin:
  """The ResNet-18 U-Net knobs and noise ramp shared by DfvDepthTask and DfvNormalsTask.

  Randomized layer norm: its noise ramp reads a step variable. The project's trainer calls
  `bind_training_step`, so the ramp follows the trainer's global step (read inside the compiled
  step; checkpointed and resumed with it). Unbound (a network used outside the trainer), the
  ramp reads the network's own `noise_step`, which with `advance_noise_step` (default) every
  training forward pass through `call` advances by 1.
  """

  def _init_network_knobs(
      self,
      weight_reg: float,
      reflect_padding: bool,
      advance_noise_step: bool,
      imagenet_checkpoint: Optional[str],
      imagenet_checkpoint_prefix: str,
      noise_max_stddev: float,
      noise_rampup_steps: int,
      filters_scale: float,
      decoder_leaky_slope: float = 0.0,
  ):
    self.weight_reg = weight_reg
    self.decoder_leaky_slope = decoder_leaky_slope
    self.reflect_padding = reflect_padding
    self.advance_noise_step = advance_noise_step
    self.imagenet_checkpoint = imagenet_checkpoint
    self.imagenet_checkpoint_prefix = imagenet_checkpoint_prefix
    self.noise_max_stddev = noise_max_stddev
    self.noise_rampup_steps = noise_rampup_steps
    self.filters_scale = filters_scale
    if imagenet_checkpoint and filters_scale != 1.0:
      raise ValueError(
          f'{type(self).__name__}({self.name!r}): imagenet_checkpoint holds the published '
          f'ResNet-18 widths; filters_scale must be 1.0 with it, got {filters_scale}'
      )

  def _build_resnet_unet(self, builder, suffix: str):
    """`builder` (build_dfv_depth_net or build_dfv_normals_net) with this task's knobs."""
    model = builder(
        self.height,
        self.width,
        weight_reg=self.weight_reg,
        reflect_padding=self.reflect_padding,
        noise_max_stddev=self.noise_max_stddev,
        noise_rampup_steps=self.noise_rampup_steps,
        filters_scale=self.filters_scale,
        decoder_leaky_slope=self.decoder_leaky_slope,
        name=f'{self.name}_{suffix}',
    )
    if self.imagenet_checkpoint:
      dfv_depth.load_imagenet_encoder(
          model, self.imagenet_checkpoint, self.imagenet_checkpoint_prefix
      )
    return model

  def bind_training_step(self, model, step):
    """Makes `model`'s randomized layer norms ramp their noise with `step`.

    Args:
      model: a network from `build_network`, not yet traced.
      step: int64 tf.Variable, the training step (0 during the first step).
    """
    model.noise_step_reference.variable = step

  def _training_forward(self, model, image):
    """model(image, training=True), advancing the network's own noise step when unbound."""
    out = model(image, training=True)
    if self.advance_noise_step and model.noise_step_reference.variable is model.noise_step:
      # Program order (and tf.function's automatic control dependencies on the variable)
      # puts this after the normalisation layers have read the step.
      model.noise_step.assign_add(1)
    return out

  def _forward(self, model, inputs, training, flip_fn):
    """The network on inputs['image'] (checked, made float): the training pass, or at
    inference `flip_fn(predict, image)` when `flip_at_test`, else the plain prediction."""
    image = inputs['image']
    self._check_image(image)
    image = to_float_image(image)
    if training:
      return self._training_forward(model, image)
    if self.flip_at_test:
      return flip_fn(lambda x: model(x, training=False), image)
    return model(image, training=False)


class DfvDepthTask(DfvNetworkMixin, DepthTask):
  """Predicts `depth` [N, H, W, 1] float32 (metres up to scale) with the ResNet-18 U-Net.

  Same outputs, supervised loss and metrics as `DepthTask`, so relations, peers and evaluation
  treat the two alike; only the network differs (taskology_tf/networks/dfv_depth.py).

  Randomized layer norm: see `DfvNetworkMixin`.

  Args:
    height, width: frame size in pixels.
    weight_reg: decoder L2 regularisation (1e-2 published), in `model.losses`.
    reflect_padding: reflect padding in the decoder (published).
    flip_at_test: at inference, min(d(I), flip(d(flip(I)))) as the reference's test graph.
    advance_noise_step: see `DfvNetworkMixin`.
    imagenet_checkpoint: optional ImageNet ResNet-18 checkpoint for the encoder (reference
      names, see `dfv_depth.load_imagenet_encoder`); loaded by every `build_network`.
    imagenet_checkpoint_prefix: scope prefix of the names in that checkpoint.
    noise_max_stddev, noise_rampup_steps: randomized layer norm ramp (0.5, 10000).
    filters_scale: the network's filter counts times this (1.0 as published; gin/tests/tiny.gin
      shrinks it so smoke tests build in seconds; an ImageNet checkpoint needs 1.0).
    decoder_leaky_slope: 0 (published, ReLU) or the LeakyReLU slope of the decoder (ours;
      networks/dfv_depth.build_dfv_depth_net says why).
    max_depth, min_depth, loss, median_scaling: as `DepthTask` (min_depth 0: the published
      softplus without a floor).
    initial_depth: None (published: the depth starts near softplus(0) = 0.69 m), or the depth
      in metres it starts near (ours; networks/dfv_depth.build_dfv_depth_net).
    name: task name.
  """

  def __init__(
      self,
      height: int,
      width: int,
      weight_reg: float = 0.01,
      reflect_padding: bool = True,
      flip_at_test: bool = True,
      advance_noise_step: bool = True,
      imagenet_checkpoint: Optional[str] = None,
      imagenet_checkpoint_prefix: str = '',
      noise_max_stddev: float = 0.5,
      noise_rampup_steps: int = 10000,
      filters_scale: float = 1.0,
      decoder_leaky_slope: float = 0.0,
      max_depth: float = 80.0,
      min_depth: float = 0.0,
      loss: str = 'log_l1',
      median_scaling: bool = False,
      initial_depth: Optional[float] = None,
      name: str = 'depth',
  ):
    super().__init__(
        height,
        width,
        max_depth=max_depth,
        min_depth=min_depth,
        loss=loss,
        median_scaling=median_scaling,
        name=name,
    )
    self.flip_at_test = flip_at_test
    self.initial_depth = initial_depth
    self._init_network_knobs(
        weight_reg,
        reflect_padding,
        advance_noise_step,
        imagenet_checkpoint,
        imagenet_checkpoint_prefix,
        noise_max_stddev,
        noise_rampup_steps,
        filters_scale,
        decoder_leaky_slope,
    )

  def build_network(self):
    return self._build_resnet_unet(
        functools.partial(dfv_depth.build_dfv_depth_net, initial_depth=self.initial_depth),
        'dfv_resnet18',
    )

  def call(self, model, inputs, training=False):
    depth = self._forward(model, inputs, training, dfv_depth.flip_min_depth)
    return {'depth': depth + self.min_depth if self.min_depth else depth}
