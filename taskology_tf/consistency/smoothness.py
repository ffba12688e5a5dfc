"""Edge-aware depth smoothness: a single-task regulariser on mediator predictions.

Self-supervised depth (the staleness study: depth + ego-motion from photometric consistency
alone) is ill-posed in textureless and occluded regions; the standard remedy is an edge-aware
smoothness prior on mean-normalised disparity (Godard et al. 2017/2019), which
depth-from-videos-in-the-wild also uses. It follows the relation contract with one task, so it
is configured, weighted and logged like every consistency term.
"""

import tensorflow as tf

from taskology_tf.consistency import base


class DepthSmoothness(base.Relation):
  """sum |d_x d*| exp(-|d_x I|) + |d_y d*| exp(-|d_y I|), d* = disparity / mean(disparity).

  Reads predictions[depth_task]['depth'] [B, T, H, W, 1] (metres) and batch['image']
  [B, T, H, W, 3] in [0, 1]. Mean normalisation makes the term scale-invariant, so it cannot
  be lowered by shrinking or growing the depth.
  """

  def __init__(self, depth_task='depth', name='depth_smoothness'):
    self.depth_task = depth_task
    self.name = name
    self.tasks = (depth_task,)

  def __call__(self, predictions, batch):
    depth = base.fold_time(tf.convert_to_tensor(predictions[self.depth_task]['depth'], tf.float32))
    image = base.fold_time(tf.convert_to_tensor(batch['image'], tf.float32))
    disparity = 1.0 / tf.maximum(depth, 1e-6)
    disparity = disparity / (tf.reduce_mean(disparity, axis=[1, 2, 3], keepdims=True) + 1e-7)
    grad_dx = tf.abs(disparity[:, :, 1:] - disparity[:, :, :-1])
    grad_dy = tf.abs(disparity[:, 1:] - disparity[:, :-1])
    weight_x = tf.exp(
        -tf.reduce_mean(tf.abs(image[:, :, 1:] - image[:, :, :-1]), axis=-1, keepdims=True)
    )
    weight_y = tf.exp(-tf.reduce_mean(tf.abs(image[:, 1:] - image[:, :-1]), axis=-1, keepdims=True))
    loss = tf.reduce_mean(grad_dx * weight_x) + tf.reduce_mean(grad_dy * weight_y)
    return loss, {}
