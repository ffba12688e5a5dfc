"""The losses of Depth from Videos in the Wild (Gordon et al., ICCV 2019), as relations.

Each published term is its own function, written after the reference's consistency_losses.py,
model.py and transform_depth_map.py (google-research/depth_from_video_in_the_wild):

- `transform_depth_map`: frame 1's depth moved into frame 2 by a rotation and a per-pixel
  translation field, p2 z2 = K R K^-1 z1 p1 + K t(p1) (Eq. 1 of Gordon et al. with the
  translation field of Eq. 2, t = T + m * delta_t).
- `rgbd_consistency_loss`: occlusion-aware RGB and depth consistency (only where the moved
  frame-1 depth is closer to the camera than frame 2's resampled depth) and the
  depth-proximity-weighted SSIM (c1 = inf, c2 = 9e-6).
- `motion_field_consistency_loss`: rotation and translation cycle consistency, normalised by the
  motions' magnitudes.
- `edge_aware_smoothness`: smoothness of mean-normalised disparity, weighted by image edges.
- `motion_field_smoothness`: L1-L2 smoothness of the (normalised) translation field, with
  wrap-around differences.
- `movable_mask_from_labels` / `movable_mask_from_logits` / `dilate_mask`: Eq. 2's m(i, j), the
  mask of pixels that may move on their own, dilated by 8 pixels as published.

Relations (see consistency/base.py): `DfvConsistency` (depth + motion [+ segmentation]: RGB,
SSIM, depth consistency and both cycle terms, one warp per direction), and the one-task
regularisers `DfvDepthSmoothness` (depth) and `DfvMotionSmoothness` (motion [+ segmentation]).
The published weights are the constructor defaults (RGB 0.85, SSIM 3.0, depth consistency
0.01, rotation cycle 1e-3, translation cycle 1e-2) and, for the regularisers, the relation
weights of the gin files (smoothness 0.01, motion smoothing 1e-3).

Sums, as in the reference: its loss for a triplet adds each term over the 2 pairs and both
directions (and the depth smoothness over the 3 frames), each term being a batch mean. The
relations here take means over the pairs (frames) folded into the batch and multiply by the
number of pairs (frames), which is the same sum for every clip length.

Motion conventions (the DfV motion task's outputs, per pair (t, t+1), [B, T-1, ...]):
'rotation', 'translation' (axis-angle radians / metres of cam_{t+1}_from_cam_t), the
'residual_translation' field [B, T-1, H, W, 3] (metres, camera t+1's frame, frame-t pixels), the
same three for the reverse frame order with suffix '_backward' (cam_t_from_cam_{t+1}, frame t+1
pixels), and optionally learned 'intrinsics' [B, T-1, 3, 3].
"""

from typing import Dict, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from taskology_tf.consistency import base
from taskology_tf.geometry import transforms
from taskology_tf.geometry import warp

# Reference defaults (model.py / train.py of depth_from_video_in_the_wild).
RGB_WEIGHT = 0.85
SSIM_WEIGHT = 3.0
DEPTH_CONSISTENCY_WEIGHT = 0.01
SMOOTHNESS_WEIGHT = 0.01
MOTION_SMOOTHING_WEIGHT = 1e-3
ROTATION_CYCLE_WEIGHT = 1e-3
TRANSLATION_CYCLE_WEIGHT = 1e-2
FOREGROUND_DILATION = 8
SSIM_C1 = float('inf')
SSIM_C2 = 9e-6


# ------------------------------------------------------------------------------------------------
# Movable mask (Eq. 2's m(i, j)).


def movable_mask_from_labels(labels: tf.Tensor, movable_classes: Sequence[int]) -> tf.Tensor:
  """1 where a pixel's class can move on its own.

  Args:
    labels: [N, H, W] or [N, H, W, 1] integer class ids (the project's class set).
    movable_classes: class ids that can move (e.g. the synthetic world's car, pedestrian).

  Returns:
    [N, H, W, 1] float32 in {0, 1}.
  """
  if not movable_classes:
    raise ValueError('movable_mask_from_labels: movable_classes is empty')
  labels = tf.convert_to_tensor(labels)
  if labels.shape.rank == 3:
    labels = labels[..., tf.newaxis]
  labels = tf.cast(labels, tf.int32)
  mask = tf.zeros_like(labels, tf.bool)
  for c in movable_classes:
    mask = tf.logical_or(mask, tf.equal(labels, int(c)))
  return tf.cast(mask, tf.float32)


def movable_mask_from_logits(logits: tf.Tensor, movable_classes: Sequence[int]) -> tf.Tensor:
  """The movable mask of a segmentation prediction: its arg-max class is movable.

  Args:
    logits: [N, H, W, C] float32 class logits.
    movable_classes: class ids that can move.

  Returns:
    [N, H, W, 1] float32 in {0, 1} (no gradient: a hard mask, as the reference's masks are).
  """
  return movable_mask_from_labels(tf.argmax(logits, axis=-1, output_type=tf.int32), movable_classes)


def dilate_mask(mask: tf.Tensor, pixels: int = FOREGROUND_DILATION) -> tf.Tensor:
  """Dilates a {0, 1} mask by `pixels`: a (2 pixels + 1)^2 max pool, as the reference does.

  Args:
    mask: [N, H, W, 1] float32 in {0, 1}.
    pixels: dilation radius (8 in the reference).

  Returns:
    [N, H, W, 1] float32 in {0, 1}.
  """
  if pixels <= 0:
    return mask
  size = 2 * pixels + 1
  return tf.nn.max_pool2d(mask, ksize=size, strides=1, padding='SAME')


def translation_field(
    translation: tf.Tensor, residual: tf.Tensor, mask: Optional[tf.Tensor]
) -> tf.Tensor:
  """Eq. 2: per-pixel translation T + m(i, j) * residual(i, j).

  Args:
    translation: [N, 3] float32, metres: background translation.
    residual: [N, H, W, 3] float32, metres: residual translation field.
    mask: [N, H, W, 1] float32 in {0, 1} (already dilated), or None for the whole frame.

  Returns:
    [N, H, W, 3] float32, metres.
  """
  residual = tf.convert_to_tensor(residual, tf.float32)
  if mask is not None:
    residual = residual * mask
  return tf.convert_to_tensor(translation, tf.float32)[:, tf.newaxis, tf.newaxis, :] + residual


# ------------------------------------------------------------------------------------------------
# Warping a depth map.


def transform_depth_map(
    depth: tf.Tensor, rotation: tf.Tensor, translation: tf.Tensor, intrinsics: tf.Tensor
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Moves frame 1's depth into frame 2: p2 z2 = K R K^-1 z1 p1 + K t(p1).

  The moved map lives on an irregular grid: pixel (i, j) of frame 1 lands at `pixels[i, j]` in
  frame 2 with depth `depth2[i, j]`. As in the reference (transform_depth_map.py), positions
  are clamped into the image (so later resampling replicates the border) and marked invalid
  when they leave [0, W - 1] x [0, H - 1] (with geometry.warp's 1e-3 px tolerance), are not
  finite, or lie behind the camera.

  Args:
    depth: [N, H, W, 1] float32, metres: frame 1's depth.
    rotation: [N, 3, 3] float32: rotation of cam2_from_cam1.
    translation: [N, H, W, 3] float32, metres: per-pixel translation (frame-1 pixels, camera 2).
    intrinsics: [N, 3, 3] float32, pixels.

  Returns:
    pixels: [N, H, W, 2] float32 (u, v) in frame 2, clamped into the image.
    depth2: [N, H, W, 1] float32, metres: z of each moved point in camera 2.
    valid: [N, H, W, 1] float32 in {0, 1}.
  """
  zeros = tf.zeros_like(translation[:, 0, 0, :])
  pixels, depth2 = warp.warp_pixels(depth, intrinsics, rotation, zeros, translation)
  shape = tf.shape(depth)
  w_max = tf.cast(shape[2] - 1, tf.float32)
  h_max = tf.cast(shape[1] - 1, tf.float32)
  u, v = pixels[..., 0], pixels[..., 1]
  tol = 1e-3
  finite = tf.logical_and(tf.math.is_finite(u), tf.math.is_finite(v))
  inside = tf.logical_and(
      tf.logical_and(u >= -tol, u <= w_max + tol), tf.logical_and(v >= -tol, v <= h_max + tol)
  )
  valid = tf.logical_and(tf.logical_and(finite, inside), depth2[..., 0] > 0.0)
  u = tf.clip_by_value(tf.where(finite, u, tf.zeros_like(u)), 0.0, w_max)
  v = tf.clip_by_value(tf.where(finite, v, tf.zeros_like(v)), 0.0, h_max)
  return tf.stack([u, v], axis=-1), depth2, tf.cast(valid, tf.float32)[..., tf.newaxis]


def _resample(image, pixels):
  """Bilinear samples at in-image (clamped) positions: [N, H, W, C]."""
  sampled, _ = warp.bilinear_sample(image, pixels)
  return sampled


# ------------------------------------------------------------------------------------------------
# Photometric and depth consistency.


def _avg_pool3x3(x):
  return tf.nn.avg_pool2d(x, ksize=3, strides=1, padding='VALID')


def weighted_ssim(
    x: tf.Tensor,
    y: tf.Tensor,
    weight: tf.Tensor,
    c1: float = SSIM_C1,
    c2: float = SSIM_C2,
    weight_epsilon: float = 0.01,
) -> Tuple[tf.Tensor, tf.Tensor]:
  """SSIM whose 3x3 window moments are weighted per pixel (the reference's weighted_ssim).

  mu_x = avgpool(x (w + eps)) / (avgpool(w) + eps), likewise the second moments; with
  c1 = inf the luminance factor is 1 and SSIM = (2 sigma_xy + c2) / (sigma_x + sigma_y + c2);
  with c2 = inf only the luminance factor remains.

  Args:
    x: [N, H, W, C] float32 image.
    y: [N, H, W, C] float32 image.
    weight: [N, H, W, 1] float32 >= 0: each pixel's weight in the moments.
    c1: luminance regulariser (inf: no luminance term, the published choice).
    c2: contrast-structure regulariser (9e-6 published).
    weight_epsilon: regularises the division by the pooled weight.

  Returns:
    loss: [N, H - 2, W - 2, C] float32, clip((1 - SSIM) / 2, 0, 1).
    pooled_weight: [N, H - 2, W - 2, 1] float32, the 3x3 mean of `weight` (how much each
      output pixel should count).
  """
  if c1 == float('inf') and c2 == float('inf'):
    raise ValueError('weighted_ssim: c1 and c2 both infinite make SSIM identically 1')
  pooled_weight = _avg_pool3x3(weight)
  weight_plus_epsilon = weight + weight_epsilon
  inverse_pooled = 1.0 / (pooled_weight + weight_epsilon)

  def weighted_avg(z):
    return _avg_pool3x3(z * weight_plus_epsilon) * inverse_pooled

  mu_x = weighted_avg(x)
  mu_y = weighted_avg(y)
  sigma_x = weighted_avg(x * x) - mu_x * mu_x
  sigma_y = weighted_avg(y * y) - mu_y * mu_y
  sigma_xy = weighted_avg(x * y) - mu_x * mu_y
  if c1 == float('inf'):
    numerator = 2.0 * sigma_xy + c2
    denominator = sigma_x + sigma_y + c2
  elif c2 == float('inf'):
    numerator = 2.0 * mu_x * mu_y + c1
    denominator = mu_x * mu_x + mu_y * mu_y + c1
  else:
    numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * sigma_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_x + sigma_y + c2)
  return tf.clip_by_value((1.0 - numerator / denominator) / 2.0, 0.0, 1.0), pooled_weight


def _check_objective_options(counted_pixel_floor, occlusion_tolerance, where):
  """Raises ValueError naming `where` unless 0 < floor <= 1 and tolerance >= 0."""
  if not 0.0 < counted_pixel_floor <= 1.0:
    raise ValueError(f'{where}: counted_pixel_floor must be in (0, 1], got {counted_pixel_floor}')
  if occlusion_tolerance < 0.0:
    raise ValueError(f'{where}: occlusion_tolerance must be >= 0, got {occlusion_tolerance}')


def _floored_weighted_mean(error, weight, floor):
  """Batch mean of sum(error * weight) / (channels * max(sum(weight), floor * pixels)).

  Args:
    error: [N, H, W, C] float32.
    weight: [N, H, W, 1] float32 in [0, 1].
    floor: in (0, 1]; 1.0 gives tf.reduce_mean(error * weight) (weight <= 1).

  Returns:
    Scalar float32.
  """
  channels = tf.cast(tf.shape(error)[-1], tf.float32)
  pixels = tf.cast(tf.shape(error)[1] * tf.shape(error)[2], tf.float32)
  numerator = tf.reduce_sum(error * weight, axis=[1, 2, 3]) / channels
  denominator = tf.maximum(tf.reduce_sum(weight, axis=[1, 2, 3]), floor * pixels)
  return tf.reduce_mean(numerator / denominator)


def rgbd_consistency_loss(
    pixels: tf.Tensor,
    frame1_moved_depth: tf.Tensor,
    valid: tf.Tensor,
    frame1_rgb: tf.Tensor,
    frame2_depth: tf.Tensor,
    frame2_rgb: tf.Tensor,
    counted_pixel_floor: float = 1.0,
    occlusion_tolerance: float = 0.0,
) -> Dict[str, tf.Tensor]:
  """Occlusion-aware RGB, depth and depth-weighted SSIM consistency (one direction).

  Frame 2's depth and RGB are resampled where frame 1's pixels landed. Only pixels where the
  moved frame-1 point is closer to the camera than frame 2's surface there
  (`frame1_closer_to_camera`) count in the RGB and depth terms: a point that lands behind
  frame 2's surface is occluded in frame 2 and cannot be compared (the other direction
  handles it). The SSIM moments are weighted by a depth proximity weight
  w = s / (dz^2 + s) (s: the mean squared depth difference over the closer pixels + 1e-4),
  held constant, so structure is only demanded of surfaces that coincide in 3D.

  Normalisation (`counted_pixel_floor`, a deviation from the reference when < 1): each term of
  an image is sum(error * weight) / max(sum(weight), counted_pixel_floor * pixels), the weight
  being `frame1_closer_to_camera` (RGB, depth) or the pooled proximity weight (SSIM). At 1.0
  the denominator is always the pixel count, i.e. the published mean over all pixels with
  excluded pixels counting 0; then a depth that excludes more pixels (a constant or blurred
  depth on the synthetic world, tools/dfv_objective_probe.py) lowers the loss without
  explaining the images better. Below 1 each term is a weighted mean over the counted pixels
  (floored, so excluding almost everything cannot give a tiny denominator's noise).
  `occlusion_tolerance` counts a pixel also when its moved depth is up to this fraction
  farther than frame 2's resampled depth (0: the published strict test), so that points that
  coincide in 3D are not excluded by interpolation ties.

  Args:
    pixels: [N, H, W, 2] float32: where frame 1's pixels land in frame 2 (clamped).
    frame1_moved_depth: [N, H, W, 1] float32, metres: their depth in camera 2.
    valid: [N, H, W, 1] float32 {0, 1}: the landing position is inside frame 2.
    frame1_rgb: [N, H, W, 3] float32 in [0, 1].
    frame2_depth: [N, H, W, 1] float32, metres.
    frame2_rgb: [N, H, W, 3] float32 in [0, 1].
    counted_pixel_floor: in (0, 1]: the least fraction of an image's pixels a term is divided
      by (1.0: all pixels, as published).
    occlusion_tolerance: >= 0, relative: frame-1 points up to this fraction farther than
      frame 2's surface still count (0.0 as published).

  Returns:
    {'depth_error', 'rgb_error', 'ssim_error'} scalars (batch means of the per-image terms
    above), 'depth_proximity_weight' [N, H, W, 1] and 'frame1_closer_to_camera' [N, H, W, 1].
  """
  _check_objective_options(counted_pixel_floor, occlusion_tolerance, 'rgbd_consistency_loss')
  depth2 = _resample(frame2_depth, pixels)
  rgb2 = _resample(frame2_rgb, pixels)
  closer = valid * tf.cast(frame1_moved_depth < depth2 * (1.0 + occlusion_tolerance), tf.float32)
  difference = depth2 - frame1_moved_depth
  depth_error = _floored_weighted_mean(tf.abs(difference), closer, counted_pixel_floor)
  rgb_error = _floored_weighted_mean(tf.abs(rgb2 - frame1_rgb), closer, counted_pixel_floor)
  second_moment = (
      tf.reduce_sum(tf.square(difference) * closer, axis=[1, 2], keepdims=True)
      / (tf.reduce_sum(closer, axis=[1, 2], keepdims=True) + 1.0)
      + 1e-4
  )
  proximity = second_moment / (tf.square(difference) + second_moment) * valid
  # Held constant, as published: otherwise the network can push depths apart instead of
  # seeking photometric consistency, and training does not start.
  proximity = tf.stop_gradient(proximity)
  ssim, pooled_weight = weighted_ssim(rgb2, frame1_rgb, proximity, c1=SSIM_C1, c2=SSIM_C2)
  ssim_error = _floored_weighted_mean(ssim, pooled_weight, counted_pixel_floor)
  return {
      'depth_error': depth_error,
      'rgb_error': rgb_error,
      'ssim_error': ssim_error,
      'depth_proximity_weight': proximity,
      'frame1_closer_to_camera': closer,
  }


def motion_field_consistency_loss(
    pixels: tf.Tensor,
    mask: tf.Tensor,
    rotation1: tf.Tensor,
    translation1: tf.Tensor,
    rotation2: tf.Tensor,
    translation2: tf.Tensor,
) -> Dict[str, tf.Tensor]:
  """Cycle consistency of the forward and backward motion, normalised by their magnitudes.

  Moving a frame-1 point by (R1, t1(p)) and then by frame 2's (R2, t2) at the pixel p' where it
  landed must give it back: R2 R1 = I and R2 t1(p) + t2(p') = 0. Both errors are divided by the
  motions' own magnitudes, so the loss cannot be lowered by shrinking the motions:

    rotation_error = mean |R2 R1 - I|^2 / (|R1 - I|^2 + |R2 - I|^2)   (means over matrix entries)
    translation_error = mean mask |R2 t1 + t2(p')|^2 / (|t1|^2 + |t2|^2).

  (As in the reference, the denominator's t2 is frame 2's field at the same pixel index p,
  the resampled t2(p') only enters the numerator, and the sample positions carry no gradient.)

  Args:
    pixels: [N, H, W, 2] float32: where frame 1's pixels land in frame 2.
    mask: [N, H, W, 1] float32: weight per frame-1 pixel (frame1_closer_to_camera).
    rotation1: [N, 3, 3] float32: cam2_from_cam1 rotation.
    translation1: [N, H, W, 3] float32, metres: cam2_from_cam1 translation field (frame-1 pixels).
    rotation2: [N, 3, 3] float32: cam1_from_cam2 rotation.
    translation2: [N, H, W, 3] float32, metres: cam1_from_cam2 field (frame-2 pixels).

  Returns:
    {'rotation_error', 'translation_error'} float32 scalars.
  """
  translation2_resampled = _resample(translation2, tf.stop_gradient(pixels))
  eye = tf.eye(3, dtype=tf.float32)
  rotation_unit = tf.linalg.matmul(rotation2, rotation1)
  rotation_error = tf.reduce_mean(tf.square(rotation_unit - eye), axis=[-2, -1])
  scale1 = tf.reduce_mean(tf.square(rotation1 - eye), axis=[-2, -1])
  scale2 = tf.reduce_mean(tf.square(rotation2 - eye), axis=[-2, -1])
  rotation_error = tf.reduce_mean(rotation_error / (1e-24 + scale1 + scale2))
  translation_zero = (
      tf.linalg.matvec(rotation2[:, tf.newaxis, tf.newaxis], translation1) + translation2_resampled
  )

  def norm(x):
    return tf.reduce_sum(tf.square(x), axis=-1)

  translation_error = tf.reduce_mean(
      mask[..., 0] * norm(translation_zero) / (1e-24 + norm(translation1) + norm(translation2))
  )
  return {'rotation_error': rotation_error, 'translation_error': translation_error}


# ------------------------------------------------------------------------------------------------
# Regularisers.


def edge_aware_smoothness(disparity: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
  """mean |dx d| exp(-mean_c |dx I|) + mean |dy d| exp(-mean_c |dy I|) (_depth_smoothness).

  Args:
    disparity: [N, H, W, 1] float32 (the reference passes disparity / its per-image mean).
    image: [N, H, W, 3] float32 in [0, 1].

  Returns:
    Scalar float32.
  """
  dx = disparity[:, :, :-1] - disparity[:, :, 1:]
  dy = disparity[:, :-1] - disparity[:, 1:]
  weight_x = tf.exp(-tf.reduce_mean(tf.abs(image[:, :, :-1] - image[:, :, 1:]), -1, keepdims=True))
  weight_y = tf.exp(-tf.reduce_mean(tf.abs(image[:, :-1] - image[:, 1:]), -1, keepdims=True))
  return tf.reduce_mean(tf.abs(dx * weight_x)) + tf.reduce_mean(tf.abs(dy * weight_y))


def mean_normalized_disparity(depth: tf.Tensor) -> tf.Tensor:
  """1 / depth divided by its per-image mean: [N, H, W, 1] -> [N, H, W, 1] (scale-free)."""
  disparity = 1.0 / tf.maximum(depth, 1e-12)
  return disparity / tf.reduce_mean(disparity, axis=[1, 2, 3], keepdims=True)


def motion_field_smoothness(field: tf.Tensor) -> tf.Tensor:
  """L1-L2 smoothness of a translation field normalised by its RMS (_smoothness).

  The field is divided by sqrt(3 mean(field^2) + 1e-12) per example (scale-free), then
  mean sqrt(1e-24 + dx^2 + dy^2) with differences taken cyclically (tf.roll) so continuity is
  also imposed across the image border: gradients of the translation field are otherwise
  ambiguous with rotation, and this pushes them into the rotation.

  Args:
    field: [N, H, W, 3] float32, metres.

  Returns:
    Scalar float32 (1e-12 for a constant field).
  """
  norm = tf.reduce_mean(tf.square(field), axis=[1, 2, 3], keepdims=True) * 3.0
  field = field / tf.sqrt(norm + 1e-12)
  dx = field - tf.roll(field, 1, axis=1)
  dy = field - tf.roll(field, 1, axis=2)
  return tf.reduce_mean(tf.sqrt(1e-24 + tf.square(dx) + tf.square(dy)))


# ------------------------------------------------------------------------------------------------
# Relations.


def _fold_pairs(x):
  return base.fold_time(tf.convert_to_tensor(x, tf.float32))


# Mediator label keys of the ground-truth motion (the synthetic world's; render.render_example).
GROUND_TRUTH_MOTION_KEYS = ('egomotion', 'object_motion')


def motion_from_ground_truth(
    egomotion: tf.Tensor, object_motion: tf.Tensor, speed: Optional[float] = None
) -> Dict[str, tf.Tensor]:
  """The DfV motion task's outputs (module docstring) from ground-truth motion.

  Args:
    egomotion: [B, T-1, 4, 4] cam_{t+1}_from_cam_t.
    object_motion: [B, T-1, H, W, 3] metres, camera t+1's frame, at frame-t pixels: the own
      motion m of the surface seen there, X_{t+1} = R X_t + T + m.
    speed: None: the true translation T. Else (a diagnostic) T rescaled to this length in metres,
      its direction kept (a zero T stays zero): the motion of a network that gets the rotation
      and the heading right but predicts one speed for every pair. The object motion is kept.

  Returns:
    The forward (R, T, m) as axis-angle, translation and residual field, and the backward ones:
    the inverse egomotion (R^T, -R^T T) and the residual -R^T m. X_t = R^T X_{t+1} - R^T T -
    R^T m holds exactly for the surface point, but the backward field is indexed by frame t+1's
    pixels and the ground truth by frame t's: using m at the same pixel is exact on static
    surfaces (m = 0) and approximate on a moving object's border (a few pixels per frame here).
  """
  egomotion = tf.convert_to_tensor(egomotion, tf.float32)
  object_motion = tf.convert_to_tensor(object_motion, tf.float32)
  rotation = egomotion[..., :3, :3]
  translation = egomotion[..., :3, 3]
  if speed is not None:
    length = tf.norm(translation, axis=-1, keepdims=True)
    translation = tf.math.divide_no_nan(translation, length) * float(speed)
  rotation_inv = tf.linalg.matrix_transpose(rotation)
  return {
      'rotation': transforms.matrix_to_axis_angle(rotation),
      'translation': translation,
      'residual_translation': object_motion,
      'rotation_backward': transforms.matrix_to_axis_angle(rotation_inv),
      'translation_backward': -tf.linalg.matvec(rotation_inv, translation),
      'residual_translation_backward': -tf.linalg.matvec(
          rotation_inv[:, :, tf.newaxis, tf.newaxis], object_motion
      ),
  }


def ground_plane_depth(
    intrinsics: tf.Tensor,
    height: int,
    width: int,
    camera_height: float = 1.5,
    max_depth: float = 80.0,
) -> tf.Tensor:
  """The depth of a flat ground seen by a level camera: a fixed, scene-independent prior.

  A camera at `camera_height` above a plane, its optical axis parallel to it (zero pitch and
  roll: the horizon is the principal point's row c_y), sees at row v below the horizon the plane
  point at camera depth z = f_y * camera_height / (v - c_y) (similar triangles: the ray through
  row v drops (v - c_y) / f_y per metre along z, and meets the plane after camera_height of
  drop). Rows at or above the horizon, and ground farther than `max_depth`, get `max_depth`.
  Pixel centres are at integer (u, v), as in the synthetic world's `intrinsics_from_fov`.

  Args:
    intrinsics: [B, 3, 3] float32, pixels.
    height, width: the map's size.
    camera_height: metres above the ground (1.5: the synthetic world's; KITTI's is 1.65).
    max_depth: metres, the cap (80: KITTI's evaluation cap).

  Returns:
    [B, height, width, 1] float32 metres.
  """
  if camera_height <= 0 or max_depth <= 0:
    raise ValueError(
        f'ground_plane_depth: camera_height and max_depth must be > 0, got {camera_height} and '
        f'{max_depth}'
    )
  intrinsics = tf.convert_to_tensor(intrinsics, tf.float32)
  fy = intrinsics[:, 1, 1][:, None, None, None]
  cy = intrinsics[:, 1, 2][:, None, None, None]
  rows = tf.range(height, dtype=tf.float32)[None, :, None, None]
  below = rows - cy  # [B, H, 1, 1]
  depth = fy * camera_height / tf.maximum(below, 1e-6)
  depth = tf.where(below > 0, tf.minimum(depth, max_depth), max_depth)
  return tf.tile(depth, [1, 1, width, 1])


class _MovableMaskMixin:
  """The movable mask of each frame: from a segmentation task, from dataset labels, or none."""

  def _init_mask(self, segmentation_task, label_key, movable_classes, foreground_dilation):
    if segmentation_task and label_key:
      raise ValueError(
          f'{type(self).__name__}: give segmentation_task or label_key for the movable mask, '
          f'not both (got {segmentation_task!r} and {label_key!r})'
      )
    if (segmentation_task or label_key) and not movable_classes:
      raise ValueError(
          f'{type(self).__name__}: a movable mask from {segmentation_task or label_key!r} needs '
          'movable_classes (the synthetic world: (3, 4), car and pedestrian)'
      )
    self.segmentation_task = segmentation_task
    self.label_key = label_key
    # The mediator stream strips labels; this asks it to keep the label mask's key.
    self.mediator_label_keys = (label_key,) if label_key else ()
    self.movable_classes = tuple(int(c) for c in movable_classes)
    self.foreground_dilation = int(foreground_dilation)

  @property
  def mask_source(self) -> str:
    """Where the movable mask comes from: 'segmentation:<task>', 'labels:<key>' or 'none'."""
    if self.segmentation_task:
      return f'segmentation:{self.segmentation_task}'
    if self.label_key:
      return f'labels:{self.label_key}'
    return 'none'

  def _frame_masks(self, predictions, batch) -> Optional[tf.Tensor]:
    """[B, T, H, W, 1] dilated movable masks, or None (the residual field acts everywhere)."""
    if self.segmentation_task:
      logits = tf.convert_to_tensor(predictions[self.segmentation_task]['logits'], tf.float32)
      shape = tf.shape(logits)
      mask = movable_mask_from_logits(base.fold_time(logits), self.movable_classes)
    elif self.label_key:
      if self.label_key not in batch:
        raise KeyError(
            f'{type(self).__name__}({self.name!r}): label_key={self.label_key!r} but the mediator '
            f'batch has only {sorted(batch)}; the mediator pipeline must carry the per-frame '
            'labels [B, T, H, W] for a label mask'
        )
      labels = tf.convert_to_tensor(batch[self.label_key])
      shape = tf.shape(labels)
      mask = movable_mask_from_labels(base.fold_time(labels), self.movable_classes)
    else:
      return None
    mask = dilate_mask(mask, self.foreground_dilation)
    return tf.reshape(mask, tf.concat([shape[:2], tf.shape(mask)[1:]], axis=0))

  def _fields(self, motion, masks):
    """Folded per-pixel translation fields (forward on frame-t, backward on frame-t+1 pixels)."""
    fwd_mask = bwd_mask = None
    if masks is not None:
      fwd_mask = _fold_pairs(masks[:, :-1])
      bwd_mask = _fold_pairs(masks[:, 1:])
    forward = translation_field(
        _fold_pairs(motion['translation']), _fold_pairs(motion['residual_translation']), fwd_mask
    )
    backward = translation_field(
        _fold_pairs(motion['translation_backward']),
        _fold_pairs(motion['residual_translation_backward']),
        bwd_mask,
    )
    return forward, backward


class DfvConsistency(base.Relation, _MovableMaskMixin):
  """The DfVitW photometric, depth and motion-cycle consistency of consecutive frames.

  Reads predictions[depth_task]['depth'] [B, T, H, W, 1] (metres), the DfV motion task's
  outputs (module docstring) and, for the movable mask, predictions[segmentation_task]['logits']
  [B, T, H, W, C] or batch[label_key] [B, T, H, W]. For every pair and direction (frame 1 ->
  frame 2 with the forward motion, then frame 2 -> frame 1 with the backward motion):

    rgb_weight * rgb_error + ssim_weight * 0.5 * ssim_error
      + depth_consistency_weight * depth_error
      + rotation_cycle_weight * rotation_error + translation_cycle_weight * translation_error,

  summed over pairs and directions (module docstring). Intrinsics: batch['intrinsics'], or the
  motion task's learned 'intrinsics' averaged over both frame orders (learned_intrinsics=True).

  Args:
    depth_task: task predicting 'depth'.
    motion_task: the DfV motion task; None: a diagnostic oracle, the ground-truth motion of
      the mediator batch (`GROUND_TRUTH_MOTION_KEYS`, asked for through
      `mediator_label_keys`; `motion_from_ground_truth`), so only the depth is learnt and the
      cycle terms are those of the exact motion.
    segmentation_task: task predicting 'logits' whose arg-max gives the movable mask (None: no
      segmentation mask).
    label_key: mediator batch key of per-frame class ids for the movable mask (None: none).
    movable_classes: class ids that can move (needed with either mask source).
    foreground_dilation: mask dilation in pixels (8).
    learned_intrinsics: use the motion task's 'intrinsics' instead of batch['intrinsics'].
    rgb_weight, ssim_weight, depth_consistency_weight, rotation_cycle_weight,
      translation_cycle_weight: the published weights.
    counted_pixel_floor: RGB, SSIM and depth terms as weighted means over the counted pixels,
      the count floored at this fraction of the image (1.0: means over all pixels, as
      published; see `rgbd_consistency_loss`).
    occlusion_tolerance: relative slack of the occlusion test (0.0: as published).
    motion_warmup_steps: ours, not published (0: off). For the first this many training steps
      the motion learns from the ground-plane depth prior (`ground_plane_depth`) instead of the
      depth task's depth, while the depth learns from the motion as usual: the loss is
      L(depth, stop_gradient(motion)) + L(prior, motion), so the depth gets the gradient of the
      first term and the motion that of the second, whichever of them is live. It breaks the
      start's saddle (README, "Why the depth waits"): at a flat start depth no translation is
      better than a randomly directed one, and at zero translation no depth is better than
      another. Needs the training step (`bind_training_step`, which the trainer calls); unbound
      (outside the trainer) the relation is as after the warm-up. With learned intrinsics the
      prior uses the motion's (stop-gradient), else batch['intrinsics'].
    warmup_camera_height, warmup_max_depth: the prior's `camera_height` and `max_depth`.
    oracle_speed: with motion_task=None only (a diagnostic, ours): the ground-truth translation
      rescaled to this length in metres, direction and rotation kept (`motion_from_ground_truth`),
      to measure what a motion network that never learns the speed costs the depth.
    name: relation name.
  """

  def __init__(
      self,
      depth_task: str = 'depth',
      motion_task: Optional[str] = 'motion',
      segmentation_task: Optional[str] = None,
      label_key: Optional[str] = None,
      movable_classes: Sequence[int] = (),
      foreground_dilation: int = FOREGROUND_DILATION,
      learned_intrinsics: bool = False,
      rgb_weight: float = RGB_WEIGHT,
      ssim_weight: float = SSIM_WEIGHT,
      depth_consistency_weight: float = DEPTH_CONSISTENCY_WEIGHT,
      rotation_cycle_weight: float = ROTATION_CYCLE_WEIGHT,
      translation_cycle_weight: float = TRANSLATION_CYCLE_WEIGHT,
      counted_pixel_floor: float = 1.0,
      occlusion_tolerance: float = 0.0,
      motion_warmup_steps: int = 0,
      warmup_camera_height: float = 1.5,
      warmup_max_depth: float = 80.0,
      oracle_speed: Optional[float] = None,
      name: str = 'dfv_consistency',
  ):
    self.name = name
    if oracle_speed is not None:
      if motion_task is not None:
        raise ValueError(
            f'DfvConsistency({name!r}): oracle_speed={oracle_speed} rescales the ground-truth '
            f'translation, but motion_task={motion_task!r} (the motion is learnt; set '
            'motion_task=None)'
        )
      if not oracle_speed > 0:
        raise ValueError(
            f'DfvConsistency({name!r}): oracle_speed must be > 0 metres, got {oracle_speed!r}'
        )
    self.oracle_speed = None if oracle_speed is None else float(oracle_speed)
    _check_objective_options(counted_pixel_floor, occlusion_tolerance, f'DfvConsistency({name!r})')
    if isinstance(motion_warmup_steps, bool) or not isinstance(motion_warmup_steps, int):
      raise ValueError(
          f'DfvConsistency({name!r}): motion_warmup_steps must be an integer number of steps, '
          f'got {motion_warmup_steps!r}'
      )
    if motion_warmup_steps < 0:
      raise ValueError(
          f'DfvConsistency({name!r}): motion_warmup_steps must be >= 0, got {motion_warmup_steps}'
      )
    if motion_warmup_steps and motion_task is None:
      raise ValueError(
          f'DfvConsistency({name!r}): motion_warmup_steps={motion_warmup_steps} warms up a '
          'motion task, but motion_task=None (the ground-truth motion)'
      )
    if warmup_camera_height <= 0 or warmup_max_depth <= 0:
      raise ValueError(
          f'DfvConsistency({name!r}): warmup_camera_height and warmup_max_depth must be > 0, '
          f'got {warmup_camera_height} and {warmup_max_depth}'
      )
    self.motion_warmup_steps = int(motion_warmup_steps)
    self.warmup_camera_height = float(warmup_camera_height)
    self.warmup_max_depth = float(warmup_max_depth)
    self._step = None
    self.counted_pixel_floor = float(counted_pixel_floor)
    self.occlusion_tolerance = float(occlusion_tolerance)
    self._init_mask(segmentation_task, label_key, movable_classes, foreground_dilation)
    self.depth_task = depth_task
    self.motion_task = motion_task
    self.learned_intrinsics = learned_intrinsics
    self.weights = {
        'rgb_error': float(rgb_weight),
        'ssim_error': 0.5 * float(ssim_weight),  # The reference adds 0.5 * ssim_error.
        'depth_error': float(depth_consistency_weight),
        'rotation_error': float(rotation_cycle_weight),
        'translation_error': float(translation_cycle_weight),
    }
    if motion_task is None:
      if learned_intrinsics:
        raise ValueError(
            f'DfvConsistency({name!r}): learned_intrinsics=True needs a motion_task to learn '
            'them; motion_task=None (the ground-truth motion) uses batch["intrinsics"]'
        )
      self.mediator_label_keys = tuple(self.mediator_label_keys) + GROUND_TRUTH_MOTION_KEYS
    self.tasks = (
        (depth_task,)
        + ((motion_task,) if motion_task else ())
        + ((segmentation_task,) if segmentation_task else ())
    )

  def _motion(self, predictions, batch):
    if self.motion_task is not None:
      return predictions[self.motion_task]
    missing = [k for k in GROUND_TRUTH_MOTION_KEYS if k not in batch]
    if missing:
      raise KeyError(
          f'DfvConsistency({self.name!r}): motion_task=None reads the ground-truth motion '
          f'{list(GROUND_TRUTH_MOTION_KEYS)} from the mediator batch, which lacks {missing} '
          f'(it has {sorted(batch)})'
      )
    return motion_from_ground_truth(
        batch['egomotion'], batch['object_motion'], speed=self.oracle_speed
    )

  def _intrinsics(self, motion, batch, num_pairs):
    if self.learned_intrinsics:
      if 'intrinsics' not in motion:
        raise KeyError(
            f'DfvConsistency({self.name!r}): learned_intrinsics=True but task '
            f'{self.motion_task!r} predicts no "intrinsics" (build it with learn_intrinsics=True)'
        )
      return _fold_pairs(motion['intrinsics'])
    return base.repeat_per_frame(tf.convert_to_tensor(batch['intrinsics'], tf.float32), num_pairs)

  def pair_directions(self, depth, motion, image, masks=None):
    """The two warp directions of every consecutive pair, folded over (clip, pair).

    Args:
      depth: [B, T, H, W, 1] metres.
      motion: the DfV motion task's outputs ([B, T-1, ...]; module docstring).
      image: [B, T, H, W, 3].
      masks: [B, T, H, W, 1] movable masks (already dilated) or None.

    Returns:
      Two dicts, forward (frame t -> t+1 with the forward motion) then backward (t+1 -> t), each
      with 'depth1', 'rgb1', 'rotation1' (matrices), 'field1' (per-pixel translation), 'depth2',
      'rgb2', 'rotation2', 'field2' (the opposite direction's motion, for the cycle terms), and
      'frames1' / 'frames2': the slices of the time axis the folded frame-1 and frame-2 tensors
      come from, so a caller can fold its own per-frame tensors alike. The backward dict is the
      forward one with the roles of frames 1 and 2 exchanged.
    """
    fwd_field, bwd_field = self._fields(motion, masks)
    fwd_rotation = transforms.axis_angle_to_matrix(_fold_pairs(motion['rotation']))
    bwd_rotation = transforms.axis_angle_to_matrix(_fold_pairs(motion['rotation_backward']))
    earlier, later = slice(None, -1), slice(1, None)
    depth_t, depth_next = _fold_pairs(depth[:, earlier]), _fold_pairs(depth[:, later])
    rgb_t, rgb_next = _fold_pairs(image[:, earlier]), _fold_pairs(image[:, later])
    forward = dict(
        depth1=depth_t,
        rgb1=rgb_t,
        rotation1=fwd_rotation,
        field1=fwd_field,
        frames1=earlier,
        depth2=depth_next,
        rgb2=rgb_next,
        rotation2=bwd_rotation,
        field2=bwd_field,
        frames2=later,
    )
    swap = {'1': '2', '2': '1'}
    backward = {k[:-1] + swap[k[-1]]: v for k, v in forward.items()}
    return forward, backward

  def bind_training_step(self, step):
    """Makes the motion warm-up (`motion_warmup_steps`) follow `step`.

    Args:
      step: int64 tf.Variable, the trainer's global step (0 during the first step).
    """
    self._step = step

  def in_motion_warmup(self) -> tf.Tensor:
    """Scalar bool: the bound training step is inside the motion warm-up (False if unbound)."""
    if not self.motion_warmup_steps or self._step is None:
      return tf.constant(False)
    return tf.convert_to_tensor(self._step) < self.motion_warmup_steps

  def prior_depth(self, motion, batch, depth_shape):
    """The warm-up's ground-plane depth, [B, T, H, W, 1], for a depth of shape `depth_shape`."""
    if self.learned_intrinsics:
      # [B, T-1, 3, 3] -> one per clip, as a constant: the prior must not train the intrinsics.
      k = tf.stop_gradient(tf.reduce_mean(motion['intrinsics'], axis=1))
    else:
      k = batch['intrinsics']
    t, h, w = depth_shape[1], depth_shape[2], depth_shape[3]
    prior = ground_plane_depth(k, h, w, self.warmup_camera_height, self.warmup_max_depth)
    return tf.tile(prior[:, tf.newaxis], [1, t, 1, 1, 1])

  def __call__(self, predictions, batch):
    """See `base.Relation.__call__`. Metrics: each unweighted term summed over pairs and
    directions, 'closer_fraction' (mean fraction of pixels counted), 'inside_fraction' (mean
    fraction of pixels warped into the other frame at a positive depth), 'translation_norm'
    (mean |translation| of the per-pixel motion, metres) and 'depth_mean'; with a motion warm-up
    also 'motion_warmup' (1 inside it) and 'warmup_prior_loss' (the motion's loss against the
    prior; 0 after the warm-up)."""
    motion = self._motion(predictions, batch)
    depth = tf.convert_to_tensor(predictions[self.depth_task]['depth'], tf.float32)
    image = tf.convert_to_tensor(batch['image'], tf.float32)
    masks = self._frame_masks(predictions, batch)
    if not self.motion_warmup_steps:
      return self._consistency(depth, motion, image, batch, masks)
    warm = self.in_motion_warmup()
    on = tf.cast(warm, tf.float32)
    # Value unchanged; the gradient reaching the motion through the depth's term is (1 - on).
    gated = tf.nest.map_structure(lambda x: on * tf.stop_gradient(x) + (1.0 - on) * x, motion)
    loss, metrics = self._consistency(depth, gated, image, batch, masks)

    def prior_loss():
      prior = self.prior_depth(motion, batch, tf.shape(depth))
      prior.set_shape(depth.shape)
      return self._consistency(prior, motion, image, batch, masks)[0]

    warmup_loss = tf.cond(warm, prior_loss, lambda: tf.constant(0.0))
    metrics['motion_warmup'] = on
    metrics['warmup_prior_loss'] = warmup_loss
    return loss + warmup_loss, metrics

  def _consistency(self, depth, motion, image, batch, masks):
    num_pairs = depth.shape[1] - 1 if depth.shape[1] is not None else tf.shape(depth)[1] - 1
    intrinsics = self._intrinsics(motion, batch, num_pairs)
    directions = self.pair_directions(depth, motion, image, masks)
    sums = {k: tf.constant(0.0) for k in self.weights}
    closer_fraction = tf.constant(0.0)
    inside_fraction = tf.constant(0.0)
    translation_norm = tf.constant(0.0)
    for d in directions:
      pixels, moved_depth, valid = transform_depth_map(
          d['depth1'], d['rotation1'], d['field1'], intrinsics
      )
      inside_fraction += 0.5 * tf.reduce_mean(valid)
      translation_norm += 0.5 * tf.reduce_mean(tf.norm(d['field1'], axis=-1))
      terms = rgbd_consistency_loss(
          pixels,
          moved_depth,
          valid,
          d['rgb1'],
          d['depth2'],
          d['rgb2'],
          counted_pixel_floor=self.counted_pixel_floor,
          occlusion_tolerance=self.occlusion_tolerance,
      )
      closer = terms['frame1_closer_to_camera']
      terms.update(
          motion_field_consistency_loss(
              pixels, closer, d['rotation1'], d['field1'], d['rotation2'], d['field2']
          )
      )
      for k in sums:
        sums[k] += terms[k]
      closer_fraction += 0.5 * tf.reduce_mean(closer)
    # Means over folded pairs times the number of pairs = the reference's sum over pairs.
    pairs = tf.cast(num_pairs, tf.float32)
    sums = {k: v * pairs for k, v in sums.items()}
    loss = tf.add_n([self.weights[k] * v for k, v in sums.items()])
    metrics = dict(sums)
    metrics['closer_fraction'] = closer_fraction
    # Diagnostics of the trivial minimum (closer_fraction 0): do the warped points leave the
    # frame (inside_fraction), the motion grow (translation_norm) or the depth drift (depth_mean)?
    metrics['inside_fraction'] = inside_fraction
    metrics['translation_norm'] = translation_norm
    metrics['depth_mean'] = tf.reduce_mean(depth)
    return loss, metrics


class DfvDepthSmoothness(base.Relation):
  """Edge-aware smoothness of mean-normalised disparity, summed over the clip's frames.

  A one-task regulariser: reads predictions[depth_task]['depth'] [B, T, H, W, 1] (metres) and
  batch['image'] [B, T, H, W, 3] in [0, 1]. Its published weight (0.01) is the relation weight.
  """

  def __init__(self, depth_task: str = 'depth', name: str = 'dfv_depth_smoothness'):
    self.depth_task = depth_task
    self.name = name
    self.tasks = (depth_task,)

  def __call__(self, predictions, batch):
    depth = tf.convert_to_tensor(predictions[self.depth_task]['depth'], tf.float32)
    image = tf.convert_to_tensor(batch['image'], tf.float32)
    frames = tf.cast(tf.shape(depth)[1], tf.float32)
    loss = edge_aware_smoothness(
        mean_normalized_disparity(base.fold_time(depth)), base.fold_time(image)
    )
    return loss * frames, {}


class DfvMotionSmoothness(base.Relation, _MovableMaskMixin):
  """Smoothness of the forward and backward translation fields (T + m * residual, Eq. 2).

  A one-task regulariser of the motion task (plus the segmentation task when it supplies the
  movable mask); summed over pairs and both frame orders. Its published weight (1e-3) is the
  relation weight. Arguments as `DfvConsistency`.
  """

  def __init__(
      self,
      motion_task: str = 'motion',
      segmentation_task: Optional[str] = None,
      label_key: Optional[str] = None,
      movable_classes: Sequence[int] = (),
      foreground_dilation: int = FOREGROUND_DILATION,
      name: str = 'dfv_motion_smoothness',
  ):
    self.name = name
    self._init_mask(segmentation_task, label_key, movable_classes, foreground_dilation)
    self.motion_task = motion_task
    self.tasks = (motion_task,) + ((segmentation_task,) if segmentation_task else ())

  def __call__(self, predictions, batch):
    motion = predictions[self.motion_task]
    fwd_field, bwd_field = self._fields(motion, self._frame_masks(predictions, batch))
    pairs = tf.cast(tf.shape(motion['translation'])[1], tf.float32)
    loss = (motion_field_smoothness(fwd_field) + motion_field_smoothness(bwd_field)) * pairs
    return loss, {}


def relation_mask_sources(relations: Sequence[base.Relation]) -> Mapping[str, str]:
  """{relation name: movable-mask source} of the DfV relations among `relations` (for logs)."""
  return {r.name: r.mask_source for r in relations if isinstance(r, _MovableMaskMixin)}
