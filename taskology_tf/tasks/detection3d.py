"""3D vehicle detection (PointPillars over n_f frames) and box flow: two tasks (Sec. 3.2.2).

Both read the pillar tensors of an n_f-frame sequence, all in the current frame's vehicle
coordinates (frame 0 = current, frame k = k * 0.5 s earlier at full scale), and run on separate
trainers in distributed mode. Wire inputs (serving signature, per example):

  'pillars' [n_f, P, N, 9] float32, 'point_mask' [n_f, P, N] float32,
  'pillar_indices' [n_f, P, 2] int32, 'pillar_mask' [n_f, P] float32.

A labelled (dedicated) batch adds, per example (inputs/point_clouds.py builds them):

  'gt_boxes' [n_f, K, 7] float32 (x, y, z, l, w, h, heading), current vehicle frame,
  'gt_valid' [n_f, K] bool, 'gt_track_ids' [n_f, K] int32,
  'gt_num_points' [n_f, K] int32 lidar points in each box (difficulty levels),
  'anchor_match' [n_f, rows, cols, n_a] int32: matched box index, -1 negative, -2 ignored.

Outputs are per example, with no clip axis: the sequence is the example. `unflatten` therefore
returns them unchanged; relations get 'logits' [B, rows, cols, n_f, n_a], 'residuals'
[B, rows, cols, n_f, n_a, 7] and 'flow' [B, rows, cols, n_f - 1, 3].
"""

import functools
from typing import Sequence

import numpy as np
from official.vision.losses import focal_loss as focal_loss_lib
import tensorflow as tf
import tf_keras as keras

from taskology_tf.geometry import box_coder
from taskology_tf.geometry import boxes as boxes_lib
from taskology_tf.geometry import pillars as pillars_lib
from taskology_tf.networks import pointpillars
from taskology_tf.tasks import base

PILLAR_KEYS = ('pillars', 'point_mask', 'pillar_indices', 'pillar_mask')


def smooth_l1(x: tf.Tensor, beta: float) -> tf.Tensor:
  """Huber / smooth-L1 of x elementwise: 0.5 x^2 / beta if |x| < beta else |x| - 0.5 beta."""
  a = tf.abs(x)
  return tf.where(a < beta, 0.5 * x * x / beta, a - 0.5 * beta)


def gather_matched(gt: tf.Tensor, match: tf.Tensor) -> tf.Tensor:
  """Per-anchor ground truth: gt [B, F, K, D], match [B, F, R, C, A] -> [B, F, R, C, A, D]."""
  shape = tf.shape(match)
  flat = tf.reshape(tf.maximum(match, 0), [shape[0], shape[1], -1])
  out = tf.gather(gt, flat, batch_dims=2)
  return tf.reshape(out, tf.concat([shape, tf.shape(gt)[-1:]], 0))


class _PillarTask(base.Task):
  """Shared plumbing of the two point-cloud tasks."""

  def __init__(
      self,
      name: str,
      grid: pillars_lib.PillarGrid,
      num_frames: int,
      pillar_channels: int,
      block_filters: Sequence[int],
      block_layers: Sequence[int],
      block_strides: Sequence[int],
      upsample_filters: Sequence[int],
  ):
    self.name = name
    self.grid = grid
    self.num_frames = num_frames
    self.network_args = dict(
        pillar_channels=pillar_channels,
        block_filters=tuple(block_filters),
        block_layers=tuple(block_layers),
        block_strides=tuple(block_strides),
        upsample_filters=tuple(upsample_filters),
    )

  @property
  def input_spec(self):
    f, p, n = self.num_frames, self.grid.max_pillars, self.grid.max_points
    return {
        'pillars': tf.TensorSpec([f, p, n, pillars_lib.NUM_POINT_FEATURES], tf.float32),
        'point_mask': tf.TensorSpec([f, p, n], tf.float32),
        'pillar_indices': tf.TensorSpec([f, p, 2], tf.int32),
        'pillar_mask': tf.TensorSpec([f, p], tf.float32),
    }

  def _check_inputs(self, inputs):
    for key, spec in self.input_spec.items():
      if key not in inputs:
        raise ValueError(f'task {self.name!r}: input tensor {key!r} is missing')
      shape = inputs[key].shape
      if shape.rank is not None and not spec.shape.is_compatible_with(shape[1:]):
        raise ValueError(
            f'task {self.name!r}: input tensor {key!r} must be [N] + {spec.shape.as_list()}, '
            f'got {shape}'
        )

  def call(self, model, inputs, training=False):
    self._check_inputs(inputs)
    return model({k: inputs[k] for k in PILLAR_KEYS}, training=training)

  def serving_inputs(self, mediator):
    return {k: mediator[k] for k in PILLAR_KEYS}

  def dedicated_inputs(self, batch):
    return {k: batch[k] for k in PILLAR_KEYS}

  def unflatten(self, outputs, batch_size, num_frames):
    del batch_size, num_frames  # One example is one sequence: nothing to restore.
    return dict(outputs)


class Detection3DTask(_PillarTask):
  """PointPillars vehicle detection on n_f frames.

  Loss (PointPillars Sec. 2.3): focal loss on the class logits (alpha 0.25, gamma 2) over
  positive and negative anchors, plus beta_loc * smooth-L1 (beta 1/9, i.e. sigma 3) on the 7
  residuals of positive anchors with the sin-difference heading term (SECOND Eq. 3:
  sin(theta_p - theta_t), so a box and its reversal regress alike), both normalised by the
  number of positive anchors. beta_cls = 1, beta_loc = 2 as published. The sin-difference
  cannot tell a box from its reversal, so PointPillars adds a softmax direction classifier over
  2 heading bins (beta_dir = 0.2, over positive anchors, normalised like the others); the bins
  split the heading at `direction_offset` (pi / 4, as mmdetection3d's PointPillars, so neither
  anchor heading sits on a bin boundary): bin = floor(((theta - offset) mod 2 pi) / pi). Decoding
  keeps the regressed heading modulo pi and takes the half-turn from the classifier. Without it
  (`direction_weight = 0`, Taskology's description of the head: 7 residuals and a class logit)
  about half the headings come out reversed, which APH counts as misses.

  Args:
    grid: BEV grid and pillar caps.
    anchors: anchor sizes, headings and matching thresholds.
    num_frames: n_f.
    name: task name.
    pillar_channels, block_filters, block_layers, block_strides, upsample_filters: network.
    localization_weight: beta_loc.
    direction_weight: beta_dir of the direction classifier (0: no classifier, no 'direction').
    direction_offset: heading (radians) where the two direction bins split.
    focal_alpha, focal_gamma: focal-loss parameters.
    score_threshold, nms_iou_threshold, max_detections, pre_nms_top_k: decoding for metrics.
  """

  def __init__(
      self,
      grid: pillars_lib.PillarGrid = pillars_lib.PillarGrid(),
      anchors: box_coder.AnchorConfig = box_coder.AnchorConfig(),
      num_frames: int = 3,
      name: str = 'detection3d',
      pillar_channels: int = 64,
      block_filters: Sequence[int] = (64, 128, 256),
      block_layers: Sequence[int] = (4, 6, 6),
      block_strides: Sequence[int] = (1, 2, 2),
      upsample_filters: Sequence[int] = (128, 128, 128),
      localization_weight: float = 2.0,
      direction_weight: float = 0.2,
      direction_offset: float = float(np.pi / 4),
      focal_alpha: float = 0.25,
      focal_gamma: float = 2.0,
      score_threshold: float = 0.05,
      nms_iou_threshold: float = 0.5,
      max_detections: int = 100,
      pre_nms_top_k: int = 1000,
  ):
    super().__init__(
        name,
        grid,
        num_frames,
        pillar_channels,
        block_filters,
        block_layers,
        block_strides,
        upsample_filters,
    )
    self.anchor_config = anchors
    self.localization_weight = localization_weight
    if direction_weight < 0:
      raise ValueError(f'Detection3DTask.direction_weight must be >= 0, got {direction_weight}')
    self.direction_weight = direction_weight
    self.direction_offset = direction_offset
    self.focal = focal_loss_lib.FocalLoss(
        alpha=focal_alpha, gamma=focal_gamma, reduction=keras.losses.Reduction.NONE
    )
    self.score_threshold = score_threshold
    self.nms_iou_threshold = nms_iou_threshold
    self.max_detections = max_detections
    self.pre_nms_top_k = pre_nms_top_k

  @property
  def anchors(self) -> tf.Tensor:
    """[rows, cols, n_a, 7] float32 anchors, vehicle frame."""
    return box_coder.make_anchors(self.grid, self.anchor_config)

  @property
  def output_spec(self):
    g, f, a = self.grid, self.num_frames, self.anchor_config.num_anchors
    return {
        'logits': tf.TensorSpec([g.rows, g.cols, f, a], tf.float32),
        'residuals': tf.TensorSpec([g.rows, g.cols, f, a, 7], tf.float32),
        **(
            {'direction': tf.TensorSpec([g.rows, g.cols, f, a, 2], tf.float32)}
            if self.direction_weight
            else {}
        ),
    }

  def build_network(self):
    return pointpillars.build_detector(
        self.grid,
        self.num_frames,
        self.anchor_config.num_anchors,
        **self.network_args,
        direction_bins=2 if self.direction_weight else 0,
    )

  def direction_bin(self, heading: tf.Tensor) -> tf.Tensor:
    """0 or 1: floor(((heading - offset) mod 2 pi) / pi)."""
    turns = tf.math.floormod(heading - self.direction_offset, 2 * np.pi) / np.pi
    return tf.clip_by_value(tf.cast(tf.floor(turns), tf.int32), 0, 1)

  def supervised_loss(self, batch, outputs):
    # Outputs are [B, R, C, F, A(, 7)]; labels are frame-major [B, F, R, C, A]: move frames.
    logits = tf.transpose(outputs['logits'], [0, 3, 1, 2, 4])
    residuals = tf.transpose(outputs['residuals'], [0, 3, 1, 2, 4, 5])
    match = batch['anchor_match']
    positive = tf.cast(match >= 0, tf.float32)
    care = tf.cast(match != -2, tf.float32)
    num_pos = tf.maximum(tf.reduce_sum(positive), 1.0)
    # The elementwise focal loss (FocalLoss.call skips Keras' reductions).
    cls = self.focal.call(positive, logits)
    cls_loss = tf.reduce_sum(cls * care) / num_pos
    gt = gather_matched(batch['gt_boxes'], match)
    target = box_coder.encode(gt, self.anchors[tf.newaxis, tf.newaxis])
    target = tf.where(positive[..., tf.newaxis] > 0, target, tf.zeros_like(target))
    # SECOND's sin-difference: sin(p) cos(t) - cos(p) sin(t) = sin(p - t).
    pred_h, tgt_h = residuals[..., 6], target[..., 6]
    pred = tf.concat([residuals[..., :6], (tf.sin(pred_h) * tf.cos(tgt_h))[..., None]], -1)
    tgt = tf.concat([target[..., :6], (tf.cos(pred_h) * tf.sin(tgt_h))[..., None]], -1)
    loc = tf.reduce_sum(smooth_l1(pred - tgt, 1.0 / 9.0), -1)
    loc_loss = tf.reduce_sum(loc * positive) / num_pos
    loss = cls_loss + self.localization_weight * loc_loss
    metrics = {}
    if self.direction_weight:
      direction = tf.transpose(outputs['direction'], [0, 3, 1, 2, 4, 5])
      ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=self.direction_bin(gt[..., 6]), logits=direction
      )
      dir_loss = tf.reduce_sum(ce * positive) / num_pos
      loss += self.direction_weight * dir_loss
      metrics['direction_loss'] = dir_loss
    return loss, {
        **metrics,
        'class_loss': cls_loss,
        'localization_loss': loc_loss,
        'num_positive_anchors': tf.reduce_sum(positive) / tf.cast(tf.shape(match)[0], tf.float32),
    }

  def decode_frame(self, outputs, frame: int = 0):
    """Scored boxes of one frame for every anchor: ([B, R*C*A, 7] boxes, [B, R*C*A] scores)."""
    logits = outputs['logits'][:, :, :, frame]
    residuals = outputs['residuals'][:, :, :, frame]
    boxes = box_coder.decode(residuals, self.anchors[tf.newaxis])
    if 'direction' in outputs:
      # The regressed heading modulo pi, the half-turn from the classifier.
      half = tf.cast(tf.argmax(outputs['direction'][:, :, :, frame], -1), tf.float32)
      base = tf.math.floormod(boxes[..., 6] - self.direction_offset, np.pi)
      heading = boxes_lib.wrap_angle(base + self.direction_offset + np.pi * half)
      boxes = tf.concat([boxes[..., :6], heading[..., tf.newaxis]], -1)
    b = tf.shape(logits)[0]
    return tf.reshape(boxes, [b, -1, 7]), tf.reshape(tf.sigmoid(logits), [b, -1])

  def detect(self, outputs, frame: int = 0, sparse: bool = True):
    """Rotated-NMS detections of one frame (for evaluation: the sparse IoU does not compile
    under XLA; `sparse=False` gives the same detections with static shapes).

    Returns:
      boxes [B, D, 7] float32, scores [B, D] float32 and valid [B, D] bool, D = max_detections.
    """
    boxes, scores = self.decode_frame(outputs, frame)

    def one(args):
      bx, sc = args
      idx, valid = boxes_lib.rotated_nms(
          bx,
          sc,
          self.nms_iou_threshold,
          self.max_detections,
          min(self.pre_nms_top_k, int(bx.shape[0])),
          self.score_threshold,
          sparse=sparse,
      )
      safe = tf.maximum(idx, 0)
      return tf.gather(bx, safe), tf.where(valid, tf.gather(sc, safe), 0.0), valid

    return tf.map_fn(
        one,
        (boxes, scores),
        fn_output_signature=(tf.float32, tf.float32, tf.bool),
    )

  @functools.cached_property
  def evaluation_detect(self):
    """`detect(outputs, frame=0)` as one tf.function for the task's lifetime.

    The trainer makes a new evaluator every evaluation pass (`new_metrics`); they all call this
    one function, so its graph is traced once per input signature (batch size, grid) rather
    than once per pass. One graph, not op by op: NMS's loop runs ~1000 steps a frame.
    """
    return tf.function(lambda outputs: self.detect(outputs, frame=0))

  def new_metrics(self):
    from taskology_tf.metrics import detection3d as metrics_lib  # pylint: disable=g-import-not-at-top

    return metrics_lib.DetectionEvaluator(self)

  def image_summaries(self, outputs):
    # The trainer slices outputs[:, 0] as the first frame of a clip; ours have no clip axis
    # (axis 1 is the grid's rows), so there is nothing meaningful to show from that slice.
    del outputs
    return {}


class BoxFlowTask(_PillarTask):
  """Box flow: per cell, (flow_x, flow_y, flow_theta) to each of the n_f - 1 earlier frames.

  Supervised only at cells holding a positive anchor in frame 0 whose object (track id) is also
  labelled in frame k: target = (x_k - x_0, y_k - y_0, wrap(theta_k - theta_0)) of that object's
  boxes, in the current vehicle frame. Loss: smooth-L1 (beta 1/9) summed over the 3 components,
  averaged over supervised (cell, frame) pairs.

  Args:
    grid: BEV grid and pillar caps (the detector's).
    num_frames: n_f.
    name: task name.
    pillar_channels, block_filters, block_layers, block_strides, upsample_filters: network.
  """

  def __init__(
      self,
      grid: pillars_lib.PillarGrid = pillars_lib.PillarGrid(),
      num_frames: int = 3,
      name: str = 'box_flow',
      pillar_channels: int = 64,
      block_filters: Sequence[int] = (64, 128, 256),
      block_layers: Sequence[int] = (4, 6, 6),
      block_strides: Sequence[int] = (1, 2, 2),
      upsample_filters: Sequence[int] = (128, 128, 128),
  ):
    super().__init__(
        name,
        grid,
        num_frames,
        pillar_channels,
        block_filters,
        block_layers,
        block_strides,
        upsample_filters,
    )

  @property
  def output_spec(self):
    g = self.grid
    return {'flow': tf.TensorSpec([g.rows, g.cols, self.num_frames - 1, 3], tf.float32)}

  def build_network(self):
    return pointpillars.build_box_flow(self.grid, self.num_frames, **self.network_args)

  def flow_targets(self, batch):
    """(targets [B, R, C, n_f - 1, 3], mask [B, R, C, n_f - 1]) from the labels (class doc)."""
    match0 = batch['anchor_match'][:, 0]  # [B, R, C, A]
    # A cell's object: its first positive anchor's box (anchors of one cell rarely disagree).
    positive = match0 >= 0
    first = tf.argmax(tf.cast(positive, tf.int32), axis=-1, output_type=tf.int32)
    box_index = tf.gather(match0, first[..., tf.newaxis], batch_dims=3)[..., 0]  # [B, R, C]
    cell_pos = tf.reduce_any(positive, -1)
    boxes, valid, tracks = batch['gt_boxes'], batch['gt_valid'], batch['gt_track_ids']
    shape = tf.shape(box_index)
    flat = tf.reshape(tf.maximum(box_index, 0), [shape[0], -1])  # [B, RC]
    box0 = tf.gather(boxes[:, 0], flat, batch_dims=1)  # [B, RC, 7]
    track0 = tf.gather(tracks[:, 0], flat, batch_dims=1)  # [B, RC]
    targets, masks = [], []
    for k in range(1, self.num_frames):
      same = (tracks[:, k][:, None, :] == track0[:, :, None]) & valid[:, k][:, None, :]
      found = tf.reduce_any(same, -1)  # [B, RC]
      idx = tf.argmax(tf.cast(same, tf.int32), -1, output_type=tf.int32)
      boxk = tf.gather(boxes[:, k], idx, batch_dims=1)
      t = tf.stack(
          [
              boxk[..., 0] - box0[..., 0],
              boxk[..., 1] - box0[..., 1],
              boxes_lib.wrap_angle(boxk[..., 6] - box0[..., 6]),
          ],
          -1,
      )
      targets.append(tf.reshape(t, tf.concat([shape, [3]], 0)))
      masks.append(tf.reshape(found, shape) & cell_pos)
    return tf.stack(targets, 3), tf.cast(tf.stack(masks, 3), tf.float32)

  def supervised_loss(self, batch, outputs):
    targets, mask = self.flow_targets(batch)
    err = tf.reduce_sum(smooth_l1(outputs['flow'] - targets, 1.0 / 9.0), -1)
    count = tf.reduce_sum(mask)
    loss = tf.reduce_sum(err * mask) / tf.maximum(count, 1.0)
    abs_err = tf.reduce_sum(tf.norm(outputs['flow'][..., :2] - targets[..., :2], axis=-1) * mask)
    return loss, {
        'flow_end_point_error': abs_err / tf.maximum(count, 1.0),
        'supervised_cells': count / tf.cast(tf.shape(mask)[0], tf.float32),
    }

  def new_metrics(self):
    return FlowEvaluator(self)


class FlowEvaluator:
  """Mean end-point error (metres) of the flow at supervised cells, over an evaluation pass."""

  def __init__(self, task: BoxFlowTask):
    self.task = task
    self.sum, self.count = 0.0, 0.0

  def update(self, batch, outputs):
    targets, mask = self.task.flow_targets(batch)
    epe = tf.norm(outputs['flow'][..., :2] - targets[..., :2], axis=-1)
    self.sum += float(tf.reduce_sum(epe * mask))
    self.count += float(tf.reduce_sum(mask))

  def result(self):
    return {'flow_epe': np.float32(self.sum / max(self.count, 1.0))}
