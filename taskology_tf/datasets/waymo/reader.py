"""Waymo Open Dataset reader: segment TFRecords of `Frame` protos -> n_f-frame lidar sequences.

Built on the official protos and `frame_utils` of `waymo-open-dataset-tf-2-12-0==1.6.7`
(installed with `--no-deps`: its pure-Python parts run on TF 2.20; its compiled metric ops do
not load here). Conventions (Waymo's, which are this project's: vehicle frame x forward, y left,
z up; a box is (x, y, z, l, w, h, heading), heading about +z from +x):

- Points: the range images of every lidar (TOP, FRONT, SIDE_LEFT, SIDE_RIGHT, REAR) and both
  returns, converted by `frame_utils.convert_range_image_to_point_cloud` into the frame's
  vehicle coordinates (TOP's per-pixel poses undo the rolling shutter there). Per point
  (x, y, z, intensity), intensity as recorded (unbounded; the clip source squashes it).
- Poses: `frame.pose` is world_from_vehicle (4x4, row-major). Frame k of a sequence is moved
  into the current frame's vehicle coordinates by current_from_k = inv(world_from_current)
  world_from_k (points and boxes; the box heading gains the yaw of that transform).
- Sequences: the current frame and the n_f - 1 frames `time_step` (0.5 s) apart before it,
  chosen by timestamp within the segment (Waymo records at 10 Hz: 5 frames apart), each
  within `tolerance_s` of its target time. Frame 0 = current, frame k = k steps earlier.
- Boxes: `laser_labels` of the kept types (TYPE_VEHICLE), with their string track ids mapped
  to int32 per sequence (first appearance order, so equal ids across frames are one object),
  `num_lidar_points_in_box`, and the difficulty the official metrics use
  (metrics/tools/compute_detection_metrics_main.cc): a box with no lidar point is not
  evaluated (0); a box the labellers marked LEVEL_1 / LEVEL_2 keeps that level; an unmarked box
  is LEVEL_2 with <= 5 points, else LEVEL_1.

Bad input: a truncated or corrupt TFRecord, or a record that is not a Frame, raises
`WaymoDataError` naming the file and the record; a frame without range images raises
`NoLaserDataError` naming the file and frame from `frame_points`, and `segment_sequences`
counts it (and every sequence it would have been part of) as a drop instead.
"""

import collections
import dataclasses
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple
import zlib

import numpy as np
import tensorflow as tf
from waymo_open_dataset import dataset_pb2
from waymo_open_dataset import label_pb2
from waymo_open_dataset.utils import frame_utils

VEHICLE_TYPES = (label_pb2.Label.TYPE_VEHICLE,)
# Official metrics: an unmarked box with at most this many lidar points is LEVEL_2.
LEVEL_2_MAX_POINTS = 5


class WaymoDataError(ValueError):
  """A Waymo segment file is truncated, corrupt, or not what the reader expects."""


class NoLaserDataError(WaymoDataError):
  """A frame carries no range images (no lidar points)."""


def read_frames(path: str) -> Iterator[dataset_pb2.Frame]:
  """The Frame protos of one segment TFRecord, in file order.

  Raises:
    WaymoDataError: the file is missing, a record is truncated or corrupt, or a record does
      not parse as a Frame (names the file and the record number).
  """
  if not tf.io.gfile.exists(path):
    raise WaymoDataError(f'Waymo segment file {path} does not exist')
  index = 0
  iterator = iter(tf.data.TFRecordDataset(path))
  while True:
    try:
      record = next(iterator)
    except StopIteration:
      return
    except tf.errors.DataLossError as e:
      raise WaymoDataError(
          f'{path}: record {index} is truncated or corrupt ({e.message.strip()}); '
          're-download the segment'
      ) from e
    frame = dataset_pb2.Frame()
    try:
      frame.ParseFromString(record.numpy())
    except Exception as e:  # protobuf's DecodeError has no stable import path across versions
      raise WaymoDataError(f'{path}: record {index} is not a Waymo Frame proto ({e})') from e
    yield frame
    index += 1


def frame_id(frame: dataset_pb2.Frame) -> str:
  return f'{frame.context.name}@{frame.timestamp_micros}'


def has_laser_data(frame: dataset_pb2.Frame) -> bool:
  """Whether every calibrated lidar of the frame has a first-return range image."""
  with_images = {l.name for l in frame.lasers if l.ri_return1.range_image_compressed}
  calibrated = {c.name for c in frame.context.laser_calibrations}
  return bool(calibrated) and calibrated <= with_images


def world_from_vehicle(frame: dataset_pb2.Frame) -> np.ndarray:
  """[4, 4] float64 pose of the frame's vehicle in the world (`frame.pose`, row-major)."""
  if len(frame.pose.transform) != 16:
    raise WaymoDataError(f'frame {frame_id(frame)}: pose has {len(frame.pose.transform)} != 16')
  return np.array(frame.pose.transform, np.float64).reshape(4, 4)


def frame_points(frame: dataset_pb2.Frame, source: str = '') -> np.ndarray:
  """Points [N, 4] float32 (x, y, z in the frame's vehicle coordinates, intensity) of every
  lidar and both returns.

  Raises:
    NoLaserDataError: the frame has no range images (names `source` and the frame).
  """
  if not has_laser_data(frame):
    names = sorted(
        dataset_pb2.LaserName.Name.Name(c.name) for c in frame.context.laser_calibrations
    )
    raise NoLaserDataError(
        f'{source or "<frame>"}: frame {frame_id(frame)} has no range images for its lidars '
        f'{names} (no lidar points); a Waymo perception Frame with laser data is needed'
    )
  parsed = frame_utils.parse_range_image_and_camera_projection(frame)
  # waymo-open-dataset <= 1.3 returns (range_images, camera_projections, top_pose); from 1.4
  # on, segmentation labels come third: (range_images, camera_projections, seg_labels, top_pose).
  if len(parsed) == 4:
    range_images, camera_projections, _, top_pose = parsed
  elif len(parsed) == 3:
    range_images, camera_projections, top_pose = parsed
  else:
    raise WaymoDataError(
        f'frame_utils.parse_range_image_and_camera_projection returned {len(parsed)} items; '
        'expected 3 or 4 (unsupported waymo-open-dataset version)'
    )
  out = []
  for ri_index in (0, 1):
    if not all(len(v) > ri_index for v in range_images.values()):
      continue  # A frame without second returns keeps its first returns.
    # keep_polar_features: (range, intensity, elongation, x, y, z) per point.
    points, _ = frame_utils.convert_range_image_to_point_cloud(
        frame,
        range_images,
        camera_projections,
        top_pose,
        ri_index=ri_index,
        keep_polar_features=True,
    )
    for p in points:
      out.append(np.concatenate([p[:, 3:6], p[:, 1:2]], axis=1))
  return np.concatenate(out).astype(np.float32)


def difficulty_levels(num_points: np.ndarray, marked: np.ndarray) -> np.ndarray:
  """[K] int32 evaluation level of boxes: 0 not evaluated (no point), 1 LEVEL_1, 2 LEVEL_2.

  Args:
    num_points: [K] lidar points in each box.
    marked: [K] the labellers' `detection_difficulty_level` (0 UNKNOWN, 1, 2).
  """
  num_points = np.asarray(num_points)
  by_points = np.where(num_points <= LEVEL_2_MAX_POINTS, 2, 1)
  level = np.where(np.asarray(marked) > 0, marked, by_points)
  return np.where(num_points <= 0, 0, level).astype(np.int32)


def frame_boxes(
    frame: dataset_pb2.Frame, types: Sequence[int] = VEHICLE_TYPES
) -> Dict[str, np.ndarray]:
  """The 3D laser boxes of the kept types in the frame's vehicle coordinates.

  Returns:
    'boxes' [K, 7] float32 (x, y, z, l, w, h, heading), 'ids' [K] object (track id strings),
    'num_points' [K] int32, 'difficulty' [K] int32 (`difficulty_levels`).
  """
  labels = [l for l in frame.laser_labels if l.type in types]
  boxes = np.array(
      [
          [b.center_x, b.center_y, b.center_z, b.length, b.width, b.height, b.heading]
          for b in (l.box for l in labels)
      ],
      np.float32,
  ).reshape(-1, 7)
  num_points = np.array([l.num_lidar_points_in_box for l in labels], np.int32)
  marked = np.array([l.detection_difficulty_level for l in labels], np.int32)
  return {
      'boxes': boxes,
      'ids': np.array([l.id for l in labels], object),
      'num_points': num_points,
      'difficulty': difficulty_levels(num_points, marked),
  }


def move_boxes(current_from_frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """Boxes [K, 7] moved by a rigid transform [4, 4] (its yaw added to the heading)."""
  out = np.array(boxes, np.float64).copy()
  out[:, :3] = out[:, :3] @ current_from_frame[:3, :3].T + current_from_frame[:3, 3]
  yaw = np.arctan2(current_from_frame[1, 0], current_from_frame[0, 0])
  out[:, 6] = (out[:, 6] + yaw + np.pi) % (2 * np.pi) - np.pi
  return out.astype(np.float32)


def sequence_key(segment: str, timestamp_micros: int) -> int:
  """A stable int64 id of a sequence (the label-fraction key `scene_seed`)."""
  return (zlib.crc32(segment.encode()) << 31) ^ int(timestamp_micros)


@dataclasses.dataclass(frozen=True)
class SequenceConfig:
  """How sequences are cut from a segment.

  Attributes:
    num_frames: n_f (3 in Table 2).
    time_step: seconds between a sequence's frames (0.5).
    tolerance_s: largest gap between a frame's timestamp and its target time.
    max_boxes: K, boxes padded to this many per frame; a frame with more keeps the K nearest
      to the current vehicle and counts the rest as dropped.
    types: label types kept (Waymo's `Label.Type` numbers; vehicles).
  """

  num_frames: int = 3
  time_step: float = 0.5
  tolerance_s: float = 0.05
  max_boxes: int = 200
  types: Tuple[int, ...] = VEHICLE_TYPES


class DropCounter:
  """Counts what a reader dropped, by reason (a `raw_io.SkipCounter`-like callable)."""

  def __init__(self):
    self.counts = collections.Counter()

  def __call__(self, reason: str, n: int = 1) -> None:
    self.counts[reason] += n


def _history(timestamps: Sequence[int], i: int, config: SequenceConfig) -> Optional[List[int]]:
  """Indices [i, j_1, ..., j_{n_f - 1}] of frame i and its earlier frames, or None."""
  out = [i]
  for k in range(1, config.num_frames):
    target = timestamps[i] - k * config.time_step * 1e6
    j = min(range(i + 1), key=lambda m: abs(timestamps[m] - target))
    if abs(timestamps[j] - target) > config.tolerance_s * 1e6 or j == out[-1]:
      return None
    out.append(j)
  return out


def build_sequence(
    frames: Sequence[Dict[str, np.ndarray]],
    config: SequenceConfig,
    drop: Optional[Callable] = None,
) -> Dict[str, np.ndarray]:
  """One sequence (inputs/point_clouds.py's format) from per-frame readings, current first.

  Args:
    frames: n_f dicts of 'points' [N_k, 4] (own vehicle frame), 'pose' [4, 4] world_from_vehicle,
      'timestamp' int, 'segment' str and `frame_boxes`' outputs.
    config: the sequence config.
    drop: called with (reason, count) for boxes beyond max_boxes.

  Returns:
    'points' [n_f, L, 4] (L = the most points of a frame; shorter frames padded), 'points_valid'
    [n_f, L], 'gt_boxes' [n_f, K, 7], 'gt_valid', 'gt_track_ids', 'gt_num_points',
    'gt_difficulty' [n_f, K], 'current_from_frame' [n_f, 4, 4] float32, 'timestamp_micros'
    [n_f] int64, 'scene_seed' int64, all in the current frame's vehicle coordinates.
  """
  drop = drop or DropCounter()
  cur_from_world = np.linalg.inv(frames[0]['pose'])
  k_max = config.max_boxes
  length = max(len(f['points']) for f in frames)
  track_numbers = {}
  out = collections.defaultdict(list)
  for f in frames:
    cur_from_frame = cur_from_world @ f['pose']
    pts = f['points'].astype(np.float64)
    pts[:, :3] = pts[:, :3] @ cur_from_frame[:3, :3].T + cur_from_frame[:3, 3]
    n = len(pts)
    out['points'].append(np.concatenate([pts, np.zeros((length - n, 4))]).astype(np.float32))
    out['points_valid'].append(np.arange(length) < n)
    boxes = move_boxes(cur_from_frame, f['boxes'])
    order = np.argsort(np.hypot(boxes[:, 0], boxes[:, 1]), kind='stable')[:k_max]
    if len(boxes) > k_max:
      drop(f'boxes beyond max_boxes = {k_max} (farthest dropped)', len(boxes) - k_max)
    k = len(order)
    ids = [track_numbers.setdefault(t, len(track_numbers)) for t in f['ids'][order]]
    pad = lambda a, v: np.concatenate([a, np.full((k_max - k,) + a.shape[1:], v, a.dtype)])
    out['gt_boxes'].append(pad(boxes[order], 0.0))
    out['gt_valid'].append(pad(np.ones(k, bool), False))
    out['gt_track_ids'].append(pad(np.array(ids, np.int32), -1))
    out['gt_num_points'].append(pad(f['num_points'][order], 0))
    out['gt_difficulty'].append(pad(f['difficulty'][order], 0))
    out['current_from_frame'].append(cur_from_frame.astype(np.float32))
    out['timestamp_micros'].append(np.int64(f['timestamp']))
  seq = {k: np.stack(v) for k, v in out.items()}
  seq['scene_seed'] = np.int64(sequence_key(frames[0]['segment'], frames[0]['timestamp']))
  return seq


def read_frame(frame: dataset_pb2.Frame, source: str, types=VEHICLE_TYPES) -> Dict[str, object]:
  """Points (NoLaserDataError if none), pose, timestamp, segment and boxes of one frame."""
  return {
      'points': frame_points(frame, source),
      'pose': world_from_vehicle(frame),
      'timestamp': int(frame.timestamp_micros),
      'segment': frame.context.name,
      **frame_boxes(frame, types),
  }


def segment_sequences(
    path: str, config: SequenceConfig = SequenceConfig(), drop: Optional[Callable] = None
) -> Iterator[Tuple[str, Dict[str, np.ndarray]]]:
  """(key, sequence) of every frame of a segment that has its n_f - 1 earlier frames.

  Frames are read once, in order, and only the last `num_frames * time_step` seconds of them
  are kept in memory. Drops go to `drop(reason, count)`: a frame without range images, and
  each frame whose earlier frames are missing from the segment (its first (n_f - 1) * time_step
  seconds, gaps, or frames without range images).

  Raises:
    WaymoDataError: a truncated or corrupt file (names it), or frames out of time order.
  """
  drop = drop or DropCounter()
  window_us = (config.num_frames - 1) * config.time_step * 1e6 + config.tolerance_s * 1e6
  kept: List[Optional[Dict[str, object]]] = []  # readings (None: no laser data)
  stamps: List[int] = []
  name = os.path.basename(path)
  for frame in read_frames(path):
    t = int(frame.timestamp_micros)
    if stamps and t <= stamps[-1]:
      raise WaymoDataError(f'{path}: frame {frame_id(frame)} is not after the previous frame')
    try:
      reading = read_frame(frame, path, config.types)
    except NoLaserDataError:
      drop('frames without range images (no lidar points)')
      reading = None
    stamps.append(t)
    kept.append(reading)
    while stamps[0] < t - window_us:
      stamps.pop(0)
      kept.pop(0)
    if reading is None:
      continue
    history = _history(stamps, len(stamps) - 1, config)
    if history is None or any(kept[j] is None for j in history):
      drop(f'frames without {config.num_frames - 1} earlier frames {config.time_step} s apart')
      continue
    yield f'{name}/{t}', build_sequence([kept[j] for j in history], config, drop)
