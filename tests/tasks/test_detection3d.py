"""Detection3D and BoxFlow tasks: network contract, hand-derived loss values, flow targets."""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.geometry import box_coder
from taskology_tf.geometry import pillars as pillars_lib
from taskology_tf.inputs import point_clouds
from taskology_tf.tasks import detection3d

GRID = pillars_lib.PillarGrid(
    rows=8,
    cols=8,
    cell_size=3.0,
    x_min=-12.0,
    y_min=-12.0,
    z_min=-1.0,
    z_max=4.0,
    max_pillars=32,
    max_points=4,
)
ANCHORS = box_coder.AnchorConfig(size=(4.3, 1.85, 1.55), z=0.78)
NET = dict(
    pillar_channels=4, block_filters=(4, 4, 4), block_layers=(1, 1, 1), upsample_filters=(4, 4, 4)
)


@pytest.fixture(scope='module')
def batch():
  pipeline = point_clouds.PointCloudPipeline(GRID, ANCHORS)
  seqs = [point_clouds.synthetic_sequence(s) for s in (3, 4)]
  examples = [pipeline.labelled({k: tf.constant(v) for k, v in s.items()}) for s in seqs]
  return {k: tf.stack([e[k] for e in examples]) for k in examples[0]}


def test_networks_match_spec_eager_and_graph(batch):
  for task in (
      detection3d.Detection3DTask(GRID, ANCHORS, **NET),
      detection3d.BoxFlowTask(GRID, **NET),
  ):
    model = task.build_network()
    inputs = task.dedicated_inputs(batch)
    eager = task.call(model, inputs)
    graph = tf.function(lambda x, t=task, m=model: t.call(m, x))(inputs)
    for k, spec in task.output_spec.items():
      assert eager[k].shape[1:] == spec.shape, k
      np.testing.assert_allclose(eager[k].numpy(), graph[k].numpy(), atol=1e-5)
    loss, _ = task.supervised_loss(batch, eager)
    assert np.isfinite(loss.numpy())
    serve = task.serving_function(model)
    out = serve(*[inputs[k] for k in task.input_spec])
    np.testing.assert_allclose(
        out[next(iter(task.output_spec))].numpy(),
        eager[next(iter(task.output_spec))].numpy(),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match='pillar_mask'):
      task.call(model, {k: v for k, v in inputs.items() if k != 'pillar_mask'})


def test_detection_loss_hand_derived(batch):
  task = detection3d.Detection3DTask(GRID, ANCHORS, **NET)
  match = batch['anchor_match'].numpy()
  n_pos, n_neg = (match >= 0).sum(), (match == -1).sum()
  assert n_pos > 0
  # Logits 0 (p = 1/2, cross-entropy log 2, modulator (1/2)^2): a positive costs
  # 0.25 * 0.25 log 2, a negative 0.75 * 0.25 log 2; normalised by the positives.
  anchors = task.anchors.numpy()
  gt = detection3d.gather_matched(batch['gt_boxes'], batch['anchor_match'])
  target = box_coder.encode(gt, anchors[None, None])  # [B, F, R, C, A, 7]
  outputs = {
      'logits': tf.zeros([2, 8, 8, 3, 2]),
      'residuals': tf.transpose(tf.where(match[..., None] >= 0, target, 0.0), [0, 2, 3, 1, 4, 5]),
      'direction': tf.zeros([2, 8, 8, 3, 2, 2]),
  }
  loss, m = task.supervised_loss(batch, outputs)
  want = (n_pos * 0.0625 + n_neg * 0.1875) * np.log(2) / n_pos
  np.testing.assert_allclose(m['class_loss'].numpy(), want, rtol=1e-5)
  np.testing.assert_allclose(m['localization_loss'].numpy(), 0.0, atol=1e-6)
  # Direction logits 0: softmax (1/2, 1/2), cross-entropy log 2 at each positive, over n_pos.
  np.testing.assert_allclose(m['direction_loss'].numpy(), np.log(2), rtol=1e-5)
  np.testing.assert_allclose(loss.numpy(), want + 0.2 * np.log(2), rtol=1e-5)
  # A heading off by pi regresses like the right one (sin-difference): still 0.
  flipped = outputs['residuals'] + tf.constant([0, 0, 0, 0, 0, 0, np.pi], tf.float32)
  _, m = task.supervised_loss(batch, dict(outputs, residuals=flipped))
  np.testing.assert_allclose(m['localization_loss'].numpy(), 0.0, atol=1e-5)
  # decode(encode(box)) is the box.
  np.testing.assert_allclose(
      box_coder.decode(target, anchors[None, None]).numpy()[match >= 0][:, :6],
      gt.numpy()[match >= 0][:, :6],
      atol=1e-4,
  )


def test_flow_targets_follow_tracks(batch):
  task = detection3d.BoxFlowTask(GRID, **NET)
  targets, mask = task.flow_targets(batch)
  assert mask.numpy().sum() > 0
  # At a supervised cell of frame 0, target = centre of the same track at frame k - centre now.
  b, i, j, k = np.argwhere(mask.numpy() > 0)[0]
  box_idx = batch['anchor_match'].numpy()[b, 0, i, j]
  box_idx = box_idx[box_idx >= 0][0]
  track = batch['gt_track_ids'].numpy()[b, 0, box_idx]
  kk = np.flatnonzero(batch['gt_track_ids'].numpy()[b, k + 1] == track)[0]
  want = batch['gt_boxes'].numpy()[b, k + 1, kk, :2] - batch['gt_boxes'].numpy()[b, 0, box_idx, :2]
  np.testing.assert_allclose(targets.numpy()[b, i, j, k, :2], want, atol=1e-5)
  loss, _ = task.supervised_loss(batch, {'flow': targets})
  np.testing.assert_allclose(loss.numpy(), 0.0, atol=1e-6)


def test_direction_classifier_resolves_reversed_headings():
  task = detection3d.Detection3DTask(GRID, ANCHORS, **NET)
  # Bins split at pi/4: headings in [pi/4, 5 pi/4) are bin 0, the rest bin 1.
  headings = tf.constant([0.0, np.pi / 4, np.pi / 2, np.pi, -np.pi / 2, -3.0])
  np.testing.assert_array_equal(task.direction_bin(headings).numpy(), [1, 0, 0, 0, 1, 0])
  # Residuals whose heading is the truth + pi (the sin-difference cannot tell them apart), and
  # direction logits that pick each truth's bin: decoding gives back the true headings.
  anchors = task.anchors.numpy()  # [8, 8, 2, 7]
  true = np.array([0.3, -2.8, 1.9, -1.2], np.float32)
  cells = ((1, 1, 0), (2, 5, 0), (4, 3, 1), (6, 6, 1))
  residuals = np.zeros([1, 8, 8, 1, 2, 7], np.float32)
  direction = np.zeros([1, 8, 8, 1, 2, 2], np.float32)
  for (r, c, a), h in zip(cells, true):
    residuals[0, r, c, 0, a, 6] = h + np.pi - anchors[r, c, a, 6]
    direction[0, r, c, 0, a, task.direction_bin(tf.constant(h)).numpy()] = 3.0
  outputs = {'logits': tf.zeros([1, 8, 8, 1, 2]), 'residuals': tf.constant(residuals),
             'direction': tf.constant(direction)}  # fmt: skip
  boxes, _ = task.decode_frame(outputs)
  got = tf.reshape(boxes, [8, 8, 2, 7]).numpy()
  for (r, c, a), h in zip(cells, true):
    assert abs(np.sin((got[r, c, a, 6] - h) / 2)) < 1e-5, (r, c, a)
  # Without the classifier the same residuals decode reversed.
  plain = detection3d.Detection3DTask(GRID, ANCHORS, direction_weight=0.0, **NET)
  assert 'direction' not in plain.output_spec
  boxes, _ = plain.decode_frame({k: v for k, v in outputs.items() if k != 'direction'})
  got = tf.reshape(boxes, [8, 8, 2, 7]).numpy()
  for (r, c, a), h in zip(cells, true):
    assert abs(np.cos(got[r, c, a, 6] - h) + 1) < 1e-5
