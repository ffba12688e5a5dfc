"""Scoring an exported depth SavedModel on a built video dataset's depth protocol.

Used by `tools/evaluate.py --saved_model=...`. The model is anything exported with a
`serving_default` signature taking `image` uint8 [N, H, W, 3] and returning `depth` float32
[N, H, W, 1] in metres (a depth task's snapshot, `taskology_tf/serving/export.py`), so a model
trained elsewhere can be scored the same way.
"""

import os

import tensorflow as tf

from taskology_tf.datasets import clips
from taskology_tf.metrics import kitti_depth

# Frame of a dataset clip whose depth is evaluated (the ground truth sits on the middle one).
EVAL_FRAME = 1


def resolve_saved_model(path: str) -> str:
  """`path` itself if it holds saved_model.pb, else its newest numeric version directory."""
  if tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
    return path
  if tf.io.gfile.isdir(path):
    versions = [v.strip('/') for v in tf.io.gfile.listdir(path) if v.strip('/').isdigit()]
    if versions:
      return os.path.join(path, max(versions, key=int))
  raise FileNotFoundError(
      f'--saved_model={path!r} holds no saved_model.pb and no numeric version directory'
  )


def evaluate_saved_model(
    saved_model: str,
    dataset: str,
    data_dir: str,
    split: str = 'test',
    batch_size: int = 8,
    max_examples=None,
):
  """Scores a depth SavedModel's `serving_default` on a built video dataset's split.

  The signature must take `image` uint8 [N, H, W, 3] (H x W the dataset's built size) and
  return `depth` float32 [N, H, W, 1] in metres. KITTI uses the Eigen protocol against the
  full-resolution velodyne ground truth of each clip's middle frame; Cityscapes the same
  metrics at the built resolution against disparity depth.

  Returns:
    {protocol name: metrics} for median scaling off and on.

  Raises:
    FileNotFoundError: no SavedModel, or the dataset is not built.
    ValueError: the signature's inputs or outputs do not fit the dataset.
  """
  path = resolve_saved_model(saved_model)
  model = tf.saved_model.load(path)
  if 'serving_default' not in model.signatures:
    raise ValueError(f'{path}: no serving_default signature (have {list(model.signatures)})')
  serve = model.signatures['serving_default']
  inputs = serve.structured_input_signature[1]
  if 'image' not in inputs or inputs['image'].dtype != tf.uint8:
    raise ValueError(f'{path}: serving_default must take image uint8 [N, H, W, 3]; has {inputs}')
  height, width = inputs['image'].shape[1], inputs['image'].shape[2]
  if height is None or width is None:
    raise ValueError(f'{path}: serving_default image input needs a static size, has {inputs}')
  source = clips.kitti_raw_clips if dataset == 'kitti_raw' else clips.cityscapes_clips
  data = source(split=split, data_dir=data_dir, height=height, width=width)
  if max_examples is not None:
    data = data.take(max_examples)
  make = (
      kitti_depth.kitti_eigen_metrics if dataset == 'kitti_raw' else kitti_depth.cityscapes_metrics
  )
  metrics = [make(median_scaling=False), make(median_scaling=True)]
  for batch in data.batch(batch_size).as_numpy_iterator():
    outputs = serve(image=tf.constant(batch['image'][:, EVAL_FRAME]))
    if 'depth' not in outputs:
      raise ValueError(f'{path}: serving_default returns {sorted(outputs)}, not depth')
    pred = outputs['depth'].numpy()
    if dataset == 'kitti_raw':
      gt, gt_size = batch['gt_depth'], batch['gt_size']
    else:
      gt, gt_size = batch['depth'][:, EVAL_FRAME], None
    for m in metrics:
      m.update(gt, pred, gt_size)
  return {m.protocol: m.result() for m in metrics}
