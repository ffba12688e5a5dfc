"""Box-flow consistency (Sec. 3.2.2): zero on predictions built from geometry, derived values on
known offsets, finite gradients."""

import numpy as np
import tensorflow as tf

from taskology_tf.consistency import box_flow
from taskology_tf.geometry import box_coder
from taskology_tf.geometry import pillars as pillars_lib

GRID = pillars_lib.PillarGrid(
    rows=8, cols=8, cell_size=1.0, x_min=-4.0, y_min=-4.0, max_pillars=4, max_points=2
)
ANCHORS = box_coder.AnchorConfig(size=(4.0, 2.0, 1.5), z=0.75)
FLOW = (2.3, -1.2, 0.1)  # metres, metres, radians: rounds to a (2, -1) cell shift


def _consistent():
  """Detector outputs of one box seen in 2 frames, and the uniform flow linking them."""
  anchors = box_coder.make_anchors(GRID, ANCHORS)  # [8, 8, 2, 7]
  box0 = tf.constant([0.4, 0.2, 0.8, 4.2, 1.9, 1.6, 0.2])
  box1 = box0 + tf.constant([FLOW[0], FLOW[1], 0, 0, 0, 0, FLOW[2]])
  # Every cell encodes the same box: r_k(c) = encode(box_k, anchor(c)). Then for c' = c + shift,
  # r_1(c') = r_0(c) + remainder / d_a in x, y (module docstring), sizes and z equal.
  r0 = box_coder.encode(tf.broadcast_to(box0, anchors.shape), anchors)
  r1 = box_coder.encode(tf.broadcast_to(box1, anchors.shape), anchors)
  rng = np.random.default_rng(0)
  l0 = rng.normal(size=(8, 8, 2)).astype(np.float32)
  l1 = np.zeros_like(l0)
  l1[2:, :7] = l0[:6, 1:]  # l_1(i + 2, j - 1) = l_0(i, j)
  det = {
      'logits': tf.stack([l0, l1], 2)[None],  # [1, 8, 8, 2 frames, 2 anchors]
      'residuals': tf.stack([r0, r1], 2)[None],
  }
  flow = {'flow': tf.broadcast_to(tf.constant(FLOW), [1, 8, 8, 1, 3])}
  return det, flow


def _relations():
  return (
      box_flow.BoxFlowClassConsistency(GRID, ANCHORS),
      box_flow.BoxFlowResidualConsistency(GRID, ANCHORS),
  )


def test_zero_on_consistent_predictions():
  det, flow = _consistent()
  for rel in _relations():
    loss, _ = rel({'detection3d': det, 'box_flow': flow}, {})
    np.testing.assert_allclose(loss.numpy(), 0.0, atol=1e-6)


def test_connected_cells_and_remainder():
  idx, valid, rem = box_flow.flow_correspondence(
      tf.broadcast_to(tf.constant(FLOW[:2]), [1, 8, 8, 2]), GRID
  )
  # Shift (2, -1): rows 0..5 and columns 1..7 land inside: 6 * 7 cells.
  assert valid.numpy().sum() == 42
  np.testing.assert_array_equal(idx.numpy()[0, 0, 1], [0, 2, 0])
  np.testing.assert_allclose(rem.numpy()[0, 0, 0], [0.3, -0.2], atol=1e-6)


def test_known_offsets():
  det, flow = _consistent()
  cls, res = _relations()
  # Every frame-1 logit + 0.5: (l_0 - l_1 - 0.5)^2 = 0.25 at each connected cell.
  shifted = dict(det, logits=det['logits'] + tf.constant([0.0, 0.5])[:, None])
  np.testing.assert_allclose(
      cls({'detection3d': shifted, 'box_flow': flow}, {})[0].numpy(), 0.25, rtol=1e-5
  )
  # Every frame-1 dz + 0.3: smooth-L1 with beta 1/9 gives 0.3 - 1/18 per (cell, anchor), and the
  # probability-weighted mean of a constant is that constant.
  delta = np.zeros((2, 7), np.float32)
  delta[1, 2] = 0.3
  moved = dict(det, residuals=det['residuals'] + delta[:, None])
  np.testing.assert_allclose(
      res({'detection3d': moved, 'box_flow': flow}, {})[0].numpy(), 0.3 - 1 / 18, rtol=1e-5
  )


def test_positive_with_finite_gradients():
  det, flow = _consistent()
  f = tf.Variable(flow['flow'] + 0.05)
  r = tf.Variable(det['residuals'] + 0.02)
  cls, res = _relations()
  with tf.GradientTape() as tape:
    preds = {'detection3d': dict(det, residuals=r), 'box_flow': {'flow': f}}
    loss = cls(preds, {})[0] + res(preds, {})[0]
  gf, gr = tape.gradient(loss, [f, r])
  assert loss.numpy() > 0
  for g in (gf, gr):
    assert np.isfinite(g.numpy()).all() and np.abs(g.numpy()).sum() > 0
