"""Tests of the synthetic world: scenes, ray casting, exact ground truth, TFDS.

Geometry tests render small images (48x64) of a few scenes; the TFDS tests
build a 24x32 dataset of a handful of examples into pytest's tmp_path.
"""

import functools
import os
import subprocess
import sys

import numpy as np
import pytest

from taskology_tf.datasets.synthetic_world import builder as sw_builder
from taskology_tf.datasets.synthetic_world import render
from taskology_tf.datasets.synthetic_world import scene as scene_lib

H, W = 48, 64
SEEDS = tuple(range(6))
DT = scene_lib.DEFAULT_TIME_STEP
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Everything that must not depend on the appearance domain.
GEOMETRY_KEYS = (
    'depth',
    'normals',
    'semantics',
    'instance',
    'intrinsics',
    'egomotion',
    'object_motion',
    'camera_to_vehicle',
    'lidar_points',
    'lidar_valid',
    'lidar_classes',
    'lidar_track_ids',
    'boxes',
    'box_classes',
    'track_ids',
    'num_boxes',
    'scene_seed',
)


@functools.lru_cache(maxsize=None)
def _scene(seed):
  return scene_lib.generate_scene(seed)


@functools.lru_cache(maxsize=None)
def _example(seed, domain='real'):
  """Cached render; tests must not modify the arrays."""
  return render.render_example(_scene(seed), H, W, domain)


def _rays(k, uv):
  """[N, 3] K^-1 [u, v, 1] for pixel coordinates uv [N, 2]."""
  return np.concatenate([uv, np.ones((uv.shape[0], 1))], 1) @ np.linalg.inv(k).T


def _project(k, x):
  """[N, 2] pixel coordinates of camera points x [N, 3] (z > 0)."""
  p = x @ k.T
  return p[:, :2] / p[:, 2:3]


# ---------------------------------------------------------------------------
# Determinism, seeds, domains.


def test_same_seed_renders_identical_arrays():
  a = render.render_example(scene_lib.generate_scene(3), H, W, 'real')
  b = render.render_example(scene_lib.generate_scene(3), H, W, 'real')
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_different_seeds_differ():
  a, b = _example(0), _example(1)
  assert not np.array_equal(a['image'], b['image'])
  assert not np.array_equal(a['depth'], b['depth'])
  assert not np.array_equal(a['egomotion'], b['egomotion'])


def test_example_seeds_are_deterministic_and_disjoint_across_splits():
  seeds = {(s, k): scene_lib.example_seed(7, s, k) for s in range(3) for k in range(200)}
  assert len(set(seeds.values())) == len(seeds)  # no scene shared
  assert all(0 <= v < 2**63 for v in seeds.values())  # fits int64
  # Independent of generation order: recomputing one index alone agrees.
  assert scene_lib.example_seed(7, 2, 150) == seeds[(2, 150)]
  assert scene_lib.example_seed(8, 2, 150) != seeds[(2, 150)]


def test_split_example_is_the_seeded_scene():
  config = sw_builder.make_config('sim', 24, 32, seed=5)
  ex = sw_builder.render_split_example(config, 'validation', 4)
  seed = scene_lib.example_seed(5, sw_builder.SPLIT_INDICES['validation'], 4)
  direct = render.render_example(scene_lib.generate_scene(seed), 24, 32, 'sim')
  assert ex['scene_seed'] == seed
  np.testing.assert_array_equal(ex['image'], direct['image'])
  np.testing.assert_array_equal(ex['depth'], direct['depth'])


def test_configs_any_size_and_split_sizes(tmp_path):
  assert sw_builder.make_config('real', 64, 96).name == 'real_64x96'
  assert (
      sw_builder.make_config('sim', 128, 416)
      is sw_builder.SyntheticWorld.builder_configs['sim_128x416']
  )
  # A predefined name with other split sizes is still usable.
  config = sw_builder.make_config('real', 64, 96, num_train=5, num_test=0)
  assert config.name == 'real_64x96'
  assert config.split_sizes == {'train': 5, 'validation': 200, 'test': 0}
  builder = sw_builder.SyntheticWorld(config=config, data_dir=str(tmp_path))
  assert builder.builder_config.num_train == 5
  assert not builder.is_prepared()
  with pytest.raises(ValueError, match='domain'):
    sw_builder.make_config('cartoon', 64, 96)


def test_sim_and_real_share_geometry_but_not_appearance():
  for seed in SEEDS[:3]:
    sim, real = _example(seed, 'sim'), _example(seed, 'real')
    for key in GEOMETRY_KEYS:
      np.testing.assert_array_equal(sim[key], real[key], err_msg=key)
    assert sim['domain'] == 'sim' and real['domain'] == 'real'
    assert np.mean(sim['image'] != real['image']) > 0.5


def test_real_domain_is_textured_where_sim_is_flat():
  # Neighbouring pixels on the same planar face (same instance and normal):
  # flat in `sim` (constant albedo and normal), textured in `real`. Noise
  # alone (sigma = 2 grey levels) gives a mean |difference| of
  # 2 sigma / sqrt(pi) ~ 2.3 levels, so a mean above twice that (and 10x
  # what sim shows) means texture dominates.
  for seed in SEEDS[:3]:
    sim, real = _example(seed, 'sim'), _example(seed, 'real')
    same = (
        (sim['instance'][..., 1:] == sim['instance'][..., :-1])
        & (sim['instance'][..., 1:] >= 0)
        & np.all(sim['normals'][:, :, 1:] == sim['normals'][:, :, :-1], -1)
    )

    def mean_step(img):
      step = np.abs(np.diff(img.astype(np.float64), axis=2)).mean(-1)
      return step[same].mean()

    assert mean_step(sim['image']) < 0.5
    assert mean_step(real['image']) > 4.6


def test_features_match_the_builder_spec():
  ex = _example(0)
  for key, (shape, dtype) in sw_builder.feature_spec(H, W).items():
    assert ex[key].shape == shape, key
    assert ex[key].dtype == dtype, key
  assert isinstance(ex['domain'], str)
  assert ex['scene_seed'].dtype == np.int64


# ---------------------------------------------------------------------------
# Camera geometry.


def test_intrinsics_follow_the_pixel_centre_convention():
  # Pixel centres at integer u, so the image spans u in [-0.5, W - 0.5]; a
  # 90 degree horizontal FOV puts the left and right image edges at
  # x / z = -+tan(45 deg) = -+1.
  k = render.intrinsics_from_fov(H, W, 90.0)
  edges = _rays(k, np.array([[-0.5, (H - 1) / 2], [W - 0.5, (H - 1) / 2]]))
  np.testing.assert_allclose(edges[:, 0], [-1.0, 1.0], atol=1e-12)
  np.testing.assert_allclose(k, [[W / 2, 0, (W - 1) / 2], [0, W / 2, (H - 1) / 2], [0, 0, 1]])


def test_ground_depth_is_z_of_the_plane_intersection():
  # The ray through (u, v) is d = K^-1 [u, v, 1] = ((u-cx)/fx, (v-cy)/fy, 1).
  # The camera has zero pitch and roll at height h, so the ground is the
  # plane y = h in the camera frame (y down). X = z d meets it where
  # z (v - cy) / fy = h, i.e. depth z = fy h / (v - cy) for rows below the
  # horizon, whatever the column (a ray length would grow with |u - cx|).
  for seed in SEEDS:
    ex = _example(seed)
    k = ex['intrinsics'].astype(np.float64)
    ground = ex['semantics'] == scene_lib.GROUND
    assert ground.any()
    v = np.broadcast_to(np.arange(H)[None, :, None], ground.shape)[ground]
    assert np.all(v > k[1, 2])  # below the horizon
    expected = k[1, 1] * scene_lib.CAMERA_HEIGHT / (v - k[1, 2])
    np.testing.assert_allclose(ex['depth'][..., 0][ground], expected, rtol=1e-5)


def test_sky_depth_and_normals():
  for seed in SEEDS:
    ex = _example(seed)
    sky = ex['semantics'] == scene_lib.SKY
    assert sky.any()
    assert np.all(ex['depth'][..., 0][sky] == render.SKY_DEPTH)
    assert np.all(ex['depth'][..., 0][~sky] < render.SKY_DEPTH)
    np.testing.assert_array_equal(ex['normals'][sky], np.broadcast_to([0, 0, -1.0], (sky.sum(), 3)))


def test_normals_are_unit_face_the_camera_and_ground_points_up():
  uv = render.pixel_grid(H, W)
  for seed in SEEDS:
    ex = _example(seed)
    k = ex['intrinsics'].astype(np.float64)
    n = ex['normals'].reshape(3, -1, 3).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-6)
    facing = np.sum(n * _rays(k, uv)[None], axis=-1)
    assert np.all(facing < 0)
    # Up in the world is -y in a camera with zero pitch and roll.
    ground = ex['semantics'] == scene_lib.GROUND
    np.testing.assert_allclose(
        ex['normals'][ground], np.broadcast_to([0, -1.0, 0], (ground.sum(), 3)), atol=1e-6
    )


def test_egomotion_is_rigid_and_matches_the_ego_path():
  for seed in SEEDS:
    ex, sc = _example(seed), _scene(seed)
    for e in ex['egomotion'].astype(np.float64):
      np.testing.assert_allclose(e[:3, :3] @ e[:3, :3].T, np.eye(3), atol=1e-6)
      assert np.linalg.det(e[:3, :3]) == pytest.approx(1.0, abs=1e-6)
      np.testing.assert_array_equal(e[3], [0, 0, 0, 1])
      # Constant speed v and yaw rate w: the camera (on the vehicle's axis)
      # moves along a circular arc; the chord is 2 (v / w) sin(w dt / 2).
      w, v = sc.ego_yaw_rate, sc.ego_speed
      chord = 2 * v / w * np.sin(w * DT / 2)
      assert np.linalg.norm(e[:3, 3]) == pytest.approx(chord, rel=1e-5)
      # Driving forward: static points come closer (camera z decreases).
      assert e[2, 3] < 0


def test_accelerated_casting_equals_brute_force():
  # The per-box ray rectangles only skip (ray, box) pairs that cannot hit.
  k = render.intrinsics_from_fov(H, W)
  uv = render.pixel_grid(H, W)
  for seed in SEEDS[:3]:
    sc = _scene(seed)
    for t in (0.0, 0.2):
      fast = render.cast_camera_rays(sc, k, t, uv, (H, W))
      slow = render.cast_camera_rays(sc, k, t, uv)
      np.testing.assert_array_equal(fast['instance'], slow['instance'])
      np.testing.assert_allclose(fast['depth'], slow['depth'], rtol=1e-12)
      fast_l = render.cast_lidar(sc, t, accelerate=True)
      slow_l = render.cast_lidar(sc, t, accelerate=False)
      for a, b in zip(fast_l, slow_l):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# ---------------------------------------------------------------------------
# The warp of paper Sec. 3.2.1: z' p' = K R K^-1 z p + K (m + T).


def _warp(ex, i):
  """Predicted frame i+1 points X' = R X + T + m for all pixels of frame i."""
  k = ex['intrinsics'].astype(np.float64)
  uv = render.pixel_grid(H, W)
  x = ex['depth'][i].reshape(-1, 1).astype(np.float64) * _rays(k, uv)
  e = ex['egomotion'][i].astype(np.float64)
  m = ex['object_motion'][i].reshape(-1, 3).astype(np.float64)
  return uv, x @ e[:3, :3].T + e[:3, 3] + m, m, e


def test_warp_with_egomotion_and_object_motion_lands_on_the_surface():
  """Exact check: cast the ray through the warped (sub-)pixel in frame i+1.

  If the predicted point X' lies on a surface, the ray through its projection
  p' hits either X' itself (depth z') or an occluder in front of it, never
  anything behind it. Most points are visible: there the ray must hit the
  very same surface point (same box, same box-local coordinates, which
  objects carry along as they translate), moving objects included; without
  the object motion m it would not.
  """
  uv = render.pixel_grid(H, W)
  total = matched = moving_total = moving_matched = 0
  moving_matched_without_m = 0

  def same_point(src, dst, z):
    close = (
        np.linalg.norm(src['hits'].local_points - dst['hits'].local_points, axis=1)
        <= 1e-4 * z + 1e-4
    )
    return (src['instance'] == dst['instance']) & close

  for seed in SEEDS:
    ex, sc = _example(seed), _scene(seed)
    k = ex['intrinsics'].astype(np.float64)
    for i in range(2):
      _, xn, m, _ = _warp(ex, i)
      valid = ex['semantics'][i].ravel() != scene_lib.SKY
      z = xn[:, 2]
      p = _project(k, np.where(z[:, None] > 0, xn, 1.0))
      inside = (
          valid
          & (z > 0.5)
          & (p[:, 0] >= 0)
          & (p[:, 0] <= W - 1)
          & (p[:, 1] >= 0)
          & (p[:, 1] <= H - 1)
      )
      src = render.cast_camera_rays(sc, k, i * DT, uv[inside])
      dst = render.cast_camera_rays(sc, k, (i + 1) * DT, p[inside])
      zi = z[inside]
      # Tolerance: depth and poses are stored as float32 (~1e-7 relative).
      tol = 1e-4 * zi + 1e-4
      assert np.all(dst['depth'] <= zi + tol)  # nothing seen behind X'
      ok = same_point(src, dst, zi)
      np.testing.assert_allclose(dst['depth'][ok], zi[ok], rtol=1e-4, atol=1e-4)
      total += inside.sum()
      matched += ok.sum()
      moving = np.linalg.norm(m[inside], axis=1) > 0
      moving_total += moving.sum()
      moving_matched += ok[moving].sum()
      # The same check ignoring the object's own motion.
      xs = xn[inside] - m[inside]
      dst_s = render.cast_camera_rays(
          sc, k, (i + 1) * DT, _project(k, np.where(xs[:, 2:] > 0, xs, 1.0))
      )
      moving_matched_without_m += same_point(src, dst_s, zi)[moving].sum()
  assert matched / total > 0.9
  assert moving_total > 50  # the seeds do show moving objects
  assert moving_matched / moving_total > 0.8
  assert moving_matched_without_m / moving_total < 0.05


def test_warp_lands_on_a_pixel_whose_depth_is_the_predicted_one():
  """Grid check: the nearest pixel q of p' (|q - p'| <= 0.5 px) sees the same
  surface, and its rendered depth is that of the plane through X' with the
  rotated normal n' = R n: z_q = (n'.X') / (n'.K^-1 q) (= z' when q = p')."""
  checked = 0
  for seed in SEEDS:
    ex = _example(seed)
    k = ex['intrinsics'].astype(np.float64)
    for i in range(2):
      _, xn, _, e = _warp(ex, i)
      valid = ex['semantics'][i].ravel() != scene_lib.SKY
      z = xn[:, 2]
      p = _project(k, np.where(z[:, None] > 0, xn, 1.0))
      q = np.round(p).astype(np.int64)
      inside = valid & (z > 0.5) & (q[:, 0] >= 0) & (q[:, 0] < W) & (q[:, 1] >= 0) & (q[:, 1] < H)
      assert np.all(np.abs(p[inside] - q[inside]) <= 0.5)
      qi = q[inside]
      n_rot = ex['normals'][i].reshape(-1, 3)[inside].astype(np.float64) @ e[:3, :3].T
      n_next = ex['normals'][i + 1][qi[:, 1], qi[:, 0]].astype(np.float64)
      same = (
          ex['instance'][i + 1][qi[:, 1], qi[:, 0]] == ex['instance'][i].ravel()[inside]
      ) & np.all(np.abs(n_next - n_rot) < 1e-4, axis=1)
      assert same.mean() > 0.75
      xq = xn[inside][same]
      nq = n_rot[same]
      ray_q = _rays(k, qi[same].astype(np.float64))
      z_plane = np.sum(nq * xq, 1) / np.sum(nq * ray_q, 1)
      d_next = ex['depth'][i + 1][qi[same][:, 1], qi[same][:, 0], 0]
      np.testing.assert_allclose(d_next, z_plane, rtol=1e-4, atol=1e-4)
      checked += same.sum()
  assert checked > 1000


def _bilinear(img, p):
  """Samples img [H, W, C] at pixel coordinates p [N, 2] (inside)."""
  u0 = np.clip(np.floor(p[:, 0]).astype(int), 0, W - 2)
  v0 = np.clip(np.floor(p[:, 1]).astype(int), 0, H - 2)
  a = (p[:, 0] - u0)[:, None]
  b = (p[:, 1] - v0)[:, None]
  return (
      (1 - a) * (1 - b) * img[v0, u0]
      + a * (1 - b) * img[v0, u0 + 1]
      + (1 - a) * b * img[v0 + 1, u0]
      + a * b * img[v0 + 1, u0 + 1]
  )


def test_brightness_constancy_holds_at_true_correspondences():
  # Texture lives on surfaces and shading is view-independent, so frame i at
  # p and frame i+1 at the true p' agree up to noise and resampling; with the
  # wrong correspondence (p' = p, no motion) they do not. This is what gives
  # the photometric loss its true optimum. Only visible points whose four
  # bilinear neighbours in frame i+1 lie on the same face are compared
  # (elsewhere bilinear sampling mixes surfaces). The noise floor: the
  # difference of N(0, 2^2) and a bilinear mix of such noise has a mean
  # absolute value of about 2 grey levels; resampling the texture adds a
  # little.
  for seed in SEEDS[:3]:
    ex, sc = _example(seed), _scene(seed)
    k = ex['intrinsics'].astype(np.float64)
    for i in range(2):
      uv, xn, _, _ = _warp(ex, i)
      z = xn[:, 2]
      p = _project(k, np.where(z[:, None] > 0, xn, 1.0))
      inside = (
          (ex['semantics'][i].ravel() != scene_lib.SKY)
          & (z > 0.5)
          & (p[:, 0] >= 0)
          & (p[:, 0] <= W - 1)
          & (p[:, 1] >= 0)
          & (p[:, 1] <= H - 1)
      )
      cast = render.cast_camera_rays(sc, k, (i + 1) * DT, p[inside])
      visible = np.abs(cast['depth'] - z[inside]) <= 1e-4 * z[inside] + 1e-4
      pv = p[inside][visible]
      u0 = np.clip(np.floor(pv[:, 0]).astype(int), 0, W - 2)
      v0 = np.clip(np.floor(pv[:, 1]).astype(int), 0, H - 2)
      interior = np.ones(len(pv), bool)
      for du in (0, 1):
        for dv in (0, 1):
          interior &= (
              ex['instance'][i + 1][v0 + dv, u0 + du] == cast['instance'][visible]
          ) & np.all(
              ex['normals'][i + 1][v0 + dv, u0 + du] == ex['normals'][i + 1][v0, u0], axis=-1
          )
      assert interior.mean() > 0.7
      src = ex['image'][i].reshape(-1, 3)[inside][visible][interior]
      img_next = ex['image'][i + 1].astype(float)
      true_err = np.abs(src - _bilinear(img_next, pv[interior])).mean()
      wrong_err = np.abs(src - _bilinear(img_next, uv[inside][visible][interior])).mean()
      assert true_err < 0.5 * wrong_err
      assert true_err < 6.0  # grey levels, of 255


# ---------------------------------------------------------------------------
# Lidar and boxes.


def test_lidar_points_lie_on_the_rendered_surfaces():
  """A lidar return X (vehicle frame) seen by the camera: the camera ray
  through its projection hits X (depth = X's camera z) or an occluder in
  front of it (the lidar sits higher than the camera), never behind."""
  for seed in SEEDS:
    ex, sc = _example(seed), _scene(seed)
    k = ex['intrinsics'].astype(np.float64)
    cam_from_vehicle = np.linalg.inv(ex['camera_to_vehicle'].astype(np.float64))
    for i in range(3):
      valid = ex['lidar_valid'][i]
      pts = ex['lidar_points'][i][valid].astype(np.float64)
      # Invalid returns are zero-filled and unlabelled.
      assert np.all(ex['lidar_points'][i][~valid] == 0)
      assert np.all(ex['lidar_classes'][i][~valid] == 0)
      assert np.all(ex['lidar_track_ids'][i][~valid] == -1)
      rng = np.linalg.norm(pts[:, :3] - [0, 0, scene_lib.LIDAR_HEIGHT], axis=1)
      assert np.all(rng <= render.LIDAR_MAX_RANGE + 1e-4)
      assert np.all((pts[:, 3] >= 0) & (pts[:, 3] <= 1))
      ground = ex['lidar_classes'][i][valid] == scene_lib.GROUND
      np.testing.assert_allclose(pts[ground, 2], 0.0, atol=1e-4)
      x = pts[:, :3] @ cam_from_vehicle[:3, :3].T + cam_from_vehicle[:3, 3]
      p = _project(k, np.where(x[:, 2:3] > 0, x, 1.0))
      seen = (
          (x[:, 2] > 0.5)
          & (p[:, 0] >= 0)
          & (p[:, 0] <= W - 1)
          & (p[:, 1] >= 0)
          & (p[:, 1] <= H - 1)
      )
      assert seen.sum() > 100
      cast = render.cast_camera_rays(sc, k, i * DT, p[seen])
      z = x[seen, 2]
      tol = 1e-4 * z + 1e-4
      assert np.all(cast['depth'] <= z + tol)
      assert np.mean(np.abs(cast['depth'] - z) <= tol) > 0.85


def test_boxes_contain_their_objects_lidar_points():
  total = 0
  for seed in SEEDS:
    ex = _example(seed)
    for i in range(3):
      valid = ex['lidar_valid'][i]
      classes = ex['lidar_classes'][i]
      tracks = ex['lidar_track_ids'][i]
      movable = np.isin(classes, scene_lib.MOVABLE_CLASSES) & valid
      np.testing.assert_array_equal(tracks >= 0, movable)
      nb = ex['num_boxes'][i]
      for row in range(nb):
        x, y, zc, l, w, h, heading = ex['boxes'][i, row].astype(np.float64)
        on = valid & (tracks == ex['track_ids'][i, row])
        if not on.any():
          continue
        assert np.all(classes[on] == ex['box_classes'][i, row])
        d = ex['lidar_points'][i][on, :3].astype(np.float64) - [x, y, zc]
        c, s = np.cos(heading), np.sin(heading)
        local = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)
        assert np.all(np.abs(local) <= np.array([l, w, h]) / 2 + 1e-3)
        total += on.sum()
  assert total > 100


def test_tracks_are_consistent_across_the_triplet():
  """Same ids, classes and sizes in every frame; box motion between frames
  equals the object motion of its pixels (moved to vehicle axes)."""
  for seed in SEEDS:
    ex, sc = _example(seed), _scene(seed)
    c2v = ex['camera_to_vehicle'].astype(np.float64)
    nb = ex['num_boxes'][0]
    assert np.all(ex['num_boxes'] == nb) and 0 < nb <= scene_lib.MAX_OBJECTS
    for key in ('track_ids', 'box_classes'):
      assert np.all(ex[key] == ex[key][:1])
    assert np.all(ex['track_ids'][:, nb:] == -1)
    assert np.all(ex['box_classes'][:, nb:] == 0)
    assert np.all(ex['boxes'][:, nb:] == 0)
    assert len(set(ex['track_ids'][0, :nb])) == nb
    np.testing.assert_allclose(
        ex['boxes'][1:, :nb, 3:6], np.broadcast_to(ex['boxes'][0, :nb, 3:6], (2, nb, 3))
    )
    for i in range(2):
      e = ex['egomotion'][i].astype(np.float64)
      veh_next_from_veh = c2v @ e @ np.linalg.inv(c2v)
      b0 = ex['boxes'][i, :nb].astype(np.float64)
      b1 = ex['boxes'][i + 1, :nb].astype(np.float64)
      moved = b0[:, :3] @ veh_next_from_veh[:3, :3].T + veh_next_from_veh[:3, 3]
      displacement = b1[:, :3] - moved
      # Pure translation: the heading only changes by the ego's turn.
      fwd = np.stack([np.cos(b0[:, 6]), np.sin(b0[:, 6]), 0 * b0[:, 6]], 1)
      fwd = fwd @ veh_next_from_veh[:3, :3].T
      np.testing.assert_allclose(np.arctan2(fwd[:, 1], fwd[:, 0]), b1[:, 6], atol=1e-5)
      # Pixels of each object carry that displacement (camera i+1 axes).
      box_of_track = {int(t): j for j, t in enumerate(sc.box_track_ids) if t >= 0}
      for row in range(nb):
        pix = ex['instance'][i] == 1 + box_of_track[int(ex['track_ids'][i, row])]
        if not pix.any():
          continue
        m_vehicle = ex['object_motion'][i][pix].astype(np.float64) @ c2v[:3, :3].T
        np.testing.assert_allclose(
            m_vehicle, np.broadcast_to(displacement[row], m_vehicle.shape), atol=2e-4
        )
    # Static surfaces have no object motion.
    static = ~np.isin(ex['semantics'][:2], scene_lib.MOVABLE_CLASSES)
    assert np.all(ex['object_motion'][static] == 0)


# ---------------------------------------------------------------------------
# TFDS build and load.


def test_build_tool_and_loader_round_trip(tmp_path):
  from taskology_tf.datasets import loader  # pylint: disable=g-import-not-at-top

  data_dir = str(tmp_path / 'tfds')
  cmd = [
      sys.executable,
      os.path.join(REPO_ROOT, 'tools', 'build_dataset.py'),
      '--dataset=synthetic_world',
      '--domain=both',
      '--height=24',
      '--width=32',
      '--num_train=3',
      '--num_validation=1',
      '--num_test=1',
      '--seed=11',
      f'--data_dir={data_dir}',
  ]
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
  done = subprocess.run(
      cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=300, env=env
  )
  assert done.returncode == 0, done.stderr[-3000:]
  loaded = {}
  for domain in ('sim', 'real'):
    ds = loader.load_synthetic_world(domain, 'train', data_dir, 24, 32)
    examples = list(ds.as_numpy_iterator())
    assert len(examples) == 3
    spec = sw_builder.feature_spec(24, 32)
    for key, (shape, dtype) in spec.items():
      assert ds.element_spec[key].shape == shape, key
      assert examples[0][key].dtype == dtype, key
    config = sw_builder.make_config(domain, 24, 32, seed=11)
    for index in (0, 2):
      direct = sw_builder.render_split_example(config, 'train', index)
      for key in spec:
        np.testing.assert_array_equal(examples[index][key], direct[key], err_msg=key)
      assert examples[index]['domain'] == domain.encode()
      assert examples[index]['scene_seed'] == direct['scene_seed']
    assert len(list(loader.load_synthetic_world(domain, 'test', data_dir, 24, 32))) == 1
    shuffled = loader.load_synthetic_world(domain, 'train', data_dir, 24, 32, shuffle_files=True)
    assert len(list(shuffled)) == 3
    loaded[domain] = examples[0]
  for key in ('depth', 'normals', 'lidar_points', 'boxes'):
    np.testing.assert_array_equal(loaded['sim'][key], loaded['real'][key])


def test_loader_names_the_missing_directory_and_the_build_command(tmp_path):
  from taskology_tf.datasets import loader  # pylint: disable=g-import-not-at-top

  missing = str(tmp_path / 'nowhere')
  with pytest.raises(FileNotFoundError) as error:
    loader.load_synthetic_world('sim', 'train', missing, 24, 32)
  message = str(error.value)
  assert os.path.join(missing, 'synthetic_world', 'sim_24x32') in message
  assert (
      'python tools/build_dataset.py --dataset=synthetic_world '
      f'--domain=sim --height=24 --width=32 --data_dir={missing}'
  ) in message


def test_build_tool_lists_known_datasets_for_an_unknown_one(tmp_path):
  done = subprocess.run(
      [
          sys.executable,
          os.path.join(REPO_ROOT, 'tools', 'build_dataset.py'),
          '--dataset=imagenet',
          f'--data_dir={tmp_path}',
      ],
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert done.returncode != 0
  assert 'imagenet' in done.stderr and 'synthetic_world' in done.stderr
