"""Detection / box-flow consistency over time (Taskology Sec. 3.2.2).

The detector predicts, for every BEV cell (i, j), anchor a and frame k (0 = current, k = k steps
earlier, all in the current vehicle frame), a class logit l_k(i, j, a) and residuals
r_k(i, j, a) = (dx, dy, dz, dl, dw, dh, dtheta) (geometry/box_coder.py). The box-flow model
predicts, per cell, the motion f_k(i, j) = (f_x, f_y, f_theta) (metres, radians) of the object at
(i, j) in frame 0 to frame k. The object seen at cell (i, j) in frame 0 is at cell

  (i', j') = (i, j) + round(f_x / s, f_y / s)          (s = cell size)

in frame k, so with the same anchor a:

  L_class    = mean over flow-connected cells of (l_0(i, j, a) - l_k(i', j', a))^2,
  L_residual = the residuals agree once the cell change is accounted for. The box centre moves
               by f, of which (i' - i, j' - j) cells are absorbed by moving to the new cell; the
               remainder (f_x - (i' - i) s, f_y - (j' - j) s) must appear in the residuals:
                 dx_k(i', j') = dx_0(i, j) + (f_x - (i' - i) s) / d_a,
                 dy_k(i', j') = dy_0(i, j) + (f_y - (j' - j) s) / d_a,
                 dtheta_k(i', j') = dtheta_0(i, j) + f_theta   (compared as sin of the difference),
               and dz, dl, dw, dh equal (rigid objects keep their size; ground vehicles keep z).

A cell is flow-connected when (i', j') lies inside the grid. L_residual is weighted per cell and
anchor by the detector's frame-0 vehicle probability (held constant), because residuals at
background cells are unconstrained by training and carry no box to be consistent about; L_class
is unweighted (agreeing that background stays background is a real constraint). Each residual
error is smooth-L1 (beta 1/9), the detector's regression loss.
"""

from typing import Tuple

import tensorflow as tf

from taskology_tf.consistency import base
from taskology_tf.geometry import box_coder
from taskology_tf.geometry import pillars as pillars_lib


def _smooth_l1(x, beta):
  a = tf.abs(x)
  return tf.where(a < beta, 0.5 * x * x / beta, a - 0.5 * beta)


def flow_correspondence(flow: tf.Tensor, grid: pillars_lib.PillarGrid):
  """Target cells of a flow field.

  Args:
    flow: [B, R, C, 2] float32 (f_x, f_y), metres, current vehicle frame.
    grid: the BEV grid.

  Returns:
    indices [B, R, C, 3] int32 (b, i', j') clipped into the grid, valid [B, R, C] float32 (1 if
    (i', j') lies inside), and the remainder [B, R, C, 2] float32 metres, f - (i' - i, j' - j) s.
  """
  shift = tf.cast(tf.round(flow / grid.cell_size), tf.int32)
  shape = tf.shape(flow)
  ii = tf.range(grid.rows)[None, :, None] + shift[..., 0]
  jj = tf.range(grid.cols)[None, None, :] + shift[..., 1]
  valid = (ii >= 0) & (ii < grid.rows) & (jj >= 0) & (jj < grid.cols)
  bb = tf.broadcast_to(tf.range(shape[0])[:, None, None], tf.shape(ii))
  idx = tf.stack(
      [bb, tf.clip_by_value(ii, 0, grid.rows - 1), tf.clip_by_value(jj, 0, grid.cols - 1)], -1
  )
  remainder = flow - tf.cast(shift, tf.float32) * grid.cell_size
  return idx, tf.cast(valid, tf.float32), remainder


class _BoxFlowRelation(base.Relation):

  def __init__(
      self,
      grid: pillars_lib.PillarGrid,
      anchors: box_coder.AnchorConfig,
      detection_task: str,
      flow_task: str,
      name: str,
  ):
    self.grid = grid
    self.anchor_config = anchors
    self.tasks = (detection_task, flow_task)
    self.name = name

  def _pairs(self, predictions):
    """Yields (k, idx, valid, remainder, flow_k) for every earlier frame k."""
    det, flow = predictions[self.tasks[0]], predictions[self.tasks[1]]['flow']
    num_frames = det['logits'].shape[3]
    if flow.shape[3] is not None and num_frames is not None and flow.shape[3] != num_frames - 1:
      raise ValueError(
          f'relation {self.name!r}: flow {self.tasks[1]!r} has {flow.shape[3]} earlier frames, '
          f'detector {self.tasks[0]!r} predicts {num_frames} frames (need n_f - 1)'
      )
    for k in range(1, num_frames):
      f = flow[:, :, :, k - 1]
      idx, valid, remainder = flow_correspondence(f[..., :2], self.grid)
      yield k, idx, valid, remainder, f


class BoxFlowClassConsistency(_BoxFlowRelation):
  """L_class (module docstring).

  Args:
    grid: the BEV grid (the detector's).
    anchors: the detector's anchors.
    detection_task: name of the detection task.
    flow_task: name of the box-flow task.
    name: relation name.
  """

  def __init__(
      self,
      grid: pillars_lib.PillarGrid = pillars_lib.PillarGrid(),
      anchors: box_coder.AnchorConfig = box_coder.AnchorConfig(),
      detection_task: str = 'detection3d',
      flow_task: str = 'box_flow',
      name: str = 'box_flow_class',
  ):
    super().__init__(grid, anchors, detection_task, flow_task, name)

  def __call__(self, predictions, batch) -> Tuple[tf.Tensor, base.Metrics]:
    del batch  # Everything lives in the predictions (frames share the current vehicle frame).
    logits = predictions[self.tasks[0]]['logits']  # [B, R, C, F, A]
    total, count = 0.0, 0.0
    for k, idx, valid, _, _ in self._pairs(predictions):
      moved = tf.gather_nd(logits[:, :, :, k], idx)  # [B, R, C, A]
      err = tf.square(logits[:, :, :, 0] - moved) * valid[..., tf.newaxis]
      total += tf.reduce_sum(err)
      count += tf.reduce_sum(valid) * tf.cast(tf.shape(logits)[-1], tf.float32)
    loss = total / tf.maximum(count, 1.0)
    fraction = count / tf.cast(tf.size(logits[:, :, :, 1:]), tf.float32)
    return loss, {'connected_fraction': fraction}


class BoxFlowResidualConsistency(_BoxFlowRelation):
  """L_residual (module docstring).

  Args:
    grid: the BEV grid (the detector's).
    anchors: the detector's anchors.
    detection_task: name of the detection task.
    flow_task: name of the box-flow task.
    name: relation name.
  """

  def __init__(
      self,
      grid: pillars_lib.PillarGrid = pillars_lib.PillarGrid(),
      anchors: box_coder.AnchorConfig = box_coder.AnchorConfig(),
      detection_task: str = 'detection3d',
      flow_task: str = 'box_flow',
      name: str = 'box_flow_residual',
  ):
    super().__init__(grid, anchors, detection_task, flow_task, name)

  def __call__(self, predictions, batch) -> Tuple[tf.Tensor, base.Metrics]:
    del batch
    det = predictions[self.tasks[0]]
    logits, residuals = det['logits'], det['residuals']  # [B,R,C,F,A], [B,R,C,F,A,7]
    size = self.anchor_config.size
    diag = (size[0] ** 2 + size[1] ** 2) ** 0.5
    # Frame 0's vehicle probability: which (cell, anchor) holds a box (a constant weight).
    weight0 = tf.stop_gradient(tf.sigmoid(logits[:, :, :, 0]))  # [B, R, C, A]
    r0 = residuals[:, :, :, 0]
    total, norm = 0.0, 0.0
    for k, idx, valid, remainder, f in self._pairs(predictions):
      rk = tf.gather_nd(residuals[:, :, :, k], idx)  # [B, R, C, A, 7]
      expected_xy = r0[..., :2] + remainder[:, :, :, tf.newaxis, :] / diag
      err_xy = _smooth_l1(rk[..., :2] - expected_xy, 1.0 / 9.0)
      err_size = _smooth_l1(rk[..., 2:6] - r0[..., 2:6], 1.0 / 9.0)
      err_theta = _smooth_l1(tf.sin(rk[..., 6] - r0[..., 6] - f[:, :, :, tf.newaxis, 2]), 1.0 / 9.0)
      err = tf.reduce_sum(err_xy, -1) + tf.reduce_sum(err_size, -1) + err_theta
      w = weight0 * valid[..., tf.newaxis]
      total += tf.reduce_sum(err * w)
      norm += tf.reduce_sum(w)
    loss = total / tf.maximum(norm, 1e-6)
    return loss, {'weight_sum': norm}
