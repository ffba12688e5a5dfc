"""Rigid transforms: axis-angle rotations and 4x4 homogeneous poses.

Poses are named by what they map: `cam2_from_cam1` takes a point in frame 1's
camera coordinates to frame 2's, X2 = R X1 + t. Composition reads right to
left: `compose(a_from_b, b_from_c)` is `a_from_c`.

Axis-angle vectors r have direction = rotation axis (unit n) and norm = angle
theta in radians (right-hand rule). All functions are pure TensorFlow, float32,
differentiable (including at zero rotation), and accept arbitrary leading
batch dimensions unless stated otherwise.
"""

import tensorflow as tf

# Below this squared angle (rad^2) the Rodrigues coefficients are evaluated by
# their Taylor series. At theta = 1e-2 the first dropped terms are ~1e-16 so
# the series is exact in float32, whereas sin/cos-based formulas already lose
# digits there.
_SMALL_ANGLE_SQ = 1e-4
# sin(theta) below which matrix_to_axis_angle uses series / symmetric-part
# formulas instead of dividing by sin(theta).
_SMALL_SIN = 1e-2


def _skew(vector):
  """[..., 3] -> [..., 3, 3] cross-product matrix: skew(a) b = a x b."""
  x, y, z = tf.unstack(vector, axis=-1)
  zero = tf.zeros_like(x)
  return tf.stack(
      [
          tf.stack([zero, -z, y], axis=-1),
          tf.stack([z, zero, -x], axis=-1),
          tf.stack([-y, x, zero], axis=-1),
      ],
      axis=-2,
  )


def axis_angle_to_matrix(rotation):
  """Rodrigues' formula, stable and differentiable at zero.

  With K = skew(r) (r not normalised) and theta = |r|:
    R = I + (sin(theta) / theta) K + ((1 - cos(theta)) / theta^2) K^2.
  The second coefficient is written 2 sin^2(theta/2) / theta^2, which avoids
  the cancellation in 1 - cos. For theta^2 < 1e-4 both coefficients use
  their Taylor series, A = 1 - t/6 + t^2/120 and B = 1/2 - t/24 + t^2/720
  with t = theta^2, which are polynomials in r and hence have finite
  gradients at r = 0 (where dR/dr = skew(dr), the exact derivative). The
  non-series branch sees a dummy angle there, so tf.where never mixes a NaN
  gradient into the result.

  Args:
    rotation: [..., 3] float32, radians: axis-angle vector.

  Returns:
    [..., 3, 3] float32 rotation matrix.
  """
  rotation = tf.convert_to_tensor(rotation, tf.float32)
  theta_sq = tf.reduce_sum(tf.square(rotation), axis=-1)  # [...]
  small = theta_sq < _SMALL_ANGLE_SQ
  safe_theta_sq = tf.where(small, tf.ones_like(theta_sq), theta_sq)
  safe_theta = tf.sqrt(safe_theta_sq)
  coeff_a = tf.where(
      small, 1.0 - theta_sq / 6.0 + tf.square(theta_sq) / 120.0, tf.sin(safe_theta) / safe_theta
  )
  coeff_b = tf.where(
      small,
      0.5 - theta_sq / 24.0 + tf.square(theta_sq) / 720.0,
      2.0 * tf.square(tf.sin(0.5 * safe_theta)) / safe_theta_sq,
  )
  k = _skew(rotation)
  eye = tf.eye(3, dtype=tf.float32)
  return (
      eye
      + coeff_a[..., tf.newaxis, tf.newaxis] * k
      + coeff_b[..., tf.newaxis, tf.newaxis] * tf.linalg.matmul(k, k)
  )


def matrix_to_axis_angle(matrix):
  """Inverse of `axis_angle_to_matrix` for angles in [0, pi).

  From Rodrigues, R - R^T = 2 sin(theta) skew(n) and trace(R) = 1 + 2 cos
  theta. So w = (R21 - R12, R02 - R20, R10 - R01) = 2 sin(theta) n and
  theta = atan2(|w| / 2, (trace - 1) / 2) (atan2 is accurate everywhere,
  unlike acos near 0 and pi). Three regimes:

  * generic: r = w * theta / (2 sin theta);
  * small angle (sin < 1e-2, cos > 0): theta / (2 sin theta) =
    1/2 + theta^2/12 + O(theta^4) ~ 1/2 + sin^2/12, a polynomial in R with a
    finite gradient at R = I;
  * near pi (sin < 1e-2, cos < 0), where w carries no precision: the
    symmetric part gives (R + R^T)/2 - cos(theta) I = (1 - cos theta) n n^T;
    n is read from its column with the largest diagonal, its sign is taken
    to agree with w. At exactly pi, r and -r are the same rotation and
    either may be returned.

  Args:
    matrix: [..., 3, 3] float32 rotation matrix.

  Returns:
    [..., 3] float32, radians: axis-angle vector with norm in [0, pi].
  """
  matrix = tf.convert_to_tensor(matrix, tf.float32)
  w = tf.stack(
      [
          matrix[..., 2, 1] - matrix[..., 1, 2],
          matrix[..., 0, 2] - matrix[..., 2, 0],
          matrix[..., 1, 0] - matrix[..., 0, 1],
      ],
      axis=-1,
  )
  sin_sq = 0.25 * tf.reduce_sum(tf.square(w), axis=-1)  # sin^2(theta)
  cos = 0.5 * (tf.linalg.trace(matrix) - 1.0)
  small_sin = sin_sq < _SMALL_SIN**2
  small_angle = tf.logical_and(small_sin, cos > 0.0)
  near_pi = tf.logical_and(small_sin, cos <= 0.0)

  # Safe sin: the sqrt only sees values bounded away from zero.
  sin = tf.sqrt(tf.where(small_sin, tf.ones_like(sin_sq), sin_sq))
  theta = tf.atan2(tf.where(small_sin, tf.zeros_like(sin), sin), cos)
  # The near-pi angle: theta = pi - asin(sin); atan2 with the true sin gives
  # the same value but would need the unsafe sqrt, so use the series
  # asin(s) ~ s + s^3/6 (exact to ~1e-11 for s < 1e-2) on sin_sq.
  sin_unsafe_small = tf.sqrt(tf.maximum(sin_sq, 1e-20))
  theta_pi = tf.constant(3.141592653589793, tf.float32) - (sin_unsafe_small * (1.0 + sin_sq / 6.0))
  theta = tf.where(near_pi, theta_pi, theta)

  generic_factor = theta / (2.0 * sin)
  small_factor = 0.5 + sin_sq / 12.0
  factor = tf.where(small_angle, small_factor, generic_factor)
  r_regular = w * factor[..., tf.newaxis]

  # Near-pi branch.
  sym = 0.5 * (matrix + tf.linalg.matrix_transpose(matrix))
  outer = (sym - cos[..., tf.newaxis, tf.newaxis] * tf.eye(3)) / tf.maximum(1.0 - cos, 1e-6)[
      ..., tf.newaxis, tf.newaxis
  ]  # ~ n n^T
  diag = tf.linalg.diag_part(outer)  # [..., 3] = n_i^2
  best = tf.argmax(diag, axis=-1)
  column = tf.gather(outer, best, axis=-1, batch_dims=outer.shape.rank - 2)
  best_diag = tf.gather(diag, best, axis=-1, batch_dims=diag.shape.rank - 1)
  axis = column / tf.sqrt(tf.maximum(best_diag, 1e-12))[..., tf.newaxis]
  sign = tf.where(tf.reduce_sum(axis * w, axis=-1, keepdims=True) < 0.0, -1.0, 1.0)
  r_pi = sign * axis * theta[..., tf.newaxis]

  return tf.where(near_pi[..., tf.newaxis], r_pi, r_regular)


def make_transform(rotation_matrix, translation):
  """Builds a 4x4 homogeneous transform [[R, t], [0, 1]].

  Args:
    rotation_matrix: [..., 3, 3] float32 rotation `a_from_b`.
    translation: [..., 3] float32, metres: translation `a_from_b` (the
      origin of frame b expressed in frame a).

  Returns:
    [..., 4, 4] float32 `a_from_b`.
  """
  rotation_matrix = tf.convert_to_tensor(rotation_matrix, tf.float32)
  translation = tf.convert_to_tensor(translation, tf.float32)
  top = tf.concat([rotation_matrix, translation[..., tf.newaxis]], axis=-1)
  bottom = tf.constant([0.0, 0.0, 0.0, 1.0], tf.float32)
  bottom = tf.broadcast_to(bottom, tf.concat([tf.shape(top)[:-2], [1, 4]], axis=0))
  return tf.concat([top, bottom], axis=-2)


def rotation_of(transform):
  """[..., 4, 4] -> [..., 3, 3] rotation block."""
  return transform[..., :3, :3]


def translation_of(transform):
  """[..., 4, 4] -> [..., 3] translation column (metres)."""
  return transform[..., :3, 3]


def invert_transform(transform):
  """Inverts a rigid transform without a general matrix inverse.

  (R, t)^-1 = (R^T, -R^T t).

  Args:
    transform: [..., 4, 4] float32 `a_from_b`.

  Returns:
    [..., 4, 4] float32 `b_from_a`.
  """
  transform = tf.convert_to_tensor(transform, tf.float32)
  rotation_t = tf.linalg.matrix_transpose(rotation_of(transform))
  translation = -tf.linalg.matvec(rotation_t, translation_of(transform))
  return make_transform(rotation_t, translation)


def compose(a_from_b, b_from_c):
  """Chains two transforms.

  Args:
    a_from_b: [..., 4, 4] float32.
    b_from_c: [..., 4, 4] float32.

  Returns:
    [..., 4, 4] float32 `a_from_c` = a_from_b @ b_from_c.
  """
  return tf.linalg.matmul(
      tf.convert_to_tensor(a_from_b, tf.float32), tf.convert_to_tensor(b_from_c, tf.float32)
  )


def transform_points(a_from_b, points):
  """Applies a per-example rigid transform to a set of points.

  Args:
    a_from_b: [B, 4, 4] float32 transform.
    points: [B, ..., 3] float32, metres, in frame b (e.g. [B, N, 3] or
      [B, H, W, 3]).

  Returns:
    [B, ..., 3] float32, metres: the same points in frame a.
  """
  a_from_b = tf.convert_to_tensor(a_from_b, tf.float32)
  points = tf.convert_to_tensor(points, tf.float32)
  rank = points.shape.rank
  ones = tf.ones([rank - 2], tf.int32)
  rotation = tf.reshape(
      rotation_of(a_from_b), tf.concat([tf.shape(a_from_b)[:1], ones, [3, 3]], axis=0)
  )
  translation = tf.reshape(
      translation_of(a_from_b), tf.concat([tf.shape(a_from_b)[:1], ones, [3]], axis=0)
  )
  return tf.linalg.matvec(rotation, points) + translation
