"""Generated Waymo `Frame` protos with range images: test fixtures and benchmark input.

Each frame has all five lidars with tiny range images (H x W = 4 x 8, both returns), zlib
compressed as the real files store them, camera projections, TOP's per-pixel poses, a pose and
vehicle boxes. Where a lidar return lands follows Waymo's range-image geometry
(range_image_utils): row i has inclination incl_i (the calibration's beam inclinations
reversed, so row 0 is the highest beam), column j has vehicle-frame azimuth
az_j = ((W - j - 0.5) / W * 2 - 1) * pi (the extrinsic's yaw is taken out for the sensor frame
and put back by its rotation), so a sensor with extrinsic yaw psi and translation t puts a
return of range r at

  p_vehicle = t + r (cos incl_i cos az_j, cos incl_i sin az_j, sin incl_i)      (*)

whatever psi is. `expected_point` evaluates (*).
"""

import zlib

import numpy as np
from waymo_open_dataset import dataset_pb2
from waymo_open_dataset import label_pb2

H, W = 4, 8
LASERS = (
    dataset_pb2.LaserName.TOP,
    dataset_pb2.LaserName.FRONT,
    dataset_pb2.LaserName.SIDE_LEFT,
    dataset_pb2.LaserName.SIDE_RIGHT,
    dataset_pb2.LaserName.REAR,
)
# Extrinsics: (yaw, translation) of each lidar on the vehicle.
EXTRINSICS = {
    dataset_pb2.LaserName.TOP: (0.1, (1.4, 0.0, 2.2)),
    dataset_pb2.LaserName.FRONT: (0.0, (4.0, 0.0, 0.8)),
    dataset_pb2.LaserName.SIDE_LEFT: (np.pi / 2, (2.0, 1.0, 0.9)),
    dataset_pb2.LaserName.SIDE_RIGHT: (-np.pi / 2, (2.0, -1.0, 0.9)),
    dataset_pb2.LaserName.REAR: (np.pi, (-1.0, 0.0, 0.9)),
}
# TOP has explicit (non-uniform) beam inclinations, ascending as Waymo stores them; the others
# have only a [min, max] range (uniform rows).
TOP_INCLINATIONS = (-0.3, -0.2, -0.05, 0.04)
INCLINATION_RANGE = (-0.6, 0.2)


def yaw_pose(yaw: float, translation) -> np.ndarray:
  """[4, 4] rotation about z by `yaw` with a translation."""
  c, s = np.cos(yaw), np.sin(yaw)
  m = np.eye(4)
  m[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
  m[:3, 3] = translation
  return m


def inclination(laser: int, row: int) -> float:
  if laser == dataset_pb2.LaserName.TOP:
    return TOP_INCLINATIONS[::-1][row]
  lo, hi = INCLINATION_RANGE
  # range_image_utils.compute_inclination: (h + 0.5) / H * (max - min) + min, then reversed.
  return lo + (H - 1 - row + 0.5) / H * (hi - lo)


def expected_point(laser: int, row: int, col: int, rng: float) -> np.ndarray:
  """(*) of the module docstring: the vehicle-frame point of a return."""
  incl = inclination(laser, row)
  az = ((W - col - 0.5) / W * 2 - 1) * np.pi
  t = np.array(EXTRINSICS[laser][1])
  return t + rng * np.array([np.cos(incl) * np.cos(az), np.cos(incl) * np.sin(az), np.sin(incl)])


def _matrix(proto_cls, array):
  m = proto_cls()
  m.shape.dims.extend(array.shape)
  m.data.extend(array.ravel().tolist())
  return zlib.compress(m.SerializeToString())


def make_frame(
    segment: str,
    timestamp_micros: int,
    world_from_vehicle: np.ndarray,
    returns=(),
    boxes=(),
    with_laser_data: bool = True,
    images=None,
) -> dataset_pb2.Frame:
  """One Frame.

  Args:
    segment: context name.
    timestamp_micros: frame time.
    world_from_vehicle: [4, 4] pose (yaw-only rotations keep TOP's pixel poses exact).
    returns: (laser, return index 0/1, row, col, range, intensity) of each lidar return.
    boxes: (x, y, z, l, w, h, heading, id, num_points, marked level, type) in the vehicle frame.
    with_laser_data: False leaves every range image empty (as the real sample file).
    images: instead of `returns`, {laser: ([h, w, 2] first, [h, w, 2] second return)} dense
      (range, intensity) images (range <= 0: no return), any h x w (benchmarks).
  """
  frame = dataset_pb2.Frame()
  frame.context.name = segment
  frame.timestamp_micros = int(timestamp_micros)
  frame.pose.transform.extend(np.asarray(world_from_vehicle, np.float64).ravel().tolist())
  yaw = float(np.arctan2(world_from_vehicle[1, 0], world_from_vehicle[0, 0]))
  for laser in LASERS:
    calib = frame.context.laser_calibrations.add()
    calib.name = laser
    ext_yaw, ext_t = EXTRINSICS[laser]
    calib.extrinsic.transform.extend(yaw_pose(ext_yaw, ext_t).ravel().tolist())
    if laser == dataset_pb2.LaserName.TOP and images is None:
      calib.beam_inclinations.extend(TOP_INCLINATIONS)
    calib.beam_inclination_min, calib.beam_inclination_max = INCLINATION_RANGE
    entry = frame.lasers.add()
    entry.name = laser
    if not with_laser_data:
      continue
    for index, ri in enumerate((entry.ri_return1, entry.ri_return2)):
      if images is not None:
        dense = images[laser][index]
        image = np.zeros(dense.shape[:2] + (4,), np.float32)
        image[..., :2] = dense
      else:
        image = np.zeros((H, W, 4), np.float32)
        image[..., 0] = -1.0  # no return
        for l, r_index, row, col, rng, intensity in returns:
          if l == laser and r_index == index:
            image[row, col] = (rng, intensity, 0.0, 0.0)
      h, w = image.shape[:2]
      ri.range_image_compressed = _matrix(dataset_pb2.MatrixFloat, image)
      ri.camera_projection_compressed = _matrix(
          dataset_pb2.MatrixInt32, np.zeros((h, w, 6), np.int32)
      )
      if laser == dataset_pb2.LaserName.TOP and index == 0:
        # Every pixel captured at the frame's pose: (roll, pitch, yaw, x, y, z).
        pose = np.zeros((h, w, 6), np.float32)
        pose[..., 2] = yaw
        pose[..., 3:] = world_from_vehicle[:3, 3]
        ri.range_image_pose_compressed = _matrix(dataset_pb2.MatrixFloat, pose)
  for x, y, z, l, w, h, heading, track, points, level, kind in boxes:
    label = frame.laser_labels.add()
    label.box.center_x, label.box.center_y, label.box.center_z = x, y, z
    label.box.length, label.box.width, label.box.height, label.box.heading = l, w, h, heading
    label.id = track
    label.num_lidar_points_in_box = points
    label.detection_difficulty_level = level
    label.type = kind
  return frame


VEHICLE = label_pb2.Label.TYPE_VEHICLE
PEDESTRIAN = label_pb2.Label.TYPE_PEDESTRIAN


def static_box_in(vehicle_from_world: np.ndarray, world_box, track, points=50, level=0):
  """A box fixed in the world, (x, y, z, l, w, h, heading_world), seen from a vehicle pose."""
  centre = vehicle_from_world[:3, :3] @ np.array(world_box[:3]) + vehicle_from_world[:3, 3]
  yaw = np.arctan2(vehicle_from_world[1, 0], vehicle_from_world[0, 0])
  return (*centre, *world_box[3:6], world_box[6] + yaw, track, points, level, VEHICLE)


def segment_frames(segment: str, num_frames: int, hz: float = 10.0, seed: int = 0):
  """A segment: the ego drives forward at 10 m/s while turning 0.05 rad per frame, past two
  parked cars and a pedestrian; every frame has returns on every lidar and both returns.

  Returns:
    (frames, poses): the Frames and their [4, 4] world_from_vehicle poses.
  """
  rng = np.random.default_rng(seed)
  frames, poses = [], []
  for i in range(num_frames):
    t = i / hz
    pose = yaw_pose(0.05 * i, (100.0 + 10.0 * t, 50.0, 0.3))
    inv = np.linalg.inv(pose)
    returns = []
    for laser in LASERS:
      for index in (0, 1):
        for _ in range(3):
          returns.append(
              (
                  laser,
                  index,
                  int(rng.integers(H)),
                  int(rng.integers(W)),
                  float(rng.uniform(3, 20)),
                  float(rng.uniform(0, 2)),
              )
          )
    boxes = [
        static_box_in(inv, (115.0, 52.0, 0.9, 4.5, 2.0, 1.6, 0.2), 'car_a', points=40),
        static_box_in(inv, (108.0, 46.0, 0.9, 4.2, 1.9, 1.5, -1.0), 'car_b', points=3),
        (3.0, -2.0, 0.9, 0.8, 0.8, 1.8, 0.0, 'ped', 20, 0, PEDESTRIAN),
    ]
    frames.append(make_frame(segment, 1_000_000 + round(t * 1e6), pose, returns, boxes))
    poses.append(pose)
  return frames, poses


def write_segment(path: str, frames) -> str:
  """Writes Frames as a segment TFRecord (the raw file format)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  with tf.io.TFRecordWriter(path) as writer:
    for f in frames:
      writer.write(f.SerializeToString())
  return path


def build_raw_dir(root, num_segments=(2, 1), num_frames=6) -> str:
  """A manual_dir in Waymo's layout: training/ and validation/ segment files."""
  import os  # pylint: disable=g-import-not-at-top

  for split, n in zip(('training', 'validation'), num_segments):
    os.makedirs(os.path.join(root, split), exist_ok=True)
    for s in range(n):
      name = f'{split}_{s:02d}'
      frames, _ = segment_frames(name, num_frames, seed=100 * len(split) + s)
      write_segment(
          os.path.join(root, split, f'segment-{name}_with_camera_labels.tfrecord'), frames
      )
  return str(root)


def dense_segment(segment: str, num_frames: int, size=(64, 512), fill=0.5, seed=0, hz=10.0):
  """A segment of benchmark-sized frames: every lidar (both returns) an h x w range image,
  `fill` of its pixels with a return at 2-75 m (64 x 512 at 0.5: ~164k points a frame, about a
  real Waymo frame's), the ego driving at 10 m/s; boxes as `segment_frames`."""
  rng = np.random.default_rng(seed)
  frames = []
  for i in range(num_frames):
    t = i / hz
    pose = yaw_pose(0.05 * i, (100.0 + 10.0 * t, 50.0, 0.3))
    inv = np.linalg.inv(pose)
    images = {}
    for laser in LASERS:
      pair = []
      for _ in range(2):
        img = np.stack([rng.uniform(2.0, 75.0, size), rng.uniform(0.0, 2.0, size)], axis=-1).astype(
            np.float32
        )
        img[rng.random(size) > fill, 0] = -1.0
        pair.append(img)
      images[laser] = tuple(pair)
    boxes = [static_box_in(inv, (115.0, 52.0, 0.9, 4.5, 2.0, 1.6, 0.2), 'car_a', points=40)]
    frames.append(make_frame(segment, 1_000_000 + round(t * 1e6), pose, boxes=boxes, images=images))
  return frames
