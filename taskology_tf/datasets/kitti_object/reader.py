"""KITTI object detection reader: velodyne .bin, calib/, label_2/ -> a one-frame sequence in the
velodyne (vehicle-like: x forward, y left, z up) frame, the format of inputs/point_clouds.py.

Labels (KITTI devkit readme): `type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y`,
with (x, y, z) the bottom centre of the box in rectified camera-2 coordinates (x right, y down, z
forward) and rotation_y the yaw about the camera's y axis (0 = facing camera x). To velodyne:

  centre_cam = (x, y - h / 2, z)                  (y is down: the centre is h / 2 above)
  centre_velo = Tr_velo_to_cam^-1 R0_rect^-1 centre_cam
  heading = -rotation_y - pi / 2                  (camera x = -velodyne y, camera z = velodyne x)

and the box is (x, y, z, l, w, h, heading) with l along the heading.
"""

import os
from typing import Dict, Sequence

import numpy as np

from taskology_tf.datasets.kitti_raw import calibration

VEHICLE_TYPES = ('Car',)


def velo_from_rect(calib_path: str) -> np.ndarray:
  """[4, 4] float64 transform from rectified camera coordinates to velodyne coordinates."""
  calib = calibration.read_calib_file(calib_path)
  for key, size in (('R0_rect', 9), ('Tr_velo_to_cam', 12)):
    if key not in calib or calib[key].size != size:
      raise calibration.CalibrationError(
          f'{calib_path}: entry {key!r} missing or not {size} numbers'
      )
  r0 = np.eye(4)
  r0[:3, :3] = calib['R0_rect'].reshape(3, 3)
  tr = np.eye(4)
  tr[:3] = calib['Tr_velo_to_cam'].reshape(3, 4)
  return np.linalg.inv(r0 @ tr)


def read_labels(label_path: str, velo_from_rect_: np.ndarray, types: Sequence[str] = VEHICLE_TYPES):
  """Boxes [K, 7] float32 in velodyne coordinates of the objects whose type is in `types`."""
  if not os.path.isfile(label_path):
    raise FileNotFoundError(f'KITTI label file {label_path} does not exist')
  boxes = []
  with open(label_path) as f:
    for line_no, line in enumerate(f, 1):
      parts = line.split()
      if not parts:
        continue
      if len(parts) < 15:
        raise ValueError(f'{label_path}:{line_no}: expected 15 fields, got {len(parts)}')
      if parts[0] not in types:
        continue
      h, w, l, x, y, z, ry = (float(v) for v in parts[8:15])
      centre = velo_from_rect_ @ np.array([x, y - h / 2, z, 1.0])
      heading = (-ry - np.pi / 2 + np.pi) % (2 * np.pi) - np.pi
      boxes.append([centre[0], centre[1], centre[2], l, w, h, heading])
  return np.array(boxes, np.float32).reshape(-1, 7)


def read_frame(root: str, frame_id: str, max_boxes: int = 64) -> Dict[str, np.ndarray]:
  """One KITTI object frame as a one-frame sequence (inputs/point_clouds.py's format).

  Args:
    root: directory with velodyne/, calib/ and label_2/.
    frame_id: e.g. '000001'.
    max_boxes: K, boxes padded to this many (more is an error naming the file).

  Returns:
    'points' [1, N, 4], 'points_valid' [1, N], 'gt_boxes' [1, K, 7], 'gt_valid' [1, K],
    'gt_track_ids' [1, K] (the box index: KITTI object frames have no tracks), 'gt_num_points'
    [1, K] and 'scene_seed' (the frame number).
  """
  points = calibration.read_velodyne(os.path.join(root, 'velodyne', f'{frame_id}.bin'))
  transform = velo_from_rect(os.path.join(root, 'calib', f'{frame_id}.txt'))
  label_path = os.path.join(root, 'label_2', f'{frame_id}.txt')
  boxes = read_labels(label_path, transform)
  if len(boxes) > max_boxes:
    raise ValueError(f'{label_path}: {len(boxes)} boxes exceed max_boxes = {max_boxes}')
  # Points in each box (for difficulty levels), with the same test as geometry/boxes.py.
  d = points[:, None, :3] - boxes[None, :, :3]
  c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
  inside = (
      (np.abs(d[..., 0] * c + d[..., 1] * s) <= boxes[:, 3] / 2)
      & (np.abs(-d[..., 0] * s + d[..., 1] * c) <= boxes[:, 4] / 2)
      & (np.abs(d[..., 2]) <= boxes[:, 5] / 2)
  )
  k = len(boxes)
  pad = lambda a, v: np.concatenate([a, np.full((max_boxes - k,) + a.shape[1:], v, a.dtype)])
  return {
      'points': points[None],
      'points_valid': np.ones((1, len(points)), bool),
      'gt_boxes': pad(boxes, 0.0)[None],
      'gt_valid': pad(np.ones(k, bool), False)[None],
      'gt_track_ids': pad(np.arange(k, dtype=np.int32), -1)[None],
      'gt_num_points': pad(inside.sum(0).astype(np.int32), 0)[None],
      'scene_seed': np.int64(int(frame_id)),
  }
