"""Pinhole camera model: intrinsics, pixel grids, unprojection and projection.

Conventions (shared by the whole code base, see ARCHITECTURE.md):

* Camera frame: x right, y down, z forward (OpenCV).
* Pixels are (u, v) = (column, row) and pixel *centres* sit at integer
  coordinates, so the image of width W covers u in [-0.5, W - 0.5]. The ray
  through pixel (u, v) is K^-1 [u, v, 1]^T, whose z component is 1; hence a
  point at depth z on that ray is z * K^-1 [u, v, 1]^T.
* Depth is the z coordinate in metres (not the distance along the ray).
* Intrinsics are 3x3 matrices K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]] in
  pixels.

All functions are pure TensorFlow, float32, differentiable, and work under
`tf.function` with an unknown batch size.
"""

import math

import tensorflow as tf

# Smallest depth used as a divisor in `project`; points closer than this (or
# behind the camera) are projected as if they were at this depth so that the
# result stays finite. Callers must mask them using the returned z.
_MIN_DEPTH = 1e-6


def scale_intrinsics(intrinsics, scale_x, scale_y):
  """Rescales intrinsics for an image resized by (scale_x, scale_y).

  With pixel centres at integer coordinates, the image of width W spans
  u in [-0.5, W - 0.5]. Resizing to width W' = W * scale_x maps that span
  onto [-0.5, W' - 0.5], i.e. the affine map u' = (u + 0.5) * scale_x - 0.5
  (likewise for v with scale_y). Applying it to u = fx * x/z + s * y/z + cx
  gives fx' = fx * sx, s' = s * sx, cx' = (cx + 0.5) * sx - 0.5, and for the
  second row fy' = fy * sy, cy' = (cy + 0.5) * sy - 0.5. This is K' = S K with
  S = [[sx, 0, 0.5 sx - 0.5], [0, sy, 0.5 sy - 0.5], [0, 0, 1]].

  Args:
    intrinsics: [..., 3, 3] float32, pixels: camera matrix K of the original
      image.
    scale_x: float or float32 tensor broadcastable to intrinsics' leading
      dims [...]: new width / old width.
    scale_y: float or float32 tensor broadcastable to [...]: new height / old
      height.

  Returns:
    [..., 3, 3] float32, pixels: camera matrix of the resized image.
  """
  intrinsics = tf.convert_to_tensor(intrinsics, tf.float32)
  sx = tf.convert_to_tensor(scale_x, tf.float32)
  sy = tf.convert_to_tensor(scale_y, tf.float32)
  # Broadcast the scales against the leading dims of K.
  shape = tf.broadcast_dynamic_shape(
      tf.broadcast_dynamic_shape(tf.shape(sx), tf.shape(sy)), tf.shape(intrinsics)[:-2]
  )
  sx = tf.broadcast_to(sx, shape)
  sy = tf.broadcast_to(sy, shape)
  zero = tf.zeros_like(sx)
  one = tf.ones_like(sx)
  scale = tf.stack(
      [
          tf.stack([sx, zero, 0.5 * sx - 0.5], axis=-1),
          tf.stack([zero, sy, 0.5 * sy - 0.5], axis=-1),
          tf.stack([zero, zero, one], axis=-1),
      ],
      axis=-2,
  )
  return tf.linalg.matmul(scale, intrinsics)


def intrinsics_from_fov(height, width, horizontal_fov_degrees):
  """Builds K for square pixels and a centred principal point.

  The horizontal field of view spans the full image, whose outer pixel edges
  are at u = -0.5 and u = W - 0.5, i.e. W / 2 pixels either side of the
  principal point cx = (W - 1) / 2. Hence tan(fov / 2) = (W / 2) / f, so
  f = W / (2 tan(fov / 2)); fy = fx (square pixels) and cy = (H - 1) / 2.

  Args:
    height: int, image height H in pixels.
    width: int, image width W in pixels.
    horizontal_fov_degrees: float, full horizontal field of view in degrees.

  Returns:
    [3, 3] float32, pixels: the camera matrix K.
  """
  height = tf.cast(height, tf.float32)
  width = tf.cast(width, tf.float32)
  half_fov = tf.cast(horizontal_fov_degrees, tf.float32) * (math.pi / 360.0)
  focal = width / (2.0 * tf.tan(half_fov))
  cx = (width - 1.0) / 2.0
  cy = (height - 1.0) / 2.0
  zero = tf.zeros_like(focal)
  one = tf.ones_like(focal)
  return tf.stack(
      [
          tf.stack([focal, zero, cx]),
          tf.stack([zero, focal, cy]),
          tf.stack([zero, zero, one]),
      ]
  )


def pixel_grid(height, width):
  """Homogeneous pixel coordinates of every pixel centre.

  Args:
    height: int or scalar int32 tensor, H.
    width: int or scalar int32 tensor, W.

  Returns:
    [H, W, 3] float32: grid[v, u] = (u, v, 1), with u the column and v the
    row index (pixel centres at integer coordinates).
  """
  u = tf.range(tf.cast(width, tf.float32), dtype=tf.float32)
  v = tf.range(tf.cast(height, tf.float32), dtype=tf.float32)
  uu, vv = tf.meshgrid(u, v, indexing='xy')  # Both [H, W].
  return tf.stack([uu, vv, tf.ones_like(uu)], axis=-1)


def _expand_intrinsics(matrix, rank):
  """Reshapes [B, 3, 3] to [B, 1, ..., 1, 3, 3] for rank-`rank` points."""
  new_shape = tf.concat([tf.shape(matrix)[:1], tf.ones([rank - 2], tf.int32), [3, 3]], axis=0)
  return tf.reshape(matrix, new_shape)


def unproject(depth, intrinsics):
  """Lifts a depth map to 3D points in the camera frame.

  X(u, v) = depth(u, v) * K^-1 [u, v, 1]^T (depth is z, and the ray has z=1).

  Args:
    depth: [B, H, W, 1] float32, metres, z in the camera frame.
    intrinsics: [B, 3, 3] float32, pixels: camera matrix K.

  Returns:
    [B, H, W, 3] float32, metres, camera frame: the point seen at each pixel.
  """
  depth = tf.convert_to_tensor(depth, tf.float32)
  intrinsics = tf.convert_to_tensor(intrinsics, tf.float32)
  shape = tf.shape(depth)
  grid = pixel_grid(shape[1], shape[2])  # [H, W, 3]
  inv_k = tf.linalg.inv(intrinsics)[:, tf.newaxis, tf.newaxis]  # [B,1,1,3,3]
  rays = tf.linalg.matvec(inv_k, grid[tf.newaxis])  # [B, H, W, 3]
  return rays * depth


def project(points, intrinsics):
  """Projects camera-frame points to pixel coordinates.

  (u, v) = (K X)_{xy} / (K X)_z = (K X)_{xy} / z. The divisor is clipped to
  at least 1e-6 so points at or behind the camera give large but finite
  pixel coordinates (never inf/NaN); the unclipped z is returned so callers
  can mask them (z <= 0).

  Args:
    points: [B, ..., 3] float32, metres, camera frame (e.g. [B, H, W, 3] or
      [B, N, 3]).
    intrinsics: [B, 3, 3] float32, pixels: camera matrix K.

  Returns:
    pixels: [B, ..., 2] float32, pixel coordinates (u, v).
    z: [B, ..., 1] float32, metres: depth (camera-frame z) of each point,
      not clipped.
  """
  points = tf.convert_to_tensor(points, tf.float32)
  intrinsics = tf.convert_to_tensor(intrinsics, tf.float32)
  k = _expand_intrinsics(intrinsics, points.shape.rank)
  homogeneous = tf.linalg.matvec(k, points)  # [B, ..., 3]
  z = points[..., 2:3]
  # K's last row is (0, 0, 1), so homogeneous[..., 2] == z exactly; divide by
  # the clipped z directly so the guard also holds for the gradient.
  safe_z = tf.maximum(z, _MIN_DEPTH)
  pixels = homogeneous[..., :2] / safe_z
  return pixels, z
