"""SceneNet RGB-D camera model: poses from (camera, lookat), intrinsics, ray depth -> z-depth.

What the published code does (pySceneNetRGBD, camera_pose_and_intrinsics_example.py and
calculate_surface_normals.py), restated in our conventions:

* Pose. A view's ground-truth pose is the midpoint of its shutter-open and shutter-close
  poses: camera centre c and lookat point l are each averaged (interpolation at alpha = 0.5).
  With world up u = (0, 1, 0) the camera axes, as rows of camera_from_world's rotation, are
      z = (l - c) / |l - c|               (forward, the optical axis)
      x = (z x u) / |z x u|               (right)
      y = -(x x z) / |x x z| = z x x      (down: z x (z x u) = -u_perp, minus the up vector)
  and camera_from_world = [R | -R c]. Rows x, y, z form a right-handed frame (x x y = z), and
  the published projection is u = fx X/Z + cx, v = fy Y/Z + cy on these coordinates, so the
  camera frame is already ours (OpenCV: x right, y down, z forward); no axis flip is needed.
  The pose stored per clip is its inverse, world_from_camera = [R^T | c].
* Intrinsics. 60 deg horizontal and 45 deg vertical field of view (the paper's 40 deg vertical
  is a typo, says the published README) at any W x H: fx = (W / 2) / tan(30 deg),
  fy = (H / 2) / tan(22.5 deg); at 320 x 240, fx = 277.128, fy = 289.706. The published ray of
  pixel index (i, j) passes through ((i + 0.5) / W * 2 - 1) tan(hfov / 2) (so its K has
  cx = W / 2 in the pixel-corner convention); with pixel centres at integer coordinates (ours)
  that is cx = W / 2 - 0.5, cy = H / 2 - 0.5 (159.5, 119.5 at 320 x 240).
* Depth. The depth PNGs hold the Euclidean distance from the camera centre to the surface
  along the pixel's ray, in millimetres (the published README: "euclidean ray length";
  calculate_surface_normals.py multiplies it by the *normalised* ray). Our depth is z, so
  z = r / |K^-1 (u, v, 1)| = r / sqrt(1 + ((u - cx) / fx)^2 + ((v - cy) / fy)^2). 0 stays 0
  (no surface: a ray through a window).
"""

from typing import Optional

import numpy as np

HORIZONTAL_FOV_DEGREES = 60.0
VERTICAL_FOV_DEGREES = 45.0
WORLD_UP = (0.0, 1.0, 0.0)
RAW_SIZE = (240, 320)  # (H, W) of the published renders.
DEPTH_UNITS_PER_METRE = 1000.0


def intrinsics(
    height: int = RAW_SIZE[0],
    width: int = RAW_SIZE[1],
    horizontal_fov_degrees: float = HORIZONTAL_FOV_DEGREES,
    vertical_fov_degrees: float = VERTICAL_FOV_DEGREES,
) -> np.ndarray:
  """[3, 3] float64 K of a SceneNet render of height x width pixels (pixel-centre convention)."""
  fx = (width / 2.0) / np.tan(np.radians(horizontal_fov_degrees) / 2.0)
  fy = (height / 2.0) / np.tan(np.radians(vertical_fov_degrees) / 2.0)
  return np.array([[fx, 0.0, width / 2.0 - 0.5], [0.0, fy, height / 2.0 - 0.5], [0.0, 0.0, 1.0]])


def camera_from_world(camera, lookat, up=WORLD_UP) -> Optional[np.ndarray]:
  """[4, 4] float64 camera_from_world of a camera at `camera` looking at `lookat` (see above).

  Args:
    camera: (x, y, z) camera centre, world frame, metres.
    lookat: (x, y, z) a point on the optical axis in front of the camera, world frame.
    up: the world up vector.

  Returns:
    The transform, or None when the pose is not a pose: a non-finite coordinate, lookat equal
    to camera, or an optical axis parallel to the up vector.
  """
  c = np.asarray(camera, np.float64)
  forward = np.asarray(lookat, np.float64) - c
  if not (np.all(np.isfinite(c)) and np.all(np.isfinite(forward))):
    return None
  norm = np.linalg.norm(forward)
  if norm < 1e-9:
    return None
  z = forward / norm
  right = np.cross(z, np.asarray(up, np.float64))
  if np.linalg.norm(right) < 1e-9:
    return None
  x = right / np.linalg.norm(right)
  y = np.cross(z, x)  # = -(x x z), unit since z is orthogonal to x.
  m = np.eye(4)
  m[:3, :3] = np.stack([x, y, z])
  m[:3, 3] = -m[:3, :3] @ c
  return m


def world_from_camera(camera, lookat, up=WORLD_UP) -> Optional[np.ndarray]:
  """[4, 4] float64 camera-to-world pose ([R^T | c]), or None (see `camera_from_world`)."""
  m = camera_from_world(camera, lookat, up)
  if m is None:
    return None
  out = np.eye(4)
  out[:3, :3] = m[:3, :3].T
  out[:3, 3] = np.asarray(camera, np.float64)
  return out


def _xyz(position) -> np.ndarray:
  return np.array([position.x, position.y, position.z], np.float64)


def view_pose(view) -> Optional[np.ndarray]:
  """world_from_camera of a `scenenet.View`: the shutter-open/close midpoint, or None."""
  camera = 0.5 * (_xyz(view.shutter_open.camera) + _xyz(view.shutter_close.camera))
  lookat = 0.5 * (_xyz(view.shutter_open.lookat) + _xyz(view.shutter_close.lookat))
  return world_from_camera(camera, lookat)


def ray_depth_to_z(ray_depth: np.ndarray, k: np.ndarray) -> np.ndarray:
  """Distance along each pixel's ray -> z-depth (same units; 0 stays 0).

  Args:
    ray_depth: [H, W] float, Euclidean distance from the camera centre.
    k: [3, 3] intrinsics of that H x W image (pixel-centre convention).

  Returns:
    [H, W] float32 z = r / sqrt(1 + ((u - cx) / fx)^2 + ((v - cy) / fy)^2).
  """
  h, w = ray_depth.shape
  x = (np.arange(w, dtype=np.float64) - k[0, 2]) / k[0, 0]
  y = (np.arange(h, dtype=np.float64) - k[1, 2]) / k[1, 1]
  norm = np.sqrt(1.0 + x[None, :] ** 2 + y[:, None] ** 2)
  return (np.asarray(ray_depth, np.float64) / norm).astype(np.float32)


def z_to_ray_depth(z: np.ndarray, k: np.ndarray) -> np.ndarray:
  """Inverse of `ray_depth_to_z` (fixtures write ray depth): r = z |K^-1 (u, v, 1)|."""
  h, w = z.shape
  x = (np.arange(w, dtype=np.float64) - k[0, 2]) / k[0, 0]
  y = (np.arange(h, dtype=np.float64) - k[1, 2]) / k[1, 1]
  return np.asarray(z, np.float64) * np.sqrt(1.0 + x[None, :] ** 2 + y[:, None] ** 2)
