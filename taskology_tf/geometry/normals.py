"""Surface normals from depth maps.

Derivation (used by `depth_to_normals` and its tests)
------------------------------------------------------
Let r(u, v) = K^-1 [u, v, 1]^T be the ray through pixel (u, v) (r_z = 1) and
P(u, v) = z(u, v) r(u, v) the 3D point seen there.

*Plane.* If all points lie on one plane n . X = h, then for any two pixels
both P's satisfy the plane equation, so every difference P(a) - P(b) lies in
the plane. The central differences D_u = (P(u+1, v) - P(u-1, v)) / 2 and
D_v = (P(u, v+1) - P(u, v-1)) / 2 are therefore two (non-parallel) vectors in
the plane, and D_u x D_v is parallel to n *exactly*, even though z(u, v) is a
nonlinear (projective) function of the pixel. The same holds for the
one-sided differences produced by edge padding at the border, so for a planar
depth map every pixel gets the exact plane normal. For the plane
Z = aX + bY + c, n is parallel to (a, b, -1).

*Relation to depth derivatives and intrinsics.* In the continuum limit
D_u -> dP/du = z_u r + z r_u and D_v -> dP/dv = z_v r + z r_v with
r_u = K^-1 e_1, r_v = K^-1 e_2 (constant). Without skew and writing
x = (u - cx)/fx, y = (v - cy)/fy, so r = (x, y, 1):

    dP/du x dP/dv = (z / (fx fy)) * (-fx z_u, -fy z_v, z + x fx z_u + y fy z_v),

i.e. the normal is proportional to
(fx z_u, fy z_v, -(z + (u - cx) z_u + (v - cy) z_v)): the image gradient of
depth, scaled by the focal lengths, tilts the normal away from the optical
axis, and the principal point enters through (u - cx, v - cy).

*Orientation.* r . (dP/du x dP/dv) = z^2 r . (r_u x r_v) = z^2 / (fx fy) > 0
for any positive depth (the terms with r x r_v and r_u x r are orthogonal to
r). So the cross product always points away from the camera and its negation
faces it (n . ray < 0); we still flip by the sign of n . P so that finite
differences across depth discontinuities are oriented consistently.
"""

import tensorflow as tf

from taskology_tf.geometry import camera

_EPS_SQ = 1e-24


def safe_normalize(vectors, axis=-1):
  """Normalises vectors to unit length; zero vectors map to zero.

  Uses x / sqrt(max(|x|^2, eps)), whose gradient is finite (0 through the
  max) at x = 0, unlike tf.math.l2_normalize's sqrt at its epsilon.

  Args:
    vectors: [..., 3] float32 (any units).
    axis: the component axis.

  Returns:
    Same shape float32, unit vectors (or zeros).
  """
  norm_sq = tf.reduce_sum(tf.square(vectors), axis=axis, keepdims=True)
  return vectors * tf.math.rsqrt(tf.maximum(norm_sq, _EPS_SQ))


def depth_to_normals(depth, intrinsics):
  """Per-pixel unit normals from a depth map (see module docstring).

  Points are obtained with `camera.unproject`, edge-padded by one pixel,
  differenced centrally along u and v, and crossed:
  n = -normalize(dP/du x dP/dv), then flipped where needed so n . P < 0.

  Args:
    depth: [B, H, W, 1] float32, metres (camera-frame z).
    intrinsics: [B, 3, 3] float32, pixels: K.

  Returns:
    [B, H, W, 3] float32 unit normals in the camera frame, facing the
    camera (n . ray < 0).
  """
  points = camera.unproject(depth, intrinsics)  # [B, H, W, 3]
  padded = tf.pad(points, [[0, 0], [1, 1], [1, 1], [0, 0]], mode='SYMMETRIC')
  # SYMMETRIC padding by one repeats the edge row/column (edge padding).
  d_du = 0.5 * (padded[:, 1:-1, 2:, :] - padded[:, 1:-1, :-2, :])
  d_dv = 0.5 * (padded[:, 2:, 1:-1, :] - padded[:, :-2, 1:-1, :])
  normals = -tf.linalg.cross(d_du, d_dv)
  facing = tf.reduce_sum(normals * points, axis=-1, keepdims=True)
  normals = tf.where(facing > 0.0, -normals, normals)
  return safe_normalize(normals)
