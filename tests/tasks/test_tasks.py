"""Every task network: eager == tf.function, output spec honoured, SavedModel export round trip."""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.serving.export import export_snapshot
from taskology_tf.tasks.depth import DepthTask
from taskology_tf.tasks.egomotion import EgomotionTask
from taskology_tf.tasks.normals import NormalsTask
from taskology_tf.tasks.segmentation import SegmentationTask

H, W = 16, 24
TASKS = [
    lambda: DepthTask(H, W, base_filters=4, levels=2),
    lambda: NormalsTask(H, W, base_filters=4, levels=2),
    lambda: SegmentationTask(H, W, num_classes=5, base_filters=4, levels=2),
    lambda: EgomotionTask(H, W, base_filters=4, levels=3),
]


def _mediator(batch=2, frames=3, seed=0):
  rng = np.random.default_rng(seed)
  return {
      'image': tf.constant(rng.integers(0, 255, (batch, frames, H, W, 3), dtype=np.uint8)),
      'intrinsics': tf.eye(3, batch_shape=[batch]),
  }


@pytest.mark.parametrize('make_task', TASKS)
def test_eager_graph_spec_and_export(make_task, tmp_path):
  task = make_task()
  model = task.build_network()
  mediator = _mediator()
  inputs = task.serving_inputs(mediator)
  eager = task.call(model, inputs)
  graph = tf.function(lambda x: task.call(model, x))(inputs)
  n = 2 * 3 if task.name != 'egomotion' else 2 * 2  # frames per clip, or pairs per clip
  for key, spec in task.output_spec.items():
    assert eager[key].shape == [n] + spec.shape.as_list(), key
    assert eager[key].dtype == spec.dtype
    np.testing.assert_allclose(eager[key].numpy(), graph[key].numpy(), rtol=1e-4, atol=1e-5)
  # Clip structure restored for relations: [B, T, ...] per frame, [B, T-1, ...] per pair.
  per_clip = task.predict_mediator(model, mediator)
  for key, spec in task.output_spec.items():
    lead = [2, 3] if task.name != 'egomotion' else [2, 2]
    assert per_clip[key].shape == lead + spec.shape.as_list()
  # Export and reload: the SavedModel answers exactly what the live model does.
  path = export_snapshot(model, task.serving_function(model), str(tmp_path), task.name, 7)
  loaded = tf.saved_model.load(path)
  served = loaded.signatures['serving_default'](**inputs)
  assert int(served['snapshot_version']) == 7
  for key in task.output_spec:
    np.testing.assert_allclose(served[key].numpy(), eager[key].numpy(), rtol=1e-4, atol=1e-5)


def test_depth_positive_and_normals_unit():
  mediator = _mediator()
  depth_task = DepthTask(H, W, base_filters=4, levels=2, min_depth=0.1)
  depth = depth_task.predict_mediator(depth_task.build_network(), mediator)['depth']
  assert float(tf.reduce_min(depth)) >= 0.1
  normals_task = NormalsTask(H, W, base_filters=4, levels=2)
  normals = normals_task.predict_mediator(normals_task.build_network(), mediator)['normals']
  np.testing.assert_allclose(tf.norm(normals, axis=-1).numpy(), 1.0, atol=1e-5)


def test_supervised_losses_zero_at_ground_truth():
  # A prediction equal to the label gives zero loss: log|d/d*| = 0, 1 - cos(n, n) = 0.
  rng = np.random.default_rng(0)
  gt_depth = tf.constant(rng.uniform(1, 50, (2, H, W, 1)), tf.float32)
  loss, _ = DepthTask(H, W).supervised_loss({'depth': gt_depth}, {'depth': gt_depth})
  assert abs(float(loss)) < 1e-6
  n = rng.normal(size=(2, H, W, 3))
  n = tf.constant(n / np.linalg.norm(n, axis=-1, keepdims=True), tf.float32)
  loss, metrics = NormalsTask(H, W).supervised_loss(
      {'normals': n, 'depth': gt_depth}, {'normals': n}
  )
  assert abs(float(loss)) < 1e-6
  # Opposite normals: 1 - cos = 2 everywhere.
  loss, _ = NormalsTask(H, W).supervised_loss({'normals': n}, {'normals': -n})
  assert abs(float(loss) - 2.0) < 1e-5


def test_missing_input_is_named():
  task = EgomotionTask(H, W)
  with pytest.raises(KeyError, match='image_b'):
    task.call(task.build_network(), {'image_a': tf.zeros([1, H, W, 3], tf.uint8)})
