"""Tests for the warp-based relations: photometric (Eq. 3) and segmentation
warp (Eq. 4).

Consistent predictions are built from geometry: views of a textured plane
are ray cast analytically (texture is a function of the 3D point, so
brightness constancy holds exactly), and the true depth and motion are fed to
the relation. Perturbed predictions must give a clearly larger loss with
finite, non-zero gradients.
"""

import numpy as np
import tensorflow as tf

from taskology_tf.consistency import base
from taskology_tf.consistency import photometric
from taskology_tf.consistency import segmentation_warp
from taskology_tf.geometry import camera
from taskology_tf.geometry import transforms

H, W = 24, 32
K = np.array([[24.0, 0.0, 15.5], [0.0, 24.0, 11.5], [0.0, 0.0, 1.0]])
# Plane Z = 0.1 X - 0.15 Y + 6 in frame 0 (= world): n . X = h with
# n = (0.1, -0.15, -1), h = -6.
PLANE_N = np.array([0.1, -0.15, -1.0])
PLANE_H = -6.0
ROTATION = np.array([0.01, -0.02, 0.015])  # cam_{t+1}_from_cam_t, axis-angle
TRANSLATION = np.array([0.3, -0.1, 0.2])  # metres


def _rotation_matrix(axis_angle):
  return (
      transforms.axis_angle_to_matrix(tf.constant(axis_angle, tf.float32))
      .numpy()
      .astype(np.float64)
  )


def _render(cam_from_world, texture_fn, plane_offset=np.zeros(3)):
  """Ray casts the plane (translated by plane_offset) into one camera.

  The ray through pixel p is r = K^-1 p in the camera; in world coordinates
  X = R^T (lam r - t). n . X = h gives lam = (h + n.R^T t) / (n.R^T r), and
  lam is the depth because r_z = 1. A plane translated by m satisfies
  n . (X - m) = h, i.e. h -> h + n . m.
  """
  rotation, translation = cam_from_world
  h = PLANE_H + PLANE_N @ plane_offset
  rays = np.einsum(
      'ij,hwj->hwi', np.linalg.inv(K), camera.pixel_grid(H, W).numpy().astype(np.float64)
  )
  n_cam = rotation @ PLANE_N  # n . R^T v = (R n) . v
  depth = (h + n_cam @ translation) / (rays @ n_cam)
  points = np.einsum('ji,hwj->hwi', rotation, depth[..., None] * rays - translation)
  return depth[..., None], texture_fn(points - plane_offset)


def _smooth_texture(channels, amplitude, seed):
  rng = np.random.default_rng(seed)
  freqs = rng.normal(0.0, 0.8, (2, channels, 3))
  phases = rng.uniform(0, 2 * np.pi, (2, channels))

  def texture(points):
    return (
        0.5
        + amplitude * np.sin(points @ freqs[0].T + phases[0])
        + 0.5 * amplitude * np.sin(points @ freqs[1].T + phases[1])
    )

  return texture


def _poses(num_frames, rotation=ROTATION, translation=TRANSLATION):
  """cam_t_from_world for t = 0..T-1 with the same step motion each time."""
  step_r = _rotation_matrix(rotation)
  poses = [(np.eye(3), np.zeros(3))]
  for _ in range(num_frames - 1):
    r, t = poses[-1]
    poses.append((step_r @ r, step_r @ t + translation))
  return poses


def _clip(texture_fn, num_frames=2, batch=2, object_motion=np.zeros(3)):
  """Renders [B, T, ...] depth / values; the plane moves by object_motion
  (world = frame 0 coordinates) per frame."""
  depths, values = [], []
  for t, pose in enumerate(_poses(num_frames)):
    depth, value = _render(pose, texture_fn, t * object_motion)
    depths.append(depth)
    values.append(value)
  depth = np.stack(depths)[None].repeat(batch, 0).astype(np.float32)
  value = np.stack(values)[None].repeat(batch, 0).astype(np.float32)
  return depth, value


def _motion(batch, num_frames, rotation=ROTATION, translation=TRANSLATION):
  return {
      'rotation': tf.constant(np.broadcast_to(rotation, (batch, num_frames - 1, 3)), tf.float32),
      'translation': tf.constant(
          np.broadcast_to(translation, (batch, num_frames - 1, 3)), tf.float32
      ),
  }


def _batch(image, batch):
  return {
      'image': tf.constant(image),
      'intrinsics': tf.constant(np.broadcast_to(K, (batch, 3, 3)), tf.float32),
  }


def _shift_clip(channels, seed):
  """Exact case: fronto-parallel plane at d = 4, pure translation
  tx = 1/3: X2 = X1 + (tx, 0, 0) so u2 = u1 + fx tx / d = u1 + 2 (pixel
  centres stay on the grid, bilinear sampling is exact). With a random
  strip `tex` of width W + 2: I1(u) = tex[u + 2], I2(u) = I1(u - 2) = tex[u].
  """
  tex = np.random.default_rng(seed).uniform(0, 1, (H, W + 2, channels))
  frames = np.stack([tex[:, 2:], tex[:, :W]])[None].astype(np.float32)
  depth = np.full((1, 2, H, W, 1), 4.0, np.float32)
  motion = _motion(
      1, 2, rotation=np.zeros(3), translation=np.array([4.0 * 2.0 / K[0, 0], 0.0, 0.0])
  )
  return frames, depth, motion


def _loss_and_grads(relation, predictions, batch, watched):
  with tf.GradientTape() as tape:
    tape.watch(watched)
    loss, metrics = relation(predictions, batch)
  return loss, metrics, tape.gradient(loss, watched)


def _assert_useful(grads):
  for grad in grads:
    grad = tf.convert_to_tensor(grad).numpy()
    assert np.all(np.isfinite(grad))
    assert np.any(grad != 0.0)


def test_photometric_exact_for_integer_shift():
  frames, depth, motion = _shift_clip(3, seed=0)
  relation = photometric.PhotometricConsistency()
  loss, metrics = relation(
      {'depth': {'depth': tf.constant(depth)}, 'egomotion': motion}, _batch(frames, 1)
  )
  assert loss.numpy() < 1e-5
  assert metrics['forward_loss'].numpy() < 1e-5
  assert metrics['backward_loss'].numpy() < 1e-5
  # Two columns leave the image each way, one more is lost to the SSIM
  # window erosion: (W - 3) / W of the pixels count.
  np.testing.assert_allclose(metrics['valid_fraction'].numpy(), (W - 3) / W, atol=1e-6)


def test_photometric_consistent_scene_beats_perturbations():
  texture = _smooth_texture(3, 0.2, seed=1)
  depth, image = _clip(texture, num_frames=3, batch=2)
  batch = _batch(image, 2)
  relation = photometric.PhotometricConsistency()
  truth = {'depth': {'depth': tf.constant(depth)}, 'egomotion': _motion(2, 3)}
  loss, metrics = relation(truth, batch)
  # Residual is bilinear interpolation error of a smooth texture only.
  assert loss.numpy() < 3e-3, loss
  assert metrics['valid_fraction'].numpy() > 0.5

  perturbations = {
      'depth': {'depth': {'depth': tf.constant(depth * 1.3)}, 'egomotion': _motion(2, 3)},
      'rotation': {
          'depth': {'depth': tf.constant(depth)},
          'egomotion': _motion(2, 3, rotation=ROTATION + 0.03),
      },
      'translation': {
          'depth': {'depth': tf.constant(depth)},
          'egomotion': _motion(2, 3, translation=TRANSLATION * 0.5),
      },
  }
  for name, predictions in perturbations.items():
    watched = [
        predictions['depth']['depth'],
        predictions['egomotion']['rotation'],
        predictions['egomotion']['translation'],
    ]
    bad_loss, _, grads = _loss_and_grads(relation, predictions, batch, watched)
    assert bad_loss.numpy() > 5 * loss.numpy(), name
    _assert_useful(grads)


def test_photometric_object_motion_forward_and_backward():
  # The plane moves by m per frame (world = frame 0). In frame 1's camera
  # frame that displacement is R m, so X1 = R X0 + T + R m: object_motion
  # = R m. The backward field -R^T (R m) = -m is exact here (rigid, uniform).
  m = np.array([0.4, 0.0, -0.3])
  texture = _smooth_texture(3, 0.2, seed=2)
  depth, image = _clip(texture, num_frames=2, batch=1, object_motion=m)
  batch = _batch(image, 1)
  relation = photometric.PhotometricConsistency()
  rm = _rotation_matrix(ROTATION) @ m
  field = tf.constant(np.broadcast_to(rm, (1, 1, H, W, 3)), tf.float32)
  static = {'depth': {'depth': tf.constant(depth)}, 'egomotion': _motion(1, 2)}
  static_loss, _ = relation(static, batch)
  moving = {
      'depth': {'depth': tf.constant(depth)},
      'egomotion': dict(_motion(1, 2), object_motion=field),
  }
  moving_loss, _ = relation(moving, batch)
  backward = tf.constant(np.broadcast_to(-m, (1, 1, H, W, 3)), tf.float32)
  explicit = {
      'depth': {'depth': tf.constant(depth)},
      'egomotion': dict(_motion(1, 2), object_motion=field, object_motion_backward=backward),
  }
  explicit_loss, _ = relation(explicit, batch)
  assert moving_loss.numpy() < 3e-3
  np.testing.assert_allclose(explicit_loss.numpy(), moving_loss.numpy(), atol=1e-6)
  assert static_loss.numpy() > 5 * moving_loss.numpy()
  # Gradients reach the object motion field.
  half_field = field * 0.5
  _, _, grads = _loss_and_grads(
      relation,
      static | {'egomotion': dict(_motion(1, 2), object_motion=half_field)},
      batch,
      [half_field],
  )
  _assert_useful(grads)


def test_segmentation_warp_exact_for_integer_shift():
  logits, depth, motion = _shift_clip(5, seed=3)
  logits = 4.0 * logits  # Any logits: the relation compares softmaxes.
  relation = segmentation_warp.SegmentationWarpConsistency()
  loss, metrics = relation(
      {
          'segmentation': {'logits': tf.constant(logits)},
          'depth': {'depth': tf.constant(depth)},
          'egomotion': motion,
      },
      _batch(np.zeros((1, 2, H, W, 3), np.float32), 1),
  )
  assert loss.numpy() < 1e-5
  np.testing.assert_allclose(metrics['valid_fraction'].numpy(), (W - 2) / W, atol=1e-6)


def test_segmentation_warp_consistent_scene_beats_perturbations():
  texture = _smooth_texture(4, 3.0, seed=4)  # Logits of 4 classes.
  depth, logits = _clip(texture, num_frames=2, batch=2)
  batch = _batch(np.zeros((2, 2, H, W, 3), np.float32), 2)
  relation = segmentation_warp.SegmentationWarpConsistency()
  truth = {
      'segmentation': {'logits': tf.constant(logits)},
      'depth': {'depth': tf.constant(depth)},
      'egomotion': _motion(2, 2),
  }
  loss, _ = relation(truth, batch)
  assert loss.numpy() < 1e-2, loss
  assert relation.tasks == ('segmentation', 'depth', 'egomotion')

  noisy_logits = tf.constant(
      logits + np.random.default_rng(5).normal(0, 1.0, logits.shape), tf.float32
  )
  wrong_depth = tf.constant(depth * 0.7)
  for predictions in [
      dict(truth, segmentation={'logits': noisy_logits}),
      dict(truth, depth={'depth': wrong_depth}),
  ]:
    watched = [predictions['segmentation']['logits'], predictions['depth']['depth']]
    bad_loss, _, grads = _loss_and_grads(relation, predictions, batch, watched)
    assert bad_loss.numpy() > 3 * loss.numpy()
    _assert_useful(grads)


def test_relations_under_tf_function_with_unknown_batch_and_time():
  texture = _smooth_texture(3, 0.2, seed=6)
  depth, image = _clip(texture, num_frames=3, batch=2)
  relation = photometric.PhotometricConsistency(name='photo')
  assert isinstance(relation, base.Relation)
  assert relation.tasks == ('depth', 'egomotion')

  @tf.function(
      input_signature=[
          tf.TensorSpec([None, None, H, W, 1], tf.float32),
          tf.TensorSpec([None, None, 3], tf.float32),
          tf.TensorSpec([None, None, 3], tf.float32),
          tf.TensorSpec([None, None, H, W, 3], tf.float32),
          tf.TensorSpec([None, 3, 3], tf.float32),
      ]
  )
  def run(depth, rotation, translation, image, intrinsics):
    return relation(
        {
            'depth': {'depth': depth},
            'egomotion': {'rotation': rotation, 'translation': translation},
        },
        {'image': image, 'intrinsics': intrinsics},
    )

  motion = _motion(2, 3)
  batch = _batch(image, 2)
  loss, metrics = run(
      tf.constant(depth),
      motion['rotation'],
      motion['translation'],
      batch['image'],
      batch['intrinsics'],
  )
  eager_loss, _ = relation({'depth': {'depth': tf.constant(depth)}, 'egomotion': motion}, batch)
  # Graph-mode kernels may round differently from eager ones.
  np.testing.assert_allclose(loss.numpy(), eager_loss.numpy(), atol=1e-6)
  assert set(metrics) == {'forward_loss', 'backward_loss', 'valid_fraction'}
