"""KITTI raw calibration files and velodyne ground-truth depth (numpy, no TF).

The raw release keeps one calibration folder per day (`<root>/2011_09_26/`) with
`calib_cam_to_cam.txt` (per camera: S, K, D, R, T, S_rect, R_rect, P_rect) and
`calib_velo_to_cam.txt` (R, T: velodyne -> unrectified camera 0). Every value is a
whitespace-separated list of floats after `key:`.

Ground-truth depth follows the standard KITTI Eigen protocol (the devkit's
projection, which monodepth2's `generate_depth_map` reproduces): a velodyne point
X_velo (x forward, y left, z up, metres) lands in the rectified colour camera 2 at

  [u z, v z, z]^T = P_rect_02 R_rect_00 [R | T]_velo_to_cam [X_velo; 1]        (1)

where R_rect_00 is padded to 4x4 and P_rect_02 is 3x4 (its last column holds the
baseline offset of camera 2 against the reference camera 0). The depth stored at a
pixel is the z of Eq. (1), not the ray length. Points behind the velodyne
(x < 0) are dropped first (the devkit's approximation of "behind the image plane").
"""

import dataclasses
import os
from typing import Dict

import numpy as np

CAM_TO_CAM = 'calib_cam_to_cam.txt'
VELO_TO_CAM = 'calib_velo_to_cam.txt'


class CalibrationError(ValueError):
  """A calibration file is missing, unreadable or lacks an expected entry."""


def read_calib_file(path: str) -> Dict[str, np.ndarray]:
  """Parses a KITTI `key: v1 v2 ...` calibration file.

  Non-numeric entries (e.g. `calib_time: 09-Jan-2012 13:57:47`) are skipped; numeric
  ones become float64 vectors.

  Args:
    path: the file.

  Returns:
    key -> float64 [N] vector.

  Raises:
    CalibrationError: the file is missing, or a line has no `key:`.
  """
  if not os.path.isfile(path):
    raise CalibrationError(f'calibration file {path} does not exist')
  data = {}
  with open(path, 'r') as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      if ':' not in line:
        raise CalibrationError(
            f'{path}:{line_no}: expected "key: numbers", got {line.strip()[:60]!r}'
        )
      key, value = line.split(':', 1)
      try:
        data[key.strip()] = np.array([float(v) for v in value.split()], np.float64)
      except ValueError:
        continue  # A date or other text entry: not a calibration value.
  return data


def _matrix(calib: Dict[str, np.ndarray], key: str, shape, path: str) -> np.ndarray:
  """calib[key] reshaped to `shape`, or a CalibrationError naming the file and key."""
  if key not in calib:
    raise CalibrationError(f'{path}: no numeric entry {key!r} (expected {np.prod(shape)} numbers)')
  value = calib[key]
  if value.size != int(np.prod(shape)) or not np.all(np.isfinite(value)):
    raise CalibrationError(
        f'{path}: entry {key!r} has {value.size} values, expected {int(np.prod(shape))} finite '
        f'numbers ({"x".join(map(str, shape))})'
    )
  return value.reshape(shape)


@dataclasses.dataclass(frozen=True)
class KittiCalibration:
  """The calibration of one KITTI raw day for the left colour camera (camera 2).

  Attributes:
    p_rect: [3, 4] float64, pixels: P_rect_02, rectified camera 2's projection of points in
      rectified camera 0's frame (metres).
    r_rect: [3, 3] float64: R_rect_00, unrectified camera 0 -> rectified camera 0 rotation.
    velo_to_cam: [4, 4] float64, metres: velodyne -> unrectified camera 0 rigid transform.
    image_size: (height, width) of the rectified images (S_rect_02, stored as width height).
  """

  p_rect: np.ndarray
  r_rect: np.ndarray
  velo_to_cam: np.ndarray
  image_size: tuple

  @property
  def intrinsics(self) -> np.ndarray:
    """[3, 3] float64, pixels: K of rectified camera 2 (the left 3x3 block of P_rect_02)."""
    return self.p_rect[:, :3].copy()

  @property
  def velo_to_image(self) -> np.ndarray:
    """[3, 4] float64: Eq. (1)'s P_rect_02 R_rect_00 [R | T], velodyne -> (u z, v z, z)."""
    r_rect = np.eye(4)
    r_rect[:3, :3] = self.r_rect
    return self.p_rect @ r_rect @ self.velo_to_cam


def load_calibration(calib_dir: str, camera: int = 2) -> KittiCalibration:
  """Reads a day's calibration folder for one rectified camera.

  Args:
    calib_dir: the day folder holding calib_cam_to_cam.txt and calib_velo_to_cam.txt.
    camera: rectified camera index (2: left colour).

  Raises:
    CalibrationError: a file is missing or an entry is absent or malformed (named).
  """
  cam_path = os.path.join(calib_dir, CAM_TO_CAM)
  velo_path = os.path.join(calib_dir, VELO_TO_CAM)
  cam = read_calib_file(cam_path)
  velo = read_calib_file(velo_path)
  p_rect = _matrix(cam, f'P_rect_0{camera}', (3, 4), cam_path)
  r_rect = _matrix(cam, 'R_rect_00', (3, 3), cam_path)
  size = _matrix(cam, f'S_rect_0{camera}', (2,), cam_path)
  width, height = int(round(size[0])), int(round(size[1]))
  if width <= 0 or height <= 0:
    raise CalibrationError(f'{cam_path}: S_rect_0{camera} must be a positive width height')
  velo_to_cam = np.eye(4)
  velo_to_cam[:3, :3] = _matrix(velo, 'R', (3, 3), velo_path)
  velo_to_cam[:3, 3] = _matrix(velo, 'T', (3,), velo_path)
  if p_rect[0, 0] <= 0 or p_rect[1, 1] <= 0:
    raise CalibrationError(f'{cam_path}: P_rect_0{camera} must have positive focal lengths')
  return KittiCalibration(
      p_rect=p_rect, r_rect=r_rect, velo_to_cam=velo_to_cam, image_size=(height, width)
  )


def read_velodyne(path: str) -> np.ndarray:
  """Reads a velodyne scan: [N, 4] float32 (x forward, y left, z up in metres, reflectance).

  Raises:
    ValueError: the file is missing or its size is not a multiple of 16 bytes (4 float32).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'velodyne scan {path} does not exist')
  size = os.path.getsize(path)
  if size % 16:
    raise ValueError(
        f'velodyne scan {path} has {size} bytes, expected a multiple of 16 (float32 x, y, z, '
        'reflectance per point): truncated?'
    )
  return np.fromfile(path, dtype=np.float32).reshape(-1, 4)


def project_velodyne(points: np.ndarray, calib: KittiCalibration, image_size=None) -> np.ndarray:
  """Sparse depth map of a velodyne scan in rectified camera 2 (Eq. 1), as the devkit makes it.

  Pixel indices follow the KITTI devkit (and monodepth2's export of the Eigen ground truth):
  column round(u) - 1 and row round(v) - 1, so the maps equal the standard ground truth that
  published numbers are computed on. (In this project's convention, pixel centres at integer
  (u, v), that is a shift of one pixel left and up; at 1242 px wide it is below the metric's
  sensitivity, and matching the benchmark's ground truth matters more.) Where several points
  land in one pixel the nearest is kept.

  Args:
    points: [N, 4] or [N, 3] float, velodyne frame (x forward, y left, z up), metres.
    calib: the day's calibration.
    image_size: (height, width) of the map; default the calibration's S_rect_02.

  Returns:
    [H, W] float32, metres (camera z); 0 where no point landed.
  """
  height, width = image_size or calib.image_size
  xyz = np.asarray(points, np.float64)[:, :3]
  xyz = xyz[xyz[:, 0] >= 0]
  homogeneous = np.concatenate([xyz, np.ones((xyz.shape[0], 1))], axis=1)
  uvz = homogeneous @ calib.velo_to_image.T
  z = uvz[:, 2]
  in_front = z > 0
  uvz, z = uvz[in_front], z[in_front]
  col = np.round(uvz[:, 0] / z).astype(np.int64) - 1
  row = np.round(uvz[:, 1] / z).astype(np.int64) - 1
  inside = (col >= 0) & (row >= 0) & (col < width) & (row < height)
  col, row, z = col[inside], row[inside], z[inside]
  depth = np.full((height, width), np.inf)
  # Nearest point per pixel: an unbuffered minimum over duplicate indices.
  np.minimum.at(depth, (row, col), z)
  depth[~np.isfinite(depth)] = 0.0
  return depth.astype(np.float32)
