"""Point-cloud sequences -> pillar batches for the detection and box-flow tasks.

A *sequence* (the point-cloud analogue of a clip) holds n_f lidar frames already moved into the
current frame's vehicle coordinates (frame 0 = current, frame k = k steps earlier):

  'points' [n_f, L, 4] float32 (x, y, z, intensity), 'points_valid' [n_f, L] bool,
  'gt_boxes' [n_f, K, 7] float32, 'gt_valid' [n_f, K] bool, 'gt_track_ids' [n_f, K] int32,
  'gt_num_points' [n_f, K] int32, 'scene_seed' int64 (the label-fraction key).

`PointCloudPipeline` pillarises every frame and assigns anchors (geometry/box_coder.py) in
tf.data, so the training step sees only static-shape tensors. Mediator examples carry only the
pillar tensors (labels are dropped, as pipelines.strip_labels does for images) plus a
placeholder `image` [n_f, 1, 1, 3] uint8 and `intrinsics` eye(3): the trainer and the gRPC peer
client read the batch and clip sizes from `image` (see the report / WORKSPACE.md).

Label fractions drop labels by sequence (all n_f frames of a sequence together), chosen by a
hash of `scene_seed` (pipelines.label_fraction_subset, nested across fractions); the mediator
stream uses every training sequence without labels.
"""

from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from taskology_tf.geometry import box_coder
from taskology_tf.geometry import pillars as pillars_lib
from taskology_tf.inputs import pipelines

LABEL_KEYS = ('gt_boxes', 'gt_valid', 'gt_track_ids', 'gt_num_points', 'anchor_match')
# Labels a source may add: 'gt_difficulty' [n_f, K] int32 (0 not evaluated, 1 LEVEL_1, 2 LEVEL_2),
# the official levels of the Waymo reader; without it, metrics derive levels from point counts.
OPTIONAL_LABEL_KEYS = ('gt_difficulty',)
DROP_KEYS = ('dropped_outside', 'dropped_point_cap', 'dropped_pillar_cap')


class PointCloudPipeline:
  """Pillarisation and anchor assignment of sequences.

  Args:
    grid: BEV grid and pillar caps (the tasks').
    anchors: anchors and matching thresholds (the detector's).
  """

  def __init__(
      self,
      grid: pillars_lib.PillarGrid = pillars_lib.PillarGrid(),
      anchors: box_coder.AnchorConfig = box_coder.AnchorConfig(),
  ):
    self.grid = grid
    self.anchor_config = anchors

  def pillarize(self, sequence) -> Dict[str, tf.Tensor]:
    """Pillar tensors [n_f, ...] and per-frame drop counts of one sequence."""
    return pillars_lib.pillarize_frames(sequence['points'], sequence['points_valid'], self.grid)

  def labels(self, sequence) -> Dict[str, tf.Tensor]:
    """Ground truth plus 'anchor_match' [n_f, rows, cols, n_a] int32 of one sequence."""
    anchors = box_coder.make_anchors(self.grid, self.anchor_config)
    flat = tf.reshape(anchors, [-1, 7])
    match = tf.map_fn(
        lambda a: box_coder.match_anchors(flat, a[0], a[1], self.anchor_config),
        (sequence['gt_boxes'], sequence['gt_valid']),
        fn_output_signature=tf.TensorSpec([None], tf.int32),
    )
    num_frames = sequence['gt_boxes'].shape[0]
    out = {k: sequence[k] for k in LABEL_KEYS if k != 'anchor_match'}
    out.update({k: sequence[k] for k in OPTIONAL_LABEL_KEYS if k in sequence})
    out['anchor_match'] = tf.reshape(match, [num_frames, *anchors.shape[:3]])
    return out

  def labelled(self, sequence):
    return {**self.pillarize(sequence), **self.labels(sequence)}

  def unlabelled(self, sequence):
    out = self.pillarize(sequence)
    num_frames = sequence['points'].shape[0]
    out['image'] = tf.zeros([num_frames, 1, 1, 3], tf.uint8)  # placeholder (module docstring)
    out['intrinsics'] = tf.eye(3)
    return out

  def dedicated_dataset(
      self,
      sequences: tf.data.Dataset,
      batch_size: int,
      label_fraction: float = 1.0,
      seed: int = 0,
      shuffle_buffer: int = 256,
  ) -> tf.data.Dataset:
    """Endless shuffled labelled batches from the `label_fraction` subset of sequences."""
    subset = pipelines.label_fraction_subset(sequences, label_fraction, seed)
    if label_fraction < 1.0 and not list(subset.take(1)):
      raise ValueError(
          f'TaskConfig.label_fraction = {label_fraction} keeps no labelled sequence of this '
          'input pipeline (too few sequences for the fraction); raise num_sequences or the fraction'
      )
    return (
        subset.cache()
        .shuffle(shuffle_buffer, seed=seed)
        .repeat()
        .map(self.labelled, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size, drop_remainder=True)
        .prefetch(2)
    )

  def mediator_dataset(
      self, sequences: tf.data.Dataset, batch_size: int, seed: int = 0, shuffle_buffer: int = 256
  ) -> tf.data.Dataset:
    """Endless shuffled unlabelled batches (labels dropped before anything else)."""
    stripped = sequences.map(lambda s: {'points': s['points'], 'points_valid': s['points_valid']})
    return (
        stripped.cache()
        .shuffle(shuffle_buffer, seed=seed)
        .repeat()
        .map(self.unlabelled, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size, drop_remainder=True)
        .prefetch(2)
    )

  def evaluation_dataset(
      self, sequences: tf.data.Dataset, batch_size: int, max_sequences: Optional[int] = None
  ) -> tf.data.Dataset:
    if max_sequences is not None:
      sequences = sequences.take(max_sequences)
    return sequences.map(self.labelled).batch(batch_size).prefetch(2)


def moved_into(current_from_frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """Boxes [K, 7] of a frame moved by a rigid yaw transform [4, 4] into the current frame."""
  out = boxes.copy()
  out[:, :3] = boxes[:, :3] @ current_from_frame[:3, :3].T + current_from_frame[:3, 3]
  yaw = np.arctan2(current_from_frame[1, 0], current_from_frame[0, 0])
  out[:, 6] = (boxes[:, 6] + yaw + np.pi) % (2 * np.pi) - np.pi
  return out


def synthetic_sequence(seed: int, num_frames: int = 3, time_step: float = 0.5):
  """One n_f-frame lidar sequence of the synthetic world, cars only (numpy dict, module doc).

  The world renders frames at t = 0, dt, ...; the current frame is the last one, and frame k of
  the sequence is render frame n_f - 1 - k, moved into the current vehicle frame with the ego
  poses. Points in a box are counted from the renderer's per-return track ids (exact).
  """
  # Imported here: the renderer is only needed by this source.
  from taskology_tf.datasets.synthetic_world import render  # pylint: disable=g-import-not-at-top
  from taskology_tf.datasets.synthetic_world import scene as scene_lib  # pylint: disable=g-import-not-at-top

  scene = scene_lib.generate_scene(seed)
  ex = render.render_example(scene, 4, 4, num_frames=num_frames, time_step=time_step)
  t_cur = (num_frames - 1) * time_step
  cur_from_world = np.linalg.inv(scene_lib.world_from_vehicle(scene, t_cur))
  k_max = ex['boxes'].shape[1]
  out = {
      k: []
      for k in ('points', 'points_valid', 'gt_boxes', 'gt_valid', 'gt_track_ids', 'gt_num_points')
  }
  for k in range(num_frames):
    r = num_frames - 1 - k
    cur_from_frame = cur_from_world @ scene_lib.world_from_vehicle(scene, r * time_step)
    pts = ex['lidar_points'][r].copy()
    pts[:, :3] = pts[:, :3] @ cur_from_frame[:3, :3].T + cur_from_frame[:3, 3]
    car = ex['box_classes'][r] == scene_lib.CAR
    tracks = np.where(car, ex['track_ids'][r], -1)
    counts = np.array(
        [
            np.sum(ex['lidar_valid'][r] & (ex['lidar_track_ids'][r] == t)) if t >= 0 else 0
            for t in tracks
        ]
    )
    out['points'].append(pts.astype(np.float32))
    out['points_valid'].append(ex['lidar_valid'][r])
    out['gt_boxes'].append(moved_into(cur_from_frame, ex['boxes'][r]).astype(np.float32))
    out['gt_valid'].append(car)
    out['gt_track_ids'].append(tracks.astype(np.int32))
    out['gt_num_points'].append(counts.astype(np.int32))
  seq = {k: np.stack(v) for k, v in out.items()}
  seq['gt_boxes'][~seq['gt_valid']] = 0.0
  seq['scene_seed'] = np.int64(seed)
  del k_max
  return seq


SPLIT_INDICES = {'train': 0, 'validation': 1, 'test': 2}


def synthetic_point_cloud_clips(
    split: str = 'train',
    num_sequences: int = 200,
    seed: int = 0,
    num_frames: int = 3,
    time_step: float = 0.5,
    input_context: Optional[tf.distribute.InputContext] = None,
) -> tf.data.Dataset:
  """Lidar sequences of the synthetic world, rendered on the fly (module docstring).

  Sequence i of `split` is scene `scene.example_seed(seed, split, i)`, as in the TFDS builder.
  With an input context, each input pipeline renders only its share (i % n == id).
  """
  from taskology_tf.datasets.synthetic_world import scene as scene_lib  # pylint: disable=g-import-not-at-top

  if split not in SPLIT_INDICES:
    raise ValueError(
        f'synthetic_point_cloud_clips.split must be one of {sorted(SPLIT_INDICES)}, got {split!r}'
    )
  n, me = 1, 0
  if input_context is not None:
    n, me = input_context.num_input_pipelines, input_context.input_pipeline_id
  seeds = [
      scene_lib.example_seed(seed, SPLIT_INDICES[split], i)
      for i in range(num_sequences)
      if i % n == me
  ]
  first = synthetic_sequence(seeds[0], num_frames, time_step)
  signature = {
      k: tf.TensorSpec(np.shape(v), tf.as_dtype(np.asarray(v).dtype)) for k, v in first.items()
  }

  def generate():
    for s in seeds:
      yield synthetic_sequence(s, num_frames, time_step)

  return tf.data.Dataset.from_generator(generate, output_signature=signature)
