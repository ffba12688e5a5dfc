"""Hand-built goldens for the DfVitW losses (taskology_tf/consistency/dfv.py)."""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.consistency import dfv
from taskology_tf.geometry import transforms

H, W = 8, 10
F = 20.0  # focal length, pixels


def _k(n=1):
  k = np.array([[F, 0.0, (W - 1) / 2], [0.0, F, (H - 1) / 2], [0.0, 0.0, 1.0]], np.float32)
  return tf.constant(np.tile(k[None], (n, 1, 1)))


def _texture(n=1, seed=0):
  return tf.constant(np.random.default_rng(seed).uniform(0, 1, (n, H, W, 3)), tf.float32)


def _eye(n=1):
  return tf.eye(3, batch_shape=[n])


def _const_field(t, n=1):
  return tf.constant(np.broadcast_to(np.asarray(t, np.float32), (n, H, W, 3)).copy())


def test_transform_depth_map_pure_translation_shifts_by_f_t_over_d():
  # Constant depth d, translation (tx, 0, 0): u2 = u1 + f tx / d, v2 = v1, z2 = d.
  d, tx = 4.0, 0.4  # shift = 20 * 0.4 / 4 = 2 pixels.
  depth = tf.fill([1, H, W, 1], d)
  pixels, z, valid = dfv.transform_depth_map(depth, _eye(), _const_field([tx, 0, 0]), _k())
  u, v = np.meshgrid(np.arange(W), np.arange(H))
  inside = u + 2 <= W - 1
  np.testing.assert_allclose(pixels[0, ..., 0].numpy()[inside], (u + 2)[inside], atol=1e-4)
  np.testing.assert_allclose(pixels[0, ..., 1].numpy(), v, atol=1e-4)
  np.testing.assert_allclose(z.numpy(), d, atol=1e-5)
  # The two right-most columns land outside frame 2: invalid (and clamped onto the edge).
  np.testing.assert_array_equal(valid[0, ..., 0].numpy(), inside.astype(np.float32))
  assert float(tf.reduce_max(pixels[..., 0])) <= W - 1


def test_identical_frames_zero_motion_give_zero_rgb_and_ssim_error():
  # Zero motion: every frame-1 pixel lands on itself with its own depth d1 = 5. Frame 2's depth
  # is 5.001, so every pixel is (just) closer to the camera and counts. The frames are equal,
  # so RGB error = 0 and SSIM = 1 (c1 = inf: (2 s_xy + c2) / (s_x + s_y + c2) with s_xy = s_x =
  # s_y) -> (1 - SSIM) / 2 = 0; the depth error is the mean |5.001 - 5| over all pixels = 0.001.
  image = _texture()
  pixels, z, valid = dfv.transform_depth_map(
      tf.fill([1, H, W, 1], 5.0), _eye(), _const_field([0, 0, 0]), _k()
  )
  out = dfv.rgbd_consistency_loss(pixels, z, valid, image, tf.fill([1, H, W, 1], 5.001), image)
  assert float(tf.reduce_mean(out['frame1_closer_to_camera'])) == 1.0
  assert float(out['rgb_error']) == pytest.approx(0.0, abs=1e-6)
  assert float(out['ssim_error']) == pytest.approx(0.0, abs=1e-5)
  assert float(out['depth_error']) == pytest.approx(0.001, abs=2e-6)


def test_translated_camera_reconstructs_the_shifted_frame():
  # Camera translation tx = 0.4 at depth 4 moves the scene 2 px right: I2[:, u + 2] = I1[:, u].
  # Resampling frame 2 where frame-1 pixels land gives I1 back on the valid columns, so
  # RGB error = 0; depth error = 1e-3 * (W - 2) / W (frame 2 is 1e-3 farther, 2 columns invalid).
  i1 = _texture(seed=3).numpy()
  i2 = np.zeros_like(i1)
  i2[:, :, 2:] = i1[:, :, :-2]
  i2[:, :, :2] = 0.5
  pixels, z, valid = dfv.transform_depth_map(
      tf.fill([1, H, W, 1], 4.0), _eye(), _const_field([0.4, 0, 0]), _k()
  )
  out = dfv.rgbd_consistency_loss(
      pixels, z, valid, tf.constant(i1), tf.fill([1, H, W, 1], 4.001), tf.constant(i2)
  )
  assert float(out['rgb_error']) == pytest.approx(0.0, abs=1e-5)
  assert float(out['depth_error']) == pytest.approx(1e-3 * (W - 2) / W, rel=2e-3)


def test_occluded_pixel_is_excluded():
  # Zero motion, frame 2 at depth 5.001 everywhere. Pixel p = (2, 3) of frame 1 is at depth 9:
  # moved there it lies behind frame 2's surface (9 > 5.001), i.e. occluded, so it is dropped
  # from RGB and depth error although its colour differs by 0.7 in every channel. A second
  # pixel q = (5, 6) at depth 2 (closer) with the same colour change is counted:
  # rgb_error = 3 * 0.7 / (H W 3) = 0.7 / (H W);
  # depth_error = ((H W - 2) * 0.001 + |5.001 - 2|) / (H W).
  image = _texture(seed=4).numpy()
  image2 = image.copy()
  for r, c in ((2, 3), (5, 6)):
    image2[0, r, c] = np.clip(image[0, r, c], 0, 0.3) + 0.7
    image[0, r, c] = np.clip(image[0, r, c], 0, 0.3)
  depth1 = np.full([1, H, W, 1], 5.0, np.float32)
  depth1[0, 2, 3] = 9.0
  depth1[0, 5, 6] = 2.0
  pixels, z, valid = dfv.transform_depth_map(
      tf.constant(depth1), _eye(), _const_field([0, 0, 0]), _k()
  )
  out = dfv.rgbd_consistency_loss(
      pixels, z, valid, tf.constant(image), tf.fill([1, H, W, 1], 5.001), tf.constant(image2)
  )
  closer = out['frame1_closer_to_camera'].numpy()[0, ..., 0]
  assert closer[2, 3] == 0.0 and closer[5, 6] == 1.0 and closer.sum() == H * W - 1
  assert float(out['rgb_error']) == pytest.approx(0.7 / (H * W), rel=1e-4)
  expected_depth = ((H * W - 2) * 0.001 + 3.001) / (H * W)
  assert float(out['depth_error']) == pytest.approx(expected_depth, rel=1e-3)


def test_weighted_ssim_uniform_weight_matches_the_formula():
  # One 3x3 window, one channel, weight 1: the weighted moments are plain window moments
  # ((w + eps) / (mean(w) + eps) = 1), and with c1 = inf
  # SSIM = (2 cov + c2) / (var_x + var_y + c2); loss = clip((1 - SSIM) / 2, 0, 1).
  rng = np.random.default_rng(5)
  x = rng.uniform(0, 1, (3, 3))
  y = rng.uniform(0, 1, (3, 3))
  cov = (x * y).mean() - x.mean() * y.mean()
  ssim = (2 * cov + 9e-6) / (x.var() + y.var() + 9e-6)
  expected = np.clip((1 - ssim) / 2, 0, 1)
  loss, pooled = dfv.weighted_ssim(
      tf.constant(x[None, :, :, None], tf.float32),
      tf.constant(y[None, :, :, None], tf.float32),
      tf.ones([1, 3, 3, 1]),
  )
  assert loss.shape == [1, 1, 1, 1] and float(pooled[0, 0, 0, 0]) == pytest.approx(1.0)
  assert float(loss[0, 0, 0, 0]) == pytest.approx(expected, rel=1e-4)
  with pytest.raises(ValueError, match='both infinite'):
    dfv.weighted_ssim(
        tf.ones([1, 3, 3, 1]), tf.ones([1, 3, 3, 1]), tf.ones([1, 3, 3, 1]), c2=np.inf
    )


def test_rotation_then_inverse_has_zero_cycle_error():
  # (R, t) followed by (R^T, -R^T t): R^T R = I and R^T t - R^T t = 0, so both errors vanish
  # (the constant fields make the resampling position irrelevant).
  r = transforms.axis_angle_to_matrix(tf.constant([[0.1, -0.2, 0.05]]))
  t = np.array([0.3, -0.1, 1.2], np.float32)
  t_inv = -tf.linalg.matvec(tf.linalg.matrix_transpose(r), t[None]).numpy()[0]
  rng = np.random.default_rng(6)
  pixels = tf.constant(
      np.stack([rng.uniform(0, W - 1, (1, H, W)), rng.uniform(0, H - 1, (1, H, W))], -1), tf.float32
  )
  out = dfv.motion_field_consistency_loss(
      pixels,
      tf.ones([1, H, W, 1]),
      r,
      _const_field(t),
      tf.linalg.matrix_transpose(r),
      _const_field(t_inv),
  )
  assert float(out['rotation_error']) == pytest.approx(0.0, abs=1e-6)
  assert float(out['translation_error']) == pytest.approx(0.0, abs=1e-6)


def test_repeated_motion_cycle_error_golden():
  # R1 = R2 = rotation by theta about z: R2 R1 is a rotation by 2 theta, and for a rotation by
  # phi, |R - I|_F^2 = 4 (1 - cos phi). So the error is 4 (1 - cos 2 theta) / (8 (1 - cos theta))
  # = 2 cos^2(theta / 2). Translations t1 = t2 = t, R2 = R(theta) applied to t = (0, 0, 1)
  # (on the axis, so R2 t = t): |R2 t1 + t2|^2 / (|t1|^2 + |t2|^2) = |2t|^2 / (2 |t|^2) = 2,
  # weighted by the mask's mean (0.5).
  theta = 0.3
  r = transforms.axis_angle_to_matrix(tf.constant([[0.0, 0.0, theta]]))
  mask = np.zeros([1, H, W, 1], np.float32)
  mask[:, : H // 2] = 1.0
  field = _const_field([0.0, 0.0, 1.0])
  out = dfv.motion_field_consistency_loss(
      tf.zeros([1, H, W, 2]), tf.constant(mask), r, field, r, field
  )
  assert float(out['rotation_error']) == pytest.approx(2 * np.cos(theta / 2) ** 2, rel=1e-4)
  assert float(out['translation_error']) == pytest.approx(2 * 0.5, rel=1e-5)


def test_constant_motion_field_has_zero_smoothness():
  # All cyclic differences vanish: sqrt(1e-24 + 0) = 1e-12.
  assert float(dfv.motion_field_smoothness(_const_field([0.3, -2.0, 1.0], n=2))) < 1e-9
  varying = _const_field([0.3, -2.0, 1.0]).numpy()
  varying[0, 2:5, 3:6] = 0.0
  assert float(dfv.motion_field_smoothness(tf.constant(varying))) > 1e-3


def test_edge_aware_smoothness_golden():
  # Two identical rows: disparity [1, 1, 3, 3], image columns [0, 0, 1, 1] (all channels).
  # x-differences of d: [0, -2, 0]; image edge weights exp(-|dI|) = [1, e^-1, 1]; so
  # mean |dx d w| over 2 x 3 entries = 2 * (2 / e) / 6 = 2 / (3 e); the y-term is 0.
  disparity = tf.constant(np.tile([[1.0, 1.0, 3.0, 3.0]], (2, 1))[None, :, :, None], tf.float32)
  image = tf.constant(np.tile([[0.0, 0.0, 1.0, 1.0]], (2, 1))[None, :, :, None] * np.ones(3))
  value = dfv.edge_aware_smoothness(disparity, tf.cast(image, tf.float32))
  assert float(value) == pytest.approx(2 / (3 * np.e), rel=1e-5)
  # Mean normalisation: scaling depth leaves the normalised disparity unchanged.
  depth = tf.constant(np.random.default_rng(7).uniform(1, 9, (2, H, W, 1)), tf.float32)
  np.testing.assert_allclose(
      dfv.mean_normalized_disparity(depth).numpy(),
      dfv.mean_normalized_disparity(3.0 * depth).numpy(),
      rtol=1e-5,
  )


def test_movable_mask_and_dilation():
  labels = np.zeros([1, 20, 20], np.int32)
  labels[0, 10, 10] = 3  # one car pixel
  labels[0, 0, 0] = 2  # a building: not movable
  mask = dfv.movable_mask_from_labels(labels, (3, 4))
  assert float(tf.reduce_sum(mask)) == 1.0
  # Dilation by 8 px: a 17 x 17 square around the pixel (rows and columns 2 .. 18).
  dilated = dfv.dilate_mask(mask, 8).numpy()[0, ..., 0]
  assert dilated.sum() == 17 * 17 and dilated[2, 2] == 1 and dilated[1, 10] == 0
  logits = tf.one_hot(labels, 5) * 10.0
  np.testing.assert_array_equal(dfv.movable_mask_from_logits(logits, (3, 4)).numpy(), mask.numpy())
  # Eq. 2: T + m * residual.
  field = dfv.translation_field(
      tf.constant([[1.0, 0.0, 0.0]]), tf.ones([1, 20, 20, 3]), tf.constant(dilated[None, ..., None])
  ).numpy()
  np.testing.assert_allclose(field[0, 10, 10], [2.0, 1.0, 1.0])
  np.testing.assert_allclose(field[0, 0, 0], [1.0, 0.0, 0.0])


# ------------------------------------------------------------------------------------------------
# The relations, on clips [B, T, ...].

B, T = 2, 3


def _clip_inputs(seed=0):
  """A consistent static clip: constant depth 4, camera moving 0.4 m along x per frame."""
  rng = np.random.default_rng(seed)
  base = rng.uniform(0, 1, (B, H, W + 2 * (T - 1), 3)).astype(np.float32)
  # Frame t sees the texture shifted right by 2 t pixels (f tx / d = 2).
  frames = np.stack(
      [base[:, :, 2 * (T - 1) - 2 * t : 2 * (T - 1) - 2 * t + W] for t in range(T)], 1
  )
  depth = np.full([B, T, H, W, 1], 4.0, np.float32)
  zeros = np.zeros([B, T - 1, 3], np.float32)
  trans = np.tile(np.array([0.4, 0, 0], np.float32), (B, T - 1, 1))
  motion = {
      'rotation': zeros,
      'translation': trans,
      'residual_translation': np.zeros([B, T - 1, H, W, 3], np.float32),
      'rotation_backward': zeros,
      'translation_backward': -trans,
      'residual_translation_backward': np.zeros([B, T - 1, H, W, 3], np.float32),
  }
  batch = {'image': tf.constant(frames), 'intrinsics': _k(B)}
  return {k: tf.constant(v) for k, v in motion.items()}, tf.constant(depth), batch


def test_relation_consistent_clip_and_stale_peer_equals_live():
  motion, depth, batch = _clip_inputs()
  relation = dfv.DfvConsistency()
  live_depth = tf.Variable(depth)
  with tf.GradientTape(persistent=True) as tape:
    live_loss, metrics = relation({'depth': {'depth': live_depth}, 'motion': motion}, batch)
  # Consistent geometry: RGB and cycle errors vanish on the counted pixels.
  assert float(metrics['rgb_error']) == pytest.approx(0.0, abs=1e-5)
  assert float(metrics['rotation_error']) == pytest.approx(0.0, abs=1e-6)
  assert float(metrics['translation_error']) == pytest.approx(0.0, abs=1e-6)
  # Diagnostics: a 2-pixel shift moves 2 of the 10 columns out of the frame in each direction;
  # the field is the 0.4 m background translation everywhere; the depth is 4 m.
  assert float(metrics['inside_fraction']) == pytest.approx((W - 2) / W)
  assert float(metrics['translation_norm']) == pytest.approx(0.4)
  assert float(metrics['depth_mean']) == pytest.approx(4.0)
  grad = tape.gradient(live_loss, live_depth)
  assert grad is not None and np.all(np.isfinite(grad.numpy()))
  # A stale peer's depth (a constant) gives exactly the same loss.
  stale_loss, _ = relation(
      {'depth': {'depth': tf.constant(depth.numpy())}, 'motion': motion}, batch
  )
  assert float(stale_loss) == float(live_loss)
  # Perturbed motion: the loss grows and its gradient reaches the motion.
  wrong = dict(motion)
  wrong_t = tf.Variable(motion['translation'] * 0.5)
  wrong['translation'] = wrong_t
  with tf.GradientTape() as tape:
    wrong_loss, _ = relation({'depth': {'depth': depth}, 'motion': wrong}, batch)
  assert float(wrong_loss) > float(live_loss)
  g = tape.gradient(wrong_loss, wrong_t)
  assert g is not None and float(tf.reduce_sum(tf.abs(g))) > 0


def test_relation_learned_intrinsics_equal_given_ones():
  motion, depth, batch = _clip_inputs(seed=1)
  given, _ = dfv.DfvConsistency()({'depth': {'depth': depth}, 'motion': motion}, batch)
  learned_motion = dict(motion)
  learned_motion['intrinsics'] = tf.tile(_k(B)[:, None], [1, T - 1, 1, 1])
  relation = dfv.DfvConsistency(learned_intrinsics=True)
  preds = {'depth': {'depth': depth}, 'motion': learned_motion}
  learned, _ = relation(preds, {'image': batch['image'], 'intrinsics': tf.zeros([B, 3, 3])})
  assert float(learned) == pytest.approx(float(given), rel=1e-6)
  graph = tf.function(lambda p, b: relation(p, b)[0])(preds, batch)
  assert float(graph) == pytest.approx(float(learned), rel=1e-4, abs=1e-6)
  with pytest.raises(KeyError, match='learn_intrinsics'):
    relation({'depth': {'depth': depth}, 'motion': motion}, batch)


def test_mask_sources():
  motion, _, batch = _clip_inputs()
  # A residual field that is non-zero only where nothing can move: with a movable mask that is
  # empty there, the total field is the constant background -> smoothness ~0; without a mask
  # (whole frame) the residual acts and the field is not smooth.
  residual = np.zeros([B, T - 1, H, W, 3], np.float32)
  residual[:, :, 2:5, 2:5] = 1.0
  for key in ('residual_translation', 'residual_translation_backward'):
    motion[key] = tf.constant(residual)
  labels = np.zeros([B, T, H, W], np.int32)
  labels[:, :, H - 1, W - 1] = 3  # a car pixel; dilated by 1 px it stays far from the patch
  with_labels = dfv.DfvMotionSmoothness(
      label_key='semantics', movable_classes=(3, 4), foreground_dilation=1
  )
  value, _ = with_labels({'motion': motion}, {**batch, 'semantics': tf.constant(labels)})
  assert float(value) < 1e-9
  logits = tf.one_hot(labels, 5) * 5.0
  with_seg = dfv.DfvMotionSmoothness(
      segmentation_task='segmentation', movable_classes=(3, 4), foreground_dilation=1
  )
  assert with_seg.tasks == ('motion', 'segmentation')
  value, _ = with_seg({'motion': motion, 'segmentation': {'logits': logits}}, batch)
  assert float(value) < 1e-9
  whole, _ = dfv.DfvMotionSmoothness()({'motion': motion}, batch)
  assert float(whole) > 1e-3
  assert dfv.DfvMotionSmoothness().mask_source == 'none'
  with pytest.raises(KeyError, match="label_key='semantics'.*strips|label_key='semantics'"):
    with_labels({'motion': motion}, batch)
  with pytest.raises(ValueError, match='movable_classes'):
    dfv.DfvConsistency(segmentation_task='segmentation')


def _half_occluded(counted_pixel_floor, occlusion_tolerance=0.0, right_depth=3.0):
  # Zero motion (every pixel lands on itself), frame 2 at depth 2 everywhere. Frame 1 is at
  # depth 1 on the left half (columns 0-4: closer, counted) and `right_depth` on the right half
  # (farther than frame 2's surface: occluded unless within the tolerance). Frame 1 is black
  # and frame 2 grey 0.5, so |RGB difference| = 0.5 in every channel and pixel, and the depth
  # difference is 1 on the counted left half.
  depth1 = np.full([1, H, W, 1], 1.0, np.float32)
  depth1[:, :, W // 2 :] = right_depth
  pixels, z, valid = dfv.transform_depth_map(
      tf.constant(depth1), _eye(), _const_field([0, 0, 0]), _k()
  )
  return dfv.rgbd_consistency_loss(
      pixels,
      z,
      valid,
      tf.zeros([1, H, W, 3]),
      tf.fill([1, H, W, 1], 2.0),
      tf.fill([1, H, W, 3], 0.5),
      counted_pixel_floor=counted_pixel_floor,
      occlusion_tolerance=occlusion_tolerance,
  )


def test_counted_pixel_floor_one_is_the_published_mean_over_all_pixels():
  # Half the pixels counted. Published: mean over all pixels, excluded ones 0:
  # rgb = 0.5 * 1/2 = 0.25, depth = 1 * 1/2 = 0.5.
  out = _half_occluded(1.0)
  assert float(tf.reduce_mean(out['frame1_closer_to_camera'])) == 0.5
  assert float(out['rgb_error']) == pytest.approx(0.25, rel=1e-6)
  assert float(out['depth_error']) == pytest.approx(0.5, rel=1e-6)


def test_counted_pixel_floor_below_the_counted_fraction_gives_the_counted_mean():
  # Floor 0.25 < the counted fraction 0.5: the denominator is the counted pixels, so each term
  # is the mean over them: rgb = 0.5, depth = 1 (excluding pixels no longer lowers the loss).
  out = _half_occluded(0.25)
  assert float(out['rgb_error']) == pytest.approx(0.5, rel=1e-6)
  assert float(out['depth_error']) == pytest.approx(1.0, rel=1e-6)
  # Floor 0.75 > 0.5: divided by 0.75 of the pixels: rgb = 0.5 * 0.5 / 0.75 = 1/3,
  # depth = 0.5 / 0.75 = 2/3.
  out = _half_occluded(0.75)
  assert float(out['rgb_error']) == pytest.approx(1.0 / 3.0, rel=1e-6)
  assert float(out['depth_error']) == pytest.approx(2.0 / 3.0, rel=1e-6)


def test_occlusion_tolerance_counts_points_just_behind_the_surface():
  # The right half at depth 2.1 lies 5% behind frame 2's surface (2.0). Strict test (0): it is
  # excluded, counted fraction 1/2. Tolerance 0.1: 2.1 < 2 * 1.1 = 2.2 counts, so every pixel
  # counts; published mean: rgb = 0.5, depth = (1 * W/2 + 0.1 * W/2) / W = 0.55.
  strict = _half_occluded(1.0, 0.0, right_depth=2.1)
  assert float(tf.reduce_mean(strict['frame1_closer_to_camera'])) == 0.5
  slack = _half_occluded(1.0, 0.1, right_depth=2.1)
  assert float(tf.reduce_mean(slack['frame1_closer_to_camera'])) == 1.0
  assert float(slack['rgb_error']) == pytest.approx(0.5, rel=1e-6)
  assert float(slack['depth_error']) == pytest.approx(0.55, rel=1e-5)


def test_counted_pixel_floor_ssim_is_a_mean_over_the_pooled_weight():
  # Frame-1 depth equals frame 2's (dz = 0), so the proximity weight is s / (0 + s) = 1 on the
  # valid left half (columns 0-4) and 0 on the right half (marked out of view). Frame 2 is
  # 1 - frame 1 with frame 1 a 0.25-amplitude checkerboard: sigma_y = sigma_x and
  # sigma_xy = -sigma_x under any window weighting, so SSIM = (c2 - 2 s_x) / (c2 + 2 s_x) and
  # the error (1 - SSIM) / 2 = 2 s_x / (2 s_x + c2) = 1 - O(1e-4) everywhere (s_x >= ~0.05).
  # The 3x3 pooled weight over the W - 2 = 8 output columns is 1, 1, 1, 2/3, 1/3, 0, 0, 0: sum
  # 4 per row, half of the outputs. Published (floor 1): 0.5; floor 0.25: the weighted mean 1;
  # floor 0.75: 0.5 / 0.75 = 2/3.
  rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing='ij')
  checker = np.where((rows + cols) % 2 == 0, 0.25, -0.25).astype(np.float32)
  x = np.broadcast_to((0.5 + checker)[None, :, :, None], (1, H, W, 3)).copy()
  depth = tf.fill([1, H, W, 1], 2.0)
  pixels, z, valid = dfv.transform_depth_map(depth, _eye(), _const_field([0, 0, 0]), _k())
  valid = valid * tf.constant((cols < W // 2).astype(np.float32)[None, :, :, None])
  for floor, expected in ((1.0, 0.5), (0.25, 1.0), (0.75, 2.0 / 3.0)):
    out = dfv.rgbd_consistency_loss(
        pixels, z, valid, tf.constant(x), depth, tf.constant(1.0 - x), counted_pixel_floor=floor
    )
    assert float(out['ssim_error']) == pytest.approx(expected, abs=1e-3), floor


def test_counted_pixel_floor_and_tolerance_are_checked():
  with pytest.raises(ValueError, match='counted_pixel_floor'):
    _half_occluded(0.0)
  with pytest.raises(ValueError, match='occlusion_tolerance'):
    _half_occluded(1.0, -0.1)
  with pytest.raises(ValueError, match='counted_pixel_floor'):
    dfv.DfvConsistency(counted_pixel_floor=1.5)


def _rot_z(angle):
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float32)


def test_motion_from_ground_truth_golden():
  # cam_{t+1}_from_cam_t = (R, T), R a rotation of 0.3 rad about z, T = (1, 2, 3); an object
  # pixel moving by m = (0.5, 0, 0) in camera t+1's frame. Forward: axis-angle (0, 0, 0.3), T,
  # m. Backward: axis-angle (0, 0, -0.3), -R^T T, and -R^T m = (-0.5 cos 0.3, 0.5 sin 0.3, 0).
  rot, trans = _rot_z(0.3), np.array([1.0, 2.0, 3.0], np.float32)
  egomotion = np.eye(4, dtype=np.float32)
  egomotion[:3, :3], egomotion[:3, 3] = rot, trans
  object_motion = np.zeros([1, 1, H, W, 3], np.float32)
  object_motion[0, 0, 2, 3] = [0.5, 0.0, 0.0]
  out = dfv.motion_from_ground_truth(egomotion[None, None], object_motion)
  np.testing.assert_allclose(out['rotation'][0, 0], [0, 0, 0.3], atol=1e-6)
  np.testing.assert_allclose(out['rotation_backward'][0, 0], [0, 0, -0.3], atol=1e-6)
  np.testing.assert_allclose(out['translation'][0, 0], trans)
  np.testing.assert_allclose(out['translation_backward'][0, 0], -rot.T @ trans, atol=1e-6)
  np.testing.assert_array_equal(out['residual_translation'].numpy(), object_motion)
  back = out['residual_translation_backward'].numpy()
  np.testing.assert_allclose(
      back[0, 0, 2, 3], [-0.5 * np.cos(0.3), 0.5 * np.sin(0.3), 0], atol=1e-6
  )
  assert np.count_nonzero(back) == 2  # Zero wherever m is (x and y of the one moving pixel).
  # The backward motion undoes the forward one: R^T (R X + T) - R^T T = X.
  x = np.array([0.7, -1.1, 4.0], np.float32)
  undone = rot.T @ (rot @ x + trans) + out['translation_backward'][0, 0].numpy()
  np.testing.assert_allclose(undone, x, atol=1e-5)


def test_motion_from_ground_truth_at_a_fixed_speed():
  # speed=2: T = (1, 2, 3) (length sqrt 14) becomes 2 (1, 2, 3) / sqrt 14; the rotation, the
  # object motion and the backward translation's relation to the forward one (-R^T T) are
  # kept. A zero translation stays zero (no direction to keep).
  rot, trans = _rot_z(0.3), np.array([1.0, 2.0, 3.0], np.float32)
  egomotion = np.tile(np.eye(4, dtype=np.float32), [1, 2, 1, 1])
  egomotion[0, 0, :3, :3], egomotion[0, 0, :3, 3] = rot, trans
  object_motion = np.zeros([1, 2, H, W, 3], np.float32)
  object_motion[0, 0, 2, 3] = [0.5, 0.0, 0.0]
  out = dfv.motion_from_ground_truth(egomotion, object_motion, speed=2.0)
  scaled = 2.0 * trans / np.sqrt(14.0)
  np.testing.assert_allclose(out['translation'][0, 0], scaled, atol=1e-6)
  np.testing.assert_allclose(out['translation'][0, 1], [0, 0, 0])
  np.testing.assert_allclose(out['translation_backward'][0, 0], -rot.T @ scaled, atol=1e-6)
  np.testing.assert_allclose(out['rotation'][0, 0], [0, 0, 0.3], atol=1e-6)
  np.testing.assert_array_equal(out['residual_translation'].numpy(), object_motion)


def test_oracle_speed_needs_the_ground_truth_motion_and_a_positive_speed():
  with pytest.raises(ValueError, match=r"oracle_speed=1.0 .*motion_task='motion'"):
    dfv.DfvConsistency(oracle_speed=1.0)
  with pytest.raises(ValueError, match='oracle_speed must be > 0 metres, got 0.0'):
    dfv.DfvConsistency(motion_task=None, oracle_speed=0.0)
  relation = dfv.DfvConsistency(motion_task=None, oracle_speed=0.9)
  assert relation.oracle_speed == 0.9


def test_relation_with_ground_truth_motion_equals_it_given_as_predictions():
  # motion_task=None: DfvConsistency reads the mediator batch's egomotion and object motion.
  # On the consistent clip of _clip_inputs (R = I, T = (0.4, 0, 0) per pair, nothing moving),
  # its loss equals the relation's with those motions given as a motion task's predictions.
  motion, depth, batch = _clip_inputs()
  egomotion = np.tile(np.eye(4, dtype=np.float32), (B, T - 1, 1, 1))
  egomotion[..., 0, 3] = 0.4
  oracle_batch = dict(
      batch, egomotion=tf.constant(egomotion), object_motion=tf.zeros([B, T - 1, H, W, 3])
  )
  oracle = dfv.DfvConsistency(motion_task=None)
  assert oracle.tasks == ('depth',)
  assert oracle.mediator_label_keys == ('egomotion', 'object_motion')
  loss, metrics = oracle({'depth': {'depth': depth}}, oracle_batch)
  given, _ = dfv.DfvConsistency()({'depth': {'depth': depth}, 'motion': motion}, batch)
  assert float(loss) == pytest.approx(float(given), rel=1e-6, abs=1e-7)
  assert float(metrics['rgb_error']) == pytest.approx(0.0, abs=1e-5)
  # A wrong depth (halved) costs more under the exact motion.
  worse, _ = oracle({'depth': {'depth': depth * 0.5}}, oracle_batch)
  assert float(worse) > float(loss) + 1e-3
  with pytest.raises(KeyError, match="lacks \\['egomotion', 'object_motion'\\]"):
    oracle({'depth': {'depth': depth}}, batch)
  with pytest.raises(ValueError, match='learned_intrinsics=True needs a motion_task'):
    dfv.DfvConsistency(motion_task=None, learned_intrinsics=True)
  # oracle_speed at the true speed (0.4 m) changes nothing. At 0.8 m the translation doubles,
  # so each pixel moves by f tx / d = 2 px * (0.8 / 0.4) / (d / 4): the doubled depth moves
  # pixels as the true depth does under the true motion (same loss: the SSIM weights and the
  # occlusion test see depth ratios, the same in both), and the true depth moves them 4 px, as
  # the halved depth does under the true motion.
  same, _ = dfv.DfvConsistency(motion_task=None, oracle_speed=0.4)(
      {'depth': {'depth': depth}}, oracle_batch
  )
  assert float(same) == pytest.approx(float(loss), rel=1e-6, abs=1e-7)
  fast = dfv.DfvConsistency(motion_task=None, oracle_speed=0.8)
  doubled, _ = fast({'depth': {'depth': depth * 2.0}}, oracle_batch)
  assert float(doubled) == pytest.approx(float(loss), rel=1e-5, abs=1e-6)
  misaligned, _ = fast({'depth': {'depth': depth}}, oracle_batch)
  assert float(misaligned) == pytest.approx(float(worse), rel=1e-5)
  assert float(misaligned) > float(loss) + 1e-3


def test_pair_directions_fold_frames_and_swap_the_motion_between_directions():
  # Depth t+1 for frame t, so each folded tensor says which frames it came from: clip b, pair p
  # is folded row b * (T - 1) + p; forward's frame 1 is frame p (depth p + 1), frame 2 is p + 1.
  motion, _, batch = _clip_inputs()
  depth = tf.constant(
      np.tile(np.arange(1, T + 1, dtype=np.float32)[None, :, None, None, None], (B, 1, H, W, 1))
  )
  relation = dfv.DfvConsistency()
  forward, backward = relation.pair_directions(depth, motion, batch['image'])
  pairs = np.tile(np.arange(T - 1, dtype=np.float32), B)  # p of each folded row
  np.testing.assert_array_equal(forward['depth1'].numpy()[:, 0, 0, 0], pairs + 1)
  np.testing.assert_array_equal(forward['depth2'].numpy()[:, 0, 0, 0], pairs + 2)
  np.testing.assert_array_equal(backward['depth1'].numpy()[:, 0, 0, 0], pairs + 2)
  np.testing.assert_array_equal(backward['depth2'].numpy()[:, 0, 0, 0], pairs + 1)
  assert (forward['frames1'], forward['frames2']) == (slice(None, -1), slice(1, None))
  assert (backward['frames1'], backward['frames2']) == (slice(1, None), slice(None, -1))
  # Each direction carries the other's motion for the cycle terms: with no mask the field is
  # the background translation everywhere, +0.4 m x forward and -0.4 m backward.
  np.testing.assert_allclose(forward['field1'].numpy()[..., 0], 0.4, atol=1e-7)
  np.testing.assert_allclose(backward['field1'].numpy()[..., 0], -0.4, atol=1e-7)
  np.testing.assert_array_equal(forward['field2'].numpy(), backward['field1'].numpy())
  np.testing.assert_array_equal(forward['rotation1'].numpy(), backward['rotation2'].numpy())
  np.testing.assert_allclose(forward['rotation1'].numpy(), np.tile(np.eye(3), (B * (T - 1), 1, 1)))
  # The relation's loss is built from exactly these directions: the consistent clip of
  # _clip_inputs has zero RGB error through them.
  _, clip_depth, _ = _clip_inputs()
  _, metrics = relation({'depth': {'depth': clip_depth}, 'motion': motion}, batch)
  assert float(metrics['rgb_error']) == pytest.approx(0.0, abs=1e-5)


def test_ground_plane_depth_golden():
  # f_y = 20, c_y = 3.5, camera height 1.5: z(v) = 20 * 1.5 / (v - 3.5) = 30 / (v - 3.5).
  # Row 7: 30 / 3.5 = 8.5714; row 5: 30 / 1.5 = 20; row 4: 30 / 0.5 = 60; rows 0-3 are at or
  # above the horizon: the cap. With the cap at 50, row 4's 60 is capped too.
  depth = dfv.ground_plane_depth(_k(2), H, W, camera_height=1.5, max_depth=80.0).numpy()
  assert depth.shape == (2, H, W, 1)
  np.testing.assert_allclose(depth[:, 7], 30 / 3.5, rtol=1e-6)
  np.testing.assert_allclose(depth[:, 5], 20.0, rtol=1e-6)
  np.testing.assert_allclose(depth[:, 4], 60.0, rtol=1e-6)
  np.testing.assert_array_equal(depth[:, :4], 80.0)
  capped = dfv.ground_plane_depth(_k(), H, W, camera_height=1.5, max_depth=50.0).numpy()
  np.testing.assert_array_equal(capped[:, 4], 50.0)
  with pytest.raises(ValueError, match='camera_height'):
    dfv.ground_plane_depth(_k(), H, W, camera_height=0.0)


def _warmup_case():
  """The consistent clip with a wrong depth (3 for 4) and a wrong translation (x0.5), both
  variables, so every term has a gradient."""
  motion, depth, batch = _clip_inputs(seed=2)
  depth_var = tf.Variable(depth * 0.75)
  trans_var = tf.Variable(motion['translation'] * 0.5)
  motion = dict(motion)
  motion['translation'] = trans_var
  return motion, depth_var, trans_var, batch


@pytest.mark.parametrize('compiled', [False, True])
def test_motion_warmup_splits_the_gradients_then_ends(compiled):
  # Inside the warm-up the loss is L(depth, sg(motion)) + L(prior, motion): the depth's gradient
  # is that of the plain relation with a constant motion, the motion's that of the plain
  # relation on the ground-plane prior (a constant depth). From step 2 on it is the plain one.
  motion, depth_var, trans_var, batch = _warmup_case()
  plain = dfv.DfvConsistency()
  warm = dfv.DfvConsistency(motion_warmup_steps=2)
  step = tf.Variable(0, dtype=tf.int64)
  warm.bind_training_step(step)
  prior = dfv.ground_plane_depth(batch['intrinsics'], H, W)[:, None].numpy()
  prior = tf.constant(np.repeat(prior, T, axis=1))
  const_motion = {k: tf.constant(tf.convert_to_tensor(v).numpy()) for k, v in motion.items()}

  def run(relation, depth_fn, m):
    fn = lambda: _loss_and_grads(relation, depth_fn, m, depth_var, trans_var, batch)
    loss, metrics, g_depth, g_trans = tf.function(fn)() if compiled else fn()
    return float(loss), metrics, g_depth.numpy(), g_trans.numpy()

  depth_fn = lambda: tf.convert_to_tensor(depth_var)
  loss_d, _, g_depth_d, _ = run(plain, depth_fn, const_motion)
  loss_p, _, _, g_trans_p = run(plain, lambda: prior, motion)
  assert float(np.abs(g_depth_d).sum()) > 0 and float(np.abs(g_trans_p).sum()) > 0
  for s in (0, 1):
    step.assign(s)
    loss, metrics, g_depth, g_trans = run(warm, depth_fn, motion)
    assert loss == pytest.approx(loss_d + loss_p, rel=1e-5)
    assert float(metrics['motion_warmup']) == 1.0
    assert float(metrics['warmup_prior_loss']) == pytest.approx(loss_p, rel=1e-5)
    np.testing.assert_allclose(g_depth, g_depth_d, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(g_trans, g_trans_p, rtol=1e-4, atol=1e-7)
  loss_full, _, g_depth_full, g_trans_full = run(plain, depth_fn, motion)
  step.assign(2)
  loss, metrics, g_depth, g_trans = run(warm, depth_fn, motion)
  assert loss == pytest.approx(loss_full, rel=1e-6)
  assert float(metrics['motion_warmup']) == 0.0 and float(metrics['warmup_prior_loss']) == 0.0
  np.testing.assert_allclose(g_depth, g_depth_full, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(g_trans, g_trans_full, rtol=1e-4, atol=1e-7)


def _loss_and_grads(relation, depth_fn, motion, depth_var, trans_var, batch):
  with tf.GradientTape() as tape:
    loss, metrics = relation({'depth': {'depth': depth_fn()}, 'motion': motion}, batch)
  grads = tape.gradient(loss, [depth_var, trans_var])
  grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, [depth_var, trans_var])]
  return loss, metrics, grads[0], grads[1]


def test_motion_warmup_unbound_is_the_plain_relation_and_bad_options_are_named():
  motion, depth_var, _, batch = _warmup_case()
  preds = {'depth': {'depth': tf.convert_to_tensor(depth_var)}, 'motion': motion}
  plain, _ = dfv.DfvConsistency()(preds, batch)
  unbound, metrics = dfv.DfvConsistency(motion_warmup_steps=5)(preds, batch)
  assert float(unbound) == pytest.approx(float(plain), rel=1e-6)
  assert float(metrics['motion_warmup']) == 0.0
  with pytest.raises(ValueError, match='motion_warmup_steps must be >= 0'):
    dfv.DfvConsistency(motion_warmup_steps=-1)
  with pytest.raises(ValueError, match='motion_warmup_steps must be an integer'):
    dfv.DfvConsistency(motion_warmup_steps=2.5)
  with pytest.raises(ValueError, match='motion_task=None'):
    dfv.DfvConsistency(motion_task=None, motion_warmup_steps=3)
  with pytest.raises(ValueError, match='warmup_camera_height'):
    dfv.DfvConsistency(motion_warmup_steps=3, warmup_camera_height=-1.0)
