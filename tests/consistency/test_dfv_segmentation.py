"""Eq. 4 through the DfV depth and motion, and the segmenter's movable mask (Eq. 2's m).

The hand-built scene: f = 20 px, no rotation, no background translation; background at
10 m and a full-height object band of columns [c0, c1] = [4, 6] at 5 m in front of it, whose
residual translation is tx = 0.5 m right in frame t (so it moves f tx / z = 2 px, an integer,
which bilinear sampling reproduces exactly) and -0.5 m in the reverse order. Class logits
(C = 3): background [1 + b u, -5, -10] (a ramp in the column u, arg-max class 0), object
[0, 0, 10] (arg-max class 2, the movable class). Frame t+1 is frame t with the object moved
2 px right (columns [6, 8]).
"""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.consistency import dfv
from taskology_tf.consistency.dfv_segmentation import DfvSegmentationWarpConsistency

H, W, C = 4, 12, 3
C0, C1 = 4, 6  # object columns in frame t
B_RAMP = 0.5
DEPTH, OBJECT_DEPTH, F = 10.0, 5.0, 20.0
SHIFT_PX = 2
TX = SHIFT_PX * OBJECT_DEPTH / F  # 0.5 m


def _logits(c0, c1):
  u = np.arange(W, dtype=np.float32)
  background = np.stack([1.0 + B_RAMP * u, -5.0 * np.ones(W), -10.0 * np.ones(W)], -1)
  row = background.copy()
  row[c0 : c1 + 1] = [0.0, 0.0, 10.0]
  return np.broadcast_to(row[None], (H, W, C)).astype(np.float32)


def _scene():
  logits = np.stack([_logits(C0, C1), _logits(C0 + SHIFT_PX, C1 + SHIFT_PX)])[None]  # [1,2,H,W,C]
  depth = np.full((1, 2, H, W, 1), DEPTH, np.float32)
  depth[0, 0, :, C0 : C1 + 1] = OBJECT_DEPTH
  depth[0, 1, :, C0 + SHIFT_PX : C1 + SHIFT_PX + 1] = OBJECT_DEPTH
  field = np.zeros((1, 1, H, W, 3), np.float32)
  zeros3 = np.zeros((1, 1, 3), np.float32)
  motion = {
      'rotation': zeros3,
      'translation': zeros3,
      'residual_translation': field + np.array([TX, 0, 0], np.float32),
      'rotation_backward': zeros3,
      'translation_backward': zeros3,
      'residual_translation_backward': field + np.array([-TX, 0, 0], np.float32),
  }
  k = np.array([[[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1]]], np.float32)
  predictions = {'segmentation': {'logits': logits}, 'depth': {'depth': depth}, 'motion': motion}
  return predictions, {'intrinsics': k, 'image': np.zeros((1, 2, H, W, 3), np.float32)}


@pytest.mark.parametrize('compare', ['logits', 'probabilities'])
def test_zero_on_consistent_predictions_with_the_segmenters_mask(compare):
  # With the mask from the segmenter's arg-max (no dilation), only the object moves: every
  # compared pixel lands on the same class values, in both directions. The background the
  # object covers (frame t columns 7, 8 forward) or uncovers (frame t+1 columns 4, 5
  # backward) lands behind the object's 5 m and is not compared.
  predictions, batch = _scene()
  relation = DfvSegmentationWarpConsistency(
      compare=compare, movable_classes=(2,), foreground_dilation=0
  )
  loss, metrics = relation(predictions, batch)
  assert float(loss) == pytest.approx(0.0, abs=1e-6)
  # 10 of 12 columns compared in each direction (all land inside; 2 occluded).
  assert float(metrics['closer_fraction']) == pytest.approx((W - SHIFT_PX) / W)


def test_known_value_when_the_whole_frame_moves():
  # No mask: the residual field moves the background too, by f tx / 10 m = 1 px. Forward:
  # background column u lands on u + 1, whose class-0 logit differs by b (classes 1, 2 agree),
  # so e = b / C; excluded are u = 11 (leaves the image) and u = 7 (lands on the object at
  # 5 m, i.e. behind it); the 3 object columns land on the object (e = 0). That is 7 columns
  # with b / C out of 10 compared. Backward the same count (u = 0 leaves, u = 5 lands on the
  # object in frame t). loss = 7 / 10 * b / C = 0.7 * 0.5 / 3 = 0.11667.
  predictions, batch = _scene()
  relation = DfvSegmentationWarpConsistency(mask_from_segmentation=False)
  loss, metrics = relation(predictions, batch)
  expected = 7 / 10 * B_RAMP / C
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  assert float(metrics['forward_loss']) == pytest.approx(expected, rel=1e-5)
  assert float(metrics['backward_loss']) == pytest.approx(expected, rel=1e-5)
  assert float(metrics['closer_fraction']) == pytest.approx(10 / W)


def test_mask_gates_the_residual_field_where_the_argmax_is_movable_after_dilation():
  # One movable pixel at (row 3, column 5) of frame t, dilated by 2 px: the square rows 1..5
  # (clipped to 1..3), columns 3..7. The translation field is T + residual there and T
  # elsewhere.
  logits = np.zeros((1, 2, H, W, C), np.float32)
  logits[..., 0] = 1.0
  logits[0, 0, 3, 5, 2] = 5.0
  relation = DfvSegmentationWarpConsistency(movable_classes=(2,), foreground_dilation=2)
  masks = relation._masks(tf.constant(logits), {}).numpy()
  expected = np.zeros((H, W), np.float32)
  expected[1:4, 3:8] = 1.0
  np.testing.assert_array_equal(masks[0, 0, ..., 0], expected)
  np.testing.assert_array_equal(masks[0, 1, ..., 0], np.zeros((H, W)))  # no movable pixel
  translation = tf.constant([[0.1, 0.2, 0.3]])
  residual = tf.ones((1, H, W, 3))
  field = dfv.translation_field(translation, residual, tf.constant(masks[:, 0])).numpy()
  np.testing.assert_allclose(
      field[0], np.array([0.1, 0.2, 0.3]) + expected[..., None] * np.ones(3), rtol=1e-6
  )


def test_label_mask_is_requested_from_the_mediator_data():
  predictions, batch = _scene()
  labels = np.argmax(predictions['segmentation']['logits'], -1).astype(np.int32)
  relation = DfvSegmentationWarpConsistency(
      mask_from_segmentation=False,
      label_key='semantics',
      movable_classes=(2,),
      foreground_dilation=0,
  )
  assert relation.mediator_label_keys == ('semantics',)
  assert relation.mask_source == 'labels:semantics'
  loss, _ = relation(predictions, {**batch, 'semantics': labels})
  assert float(loss) == pytest.approx(0.0, abs=1e-6)
  with pytest.raises(KeyError, match='semantics'):
    relation(predictions, batch)


def test_gradients_reach_segmentation_depth_and_motion():
  predictions, batch = _scene()
  logits = tf.Variable(predictions['segmentation']['logits'] + 0.1)
  depth = tf.Variable(
      predictions['depth']['depth'] * np.linspace(0.8, 1.2, W, dtype=np.float32)[:, None]
  )
  residual = tf.Variable(predictions['motion']['residual_translation'] * 0.7)
  relation = DfvSegmentationWarpConsistency(mask_from_segmentation=False)
  with tf.GradientTape() as tape:
    motion = dict(predictions['motion'], residual_translation=residual)
    preds = {'segmentation': {'logits': logits}, 'depth': {'depth': depth}, 'motion': motion}
    loss, _ = relation(preds, batch)
  grads = tape.gradient(loss, [logits, depth, residual])
  assert float(loss) > 0
  for g in grads:
    assert g is not None and np.isfinite(g.numpy()).all() and np.abs(g.numpy()).sum() > 0


def test_bad_arguments_name_the_argument():
  with pytest.raises(ValueError, match='compare'):
    DfvSegmentationWarpConsistency(compare='softmax', movable_classes=(2,))
  with pytest.raises(ValueError, match='movable_classes'):
    DfvSegmentationWarpConsistency()
  with pytest.raises(ValueError, match='label_key'):
    DfvSegmentationWarpConsistency(label_key='semantics', movable_classes=(2,))
