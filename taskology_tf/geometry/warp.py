"""Rigid-plus-object-motion warping and differentiable bilinear resampling.

The warp is the paper's Sec. 3.2.1 relation between two frames,

    z' p' = K R K^-1 z p + K (m + T),

where p = (u, v, 1) is a pixel of frame 1 with depth z, (R, T) is
`cam2_from_cam1`, m is the 3D displacement of the (possibly moving) object
seen at p between the two frames, expressed in frame 2's camera frame, and
(p', z') is where that point appears in frame 2 and at which depth. In 3D:
X2 = R X1 + T + m with X1 = z K^-1 p.

Pure TensorFlow (no tensorflow-addons), float32, differentiable w.r.t. depth,
pose, object motion, image and sample positions; works under tf.function with
an unknown batch size.
"""

import tensorflow as tf

from taskology_tf.geometry import camera

# Pixels: how far outside [0, W - 1] x [0, H - 1] a sample may fall (through
# float rounding) and still count as valid; it is then clamped onto the edge.
_BORDER_TOLERANCE = 1e-3


def warp_pixels(depth, intrinsics, rotation, translation, object_motion=None):
  """Where each pixel of frame 1 lands in frame 2 (Sec. 3.2.1).

  Args:
    depth: [B, H, W, 1] float32, metres: frame 1's depth (camera-frame z).
    intrinsics: [B, 3, 3] float32, pixels: K, shared by both frames.
    rotation: [B, 3, 3] float32: rotation of `cam2_from_cam1`.
    translation: [B, 3] float32, metres: translation of `cam2_from_cam1`.
    object_motion: optional [B, H, W, 3] float32, metres: per-pixel object
      displacement m (already multiplied by the frame interval), indexed by
      frame-1 pixels and expressed in frame 2's camera frame, so that
      X2 = R X1 + T + m. None means a static scene.

  Returns:
    pixels: [B, H, W, 2] float32, (u, v) in frame 2 of each frame-1 pixel.
    warped_depth: [B, H, W, 1] float32, metres: z of the point in frame 2
      (z'); values <= 0 mean the point is behind frame 2's camera.
  """
  points1 = camera.unproject(depth, intrinsics)  # [B, H, W, 3], frame 1
  rotation = tf.convert_to_tensor(rotation, tf.float32)
  translation = tf.convert_to_tensor(translation, tf.float32)
  points2 = tf.linalg.matvec(rotation[:, tf.newaxis, tf.newaxis], points1)
  points2 += translation[:, tf.newaxis, tf.newaxis, :]
  if object_motion is not None:
    points2 += tf.convert_to_tensor(object_motion, tf.float32)
  return camera.project(points2, intrinsics)


def bilinear_sample(image, pixels):
  """Samples `image` at real-valued pixel positions with bilinear weights.

  Pixel centres are at integer coordinates, so `pixels` = (3, 2) reads
  image[:, 2, 3] exactly and (3.5, 2) averages columns 3 and 4. Positions
  inside [0, W - 1] x [0, H - 1] (with a 1e-3 pixel tolerance for rounding,
  clamped onto the edge) are valid: all four taps exist (at the far edges
  the weight of the missing tap is exactly 0). Elsewhere the output is 0 and
  `valid` is 0. Gradients flow to `image` (through the gathered taps)
  and to `pixels` (through the interpolation weights).

  Args:
    image: [B, H, W, C] float32: values to sample (any units).
    pixels: [B, H', W', 2] float32, pixels: (u, v) sample positions in
      `image`'s pixel coordinates. H', W' need not equal H, W.

  Returns:
    sampled: [B, H', W', C] float32, same units as `image`.
    valid: [B, H', W', 1] float32, 1.0 where the sample lies inside the
      image, else 0.0.
  """
  image = tf.convert_to_tensor(image, tf.float32)
  pixels = tf.convert_to_tensor(pixels, tf.float32)
  shape = tf.shape(image)
  batch, height, width = shape[0], shape[1], shape[2]
  channels = image.shape[-1] if image.shape[-1] is not None else shape[3]
  w_max = tf.cast(width - 1, tf.float32)
  h_max = tf.cast(height - 1, tf.float32)

  u = pixels[..., 0]
  v = pixels[..., 1]
  finite = tf.logical_and(tf.math.is_finite(u), tf.math.is_finite(v))
  # A small tolerance keeps border pixels valid when rounding in the warp
  # puts them at e.g. u = -1e-7 (an identity warp must stay fully valid).
  tol = _BORDER_TOLERANCE
  valid = tf.logical_and(
      finite,
      tf.logical_and(
          tf.logical_and(u >= -tol, u <= w_max + tol), tf.logical_and(v >= -tol, v <= h_max + tol)
      ),
  )
  # Clamp before floor/cast: huge (or NaN) coordinates from points near the
  # camera plane would otherwise overflow int32 when cast.
  u = tf.clip_by_value(tf.where(finite, u, tf.zeros_like(u)), 0.0, w_max)
  v = tf.clip_by_value(tf.where(finite, v, tf.zeros_like(v)), 0.0, h_max)
  u0 = tf.floor(u)
  v0 = tf.floor(v)
  # Interpolation weights carry the gradient w.r.t. pixels (floor has none).
  wu = u - u0
  wv = v - v0
  u0i = tf.cast(u0, tf.int32)
  v0i = tf.cast(v0, tf.int32)
  u1i = tf.minimum(u0i + 1, width - 1)
  v1i = tf.minimum(v0i + 1, height - 1)

  flat = tf.reshape(image, [batch, height * width, channels])
  out_shape = tf.shape(pixels)[:-1]

  def gather(vi, ui):
    index = tf.reshape(vi * width + ui, [batch, -1])
    taps = tf.gather(flat, index, batch_dims=1)  # [B, H'W', C]
    return tf.reshape(taps, tf.concat([out_shape, [channels]], axis=0))

  wu = wu[..., tf.newaxis]
  wv = wv[..., tf.newaxis]
  top = (1.0 - wu) * gather(v0i, u0i) + wu * gather(v0i, u1i)
  bottom = (1.0 - wu) * gather(v1i, u0i) + wu * gather(v1i, u1i)
  sampled = (1.0 - wv) * top + wv * bottom
  valid = tf.cast(valid, tf.float32)[..., tf.newaxis]
  return sampled * valid, valid


def inverse_warp(
    source_image,
    target_depth,
    intrinsics,
    source_from_target_rotation,
    source_from_target_translation,
    object_motion=None,
):
  """Reconstructs the target view by sampling the source view.

  Each target pixel is lifted with the target depth, moved into the source
  camera (Sec. 3.2.1 warp with `source_from_target`), projected, and the
  source image is bilinearly sampled there. For consistent inputs the result
  equals the target image wherever `valid` is 1 (up to occlusions).

  Args:
    source_image: [B, H, W, C] float32 (any units, e.g. RGB in [0, 1] or
      class probabilities): the view being resampled.
    target_depth: [B, H, W, 1] float32, metres: depth of the target view.
    intrinsics: [B, 3, 3] float32, pixels: K, shared by both views.
    source_from_target_rotation: [B, 3, 3] float32 rotation.
    source_from_target_translation: [B, 3] float32, metres.
    object_motion: optional [B, H, W, 3] float32, metres: displacement of
      the object seen at each target pixel, in the source camera frame
      (X_source = R X_target + T + m).

  Returns:
    warped: [B, H, W, C] float32: source image resampled into the target
      view (0 where invalid).
    valid: [B, H, W, 1] float32: 1.0 where the sample lies inside the source
      image and in front of the source camera (warped depth > 0).
  """
  pixels, warped_depth = warp_pixels(
      target_depth,
      intrinsics,
      source_from_target_rotation,
      source_from_target_translation,
      object_motion,
  )
  warped, valid = bilinear_sample(source_image, pixels)
  in_front = tf.cast(warped_depth > 0.0, tf.float32)
  valid *= in_front
  return warped * in_front, valid
