"""metrics/motion_fit.py: the free ego-motion fit recovers a known motion, and its helpers."""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.consistency import dfv
from taskology_tf.geometry import warp
from taskology_tf.metrics import motion_fit

H, W = 32, 48
FOCAL = 24.0
DEPTH = 5.0


def _plane_pair(translation):
  """One clip of 2 frames of a textured fronto-parallel plane DEPTH metres away, the camera
  moving sideways by `translation` (t_z = 0, so the plane stays at DEPTH in frame 2).

  Frame 2 is a smooth texture; frame 1 is frame 2 resampled where frame 1's pixels land in
  frame 2 under the motion: exactly what the photometric term compares, so the true motion
  gives zero RGB error away from the borders. The flow is uniform, FOCAL * t / DEPTH px.
  """
  v, u = np.mgrid[0:H, 0:W].astype(np.float32)
  tex = np.stack(
      [
          0.5 + 0.2 * np.sin(u / 3.1) * np.cos(v / 4.3),
          0.5 + 0.2 * np.sin(u / 2.3 + v / 3.7),
          0.5 + 0.2 * np.cos(u / 4.9 - v / 2.9),
      ],
      -1,
  )
  k = np.array([[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1]], np.float32)
  depth = tf.fill([1, H, W, 1], DEPTH)
  field = tf.broadcast_to(tf.constant(translation, tf.float32), [1, H, W, 3])
  pixels, _, _ = dfv.transform_depth_map(depth, tf.eye(3)[tf.newaxis], field, k[np.newaxis])
  frame1, _ = warp.bilinear_sample(tf.constant(tex[np.newaxis]), pixels)
  image = tf.stack([frame1[0], tf.constant(tex)], 0)[tf.newaxis]  # [1, 2, H, W, 3]
  batch = {'image': image, 'intrinsics': tf.constant(k[np.newaxis])}
  return tf.fill([1, 2, H, W, 1], DEPTH), batch, k


def test_fit_recovers_a_sideways_translation_on_a_textured_plane():
  # Truth: t = (0.3, -0.2, 0) m at 5 m depth and f = 24 px -> a uniform flow of (1.44, -0.96) px.
  # The fit starts 0.01 m from zero in a random direction; the rotation's learning rate is tiny,
  # so the rotation (which a plane at one depth cannot tell from a sideways move) stays ~0 and
  # the translation alone must explain the flow: its direction must end within a few degrees
  # of the truth and its norm near the true 0.36 m, with the loss below its start.
  truth = np.array([0.3, -0.2, 0.0], np.float32)
  depth, batch, _ = _plane_pair(truth)
  relation = dfv.DfvConsistency(counted_pixel_floor=0.25, occlusion_tolerance=1e9)
  init = motion_fit.initial_motion(1, 1, 0.01, seed=3)
  fits = motion_fit.fit_free_motion(
      relation,
      depth,
      batch,
      init,
      steps=150,
      learning_rate=0.01,
      record_at=[0, 150],
      rotation_learning_rate=1e-9,
  )
  assert sorted(fits) == [0, 150]
  t = fits[150]['translation'][0, 0]
  cos = t @ truth / (np.linalg.norm(t) * np.linalg.norm(truth))
  assert np.degrees(np.arccos(min(cos, 1.0))) < 5.0
  assert np.linalg.norm(t) == pytest.approx(np.linalg.norm(truth), rel=0.15)
  assert fits[150]['loss'] < 0.5 * fits[0]['loss']
  # The backward translation (frame 2 -> 1) is the inverse sideways move.
  tb = fits[150]['translation_backward'][0, 0]
  assert tb @ -truth / (np.linalg.norm(tb) * np.linalg.norm(truth)) > np.cos(np.radians(5.0))
  # The start is recorded as given, before any update.
  np.testing.assert_array_equal(fits[0]['translation'], init['translation'])


def test_initial_motion_zero_rotation_and_given_norm():
  init = motion_fit.initial_motion(4, 2, 0.01, seed=0)
  assert set(init) == {'rotation', 'translation', 'rotation_backward', 'translation_backward'}
  for k in ('rotation', 'rotation_backward'):
    np.testing.assert_array_equal(init[k], np.zeros([4, 2, 3]))
  for k in ('translation', 'translation_backward'):
    assert init[k].shape == (4, 2, 3) and init[k].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(init[k], axis=-1), 0.01, rtol=1e-5)
  # Forward and backward are drawn independently; the same seed gives the same start.
  assert not np.allclose(init['translation'], -init['translation_backward'])
  again = motion_fit.initial_motion(4, 2, 0.01, seed=0)
  np.testing.assert_array_equal(again['translation'], init['translation'])


def test_ego_errors_against_ground_truth():
  # One pair: the truth turns 2 deg about the camera's y axis and moves (0, 0, 1) m; the
  # prediction is no rotation and (1, 0, 1) m -> rotation error 2 deg, direction error 45 deg,
  # |t| ratio sqrt(2); the backward rotation is 0, so the cycle error is 0.
  a = np.radians(2.0)
  gt = np.eye(4)
  gt[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
  gt[:3, 3] = [0, 0, 1]
  zero = np.zeros([1, 1, 3], np.float32)
  errors = motion_fit.ego_errors(
      zero, np.array([[[1.0, 0, 1.0]]], np.float32), zero, gt[np.newaxis, np.newaxis]
  )
  np.testing.assert_allclose(errors['rotation_error_deg'], [2.0], atol=1e-3)
  np.testing.assert_allclose(errors['translation_direction_error_deg'], [45.0], atol=1e-3)
  np.testing.assert_allclose(errors['translation_scale_ratio'], [np.sqrt(2)], rtol=1e-6)
  np.testing.assert_allclose(errors['cycle_rotation_error_deg'], [0.0], atol=1e-3)


def test_fit_rejects_bad_options():
  depth, batch, _ = _plane_pair(np.zeros(3, np.float32))
  relation = dfv.DfvConsistency()
  init = motion_fit.initial_motion(1, 1, 0.01, seed=0)
  with pytest.raises(ValueError, match='learning_rate'):
    motion_fit.fit_free_motion(relation, depth, batch, init, 5, 0.0, [0])
  with pytest.raises(KeyError, match='rotation_backward'):
    bad = {k: v for k, v in init.items() if k != 'rotation_backward'}
    motion_fit.fit_free_motion(relation, depth, batch, bad, 5, 0.01, [0])
  # One clip of two frames needs [1, 1, 3] starts; a start for two pairs is named, with both shapes.
  wrong = dict(init, translation=np.zeros([1, 2, 3], np.float32))
  with pytest.raises(ValueError, match=r"init\['translation'\] has shape \(1, 2, 3\).*\(1, 1, 3\)"):
    motion_fit.fit_free_motion(relation, depth, batch, wrong, 5, 0.01, [0])
  with pytest.raises(ValueError, match=r'\[B, T, H, W, 1\]'):
    motion_fit.fit_free_motion(relation, depth[0], batch, init, 5, 0.01, [0])
