"""Surface normals with a network of equal standing to the DfVitW depth network (Table 3)."""

from typing import Optional

from taskology_tf.networks import dfv_normals
from taskology_tf.tasks.dfv_depth import DfvNetworkMixin
from taskology_tf.tasks.normals import NormalsTask


class DfvNormalsTask(DfvNetworkMixin, NormalsTask):
  """Predicts `normals` [N, H, W, 3] float32 unit vectors with the ResNet-18 U-Net.

  Same outputs, supervised loss (1 - cos over valid pixels) and metrics as `NormalsTask`, so
  relations (Eq. 6), peers and evaluation treat the two alike; the network is DfvDepthTask's
  with a 3-channel unit-normal head (taskology_tf/networks/dfv_normals.py), with the same
  knobs: decoder weight decay, reflect padding, optional ImageNet encoder, randomized layer
  norm whose noise ramp follows the trainer's step (`DfvNetworkMixin`).

  Args:
    height, width: frame size in pixels.
    weight_reg: decoder L2 regularisation (1e-2 as the depth network), in `model.losses`.
    reflect_padding: reflect padding in the decoder.
    flip_at_test: at inference, average with the mirrored image's (x-mirrored) normals
      (`dfv_normals.flip_mean_normals`). Off by default: the depth network's flip is the
      reference's; normals have no published counterpart.
    advance_noise_step: see `DfvNetworkMixin`.
    imagenet_checkpoint: optional ImageNet ResNet-18 checkpoint for the encoder (reference
      names, see `dfv_depth.load_imagenet_encoder`); loaded by every `build_network`.
    imagenet_checkpoint_prefix: scope prefix of the names in that checkpoint.
    noise_max_stddev, noise_rampup_steps: randomized layer norm ramp (0.5, 10000).
    filters_scale: the network's filter counts times this (1.0 = the depth network's widths).
    decoder_leaky_slope: as `DfvDepthTask` (0.0: ReLU decoder; > 0: LeakyReLU of that slope,
      same variables).
    max_depth: as `NormalsTask` (pixels with gt depth <= 0 or >= max_depth, or an all-zero gt
      normal, are neither supervised nor scored).
    name: task name.
  """

  def __init__(
      self,
      height: int,
      width: int,
      weight_reg: float = 0.01,
      reflect_padding: bool = True,
      flip_at_test: bool = False,
      advance_noise_step: bool = True,
      imagenet_checkpoint: Optional[str] = None,
      imagenet_checkpoint_prefix: str = '',
      noise_max_stddev: float = 0.5,
      noise_rampup_steps: int = 10000,
      filters_scale: float = 1.0,
      decoder_leaky_slope: float = 0.0,
      max_depth: float = 80.0,
      name: str = 'normals',
  ):
    super().__init__(height, width, max_depth=max_depth, name=name)
    self.flip_at_test = flip_at_test
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
    return self._build_resnet_unet(dfv_normals.build_dfv_normals_net, 'dfv_resnet18')

  def call(self, model, inputs, training=False):
    return {'normals': self._forward(model, inputs, training, dfv_normals.flip_mean_normals)}
