"""Vectorised numpy ray casting of synthetic-world scenes.

Every ray is intersected in closed form with the ground plane z = 0 and, by
the slab method, with the boxes it may hit: each box's conservative rectangle
in the ray grid (its projection for the camera, its azimuth and elevation
span for the lidar) lists the candidate (ray, box) pairs, all pairs of all
frames are tested in one vectorised pass, and a scatter-min keeps the
closest hit per ray. The image, depth, normals, labels, object motion and
lidar returns of a frame all come from the same casts, so the ground truth
is exact.

Appearance is a function of the surface point only (world coordinates for
static surfaces, box coordinates for movable objects) and the shading is
view-independent (Lambertian plus ambient), so brightness constancy holds
between frames up to sensor noise. Texture detail finer than a pixel's
footprint on the surface (from ray differentials) is faded to its mean, as
a camera's pixel integration would, so textures do not alias into noise that
changes between frames.

Conventions: camera x right, y down, z forward; pixel (u, v) = (column,
row) with pixel centres at integer coordinates, so the ray through (u, v) is
K^-1 [u, v, 1]; depth is camera z in metres; normals are unit, camera frame,
facing the camera.
"""

import dataclasses
import functools

import numpy as np

from taskology_tf.datasets.synthetic_world import scene as scene_lib

# Depth of sky pixels (metres): large but finite so that back-projected
# geometry stays finite. Hits farther than this along camera z are sky.
SKY_DEPTH = 200.0
# Camera normal of sky pixels: facing the camera, along -z.
SKY_NORMAL = (0.0, 0.0, -1.0)

DEFAULT_HFOV_DEGREES = 90.0
NUM_FRAMES = 3
DOMAINS = ('sim', 'real')

# Spinning lidar: beams x azimuths returns per sweep, ordered beam-major
# (index = beam * LIDAR_AZIMUTHS + azimuth), beams from low to high
# elevation, azimuth counter-clockwise from the vehicle x axis.
LIDAR_BEAMS = 16
LIDAR_AZIMUTHS = 256
LIDAR_MIN_ELEVATION_DEGREES = -15.0
LIDAR_MAX_ELEVATION_DEGREES = 5.0
LIDAR_MAX_RANGE = 60.0
LIDAR_POINTS = LIDAR_BEAMS * LIDAR_AZIMUTHS

# Standard deviation of the `real` domain's Gaussian sensor noise, in [0, 1]
# intensity units, and its vignetting (relative darkening at the corners).
REAL_NOISE_SIGMA = 2.0 / 255.0
REAL_VIGNETTING = 0.12


@dataclasses.dataclass(frozen=True)
class RayHits:
  """Closest surface along each ray.

  Attributes:
    distance: [N] float64, ray parameter of the hit (metres along unit
      directions; camera depth along z-normalised directions); inf if none
      within the maximum distance.
    semantics: [N] int32 class (scene.SKY where nothing was hit).
    box_index: [N] int64 index into the scene's boxes, -1 for ground/sky.
    points: [N, 3] float64, metres, world frame (zeros where nothing hit).
    normals: [N, 3] float64 unit, world frame, facing the ray origin (zeros
      where nothing hit).
    face_axis: [N] int64, box-local axis the hit face is normal to (0, 1, 2);
      2 for the ground, -1 for misses.
    local_points: [N, 3] float64, metres: hit point in box coordinates (box
      centre origin, box axes) for boxes, world coordinates for the ground;
      None if not requested.
  """

  distance: np.ndarray
  semantics: np.ndarray
  box_index: np.ndarray
  points: np.ndarray
  normals: np.ndarray
  face_axis: np.ndarray
  local_points: np.ndarray

  @property
  def hit(self) -> np.ndarray:
    return np.isfinite(self.distance)


def intrinsics_from_fov(
    height: int, width: int, hfov_degrees: float = DEFAULT_HFOV_DEGREES
) -> np.ndarray:
  """Pinhole intrinsics from a horizontal field of view, square pixels.

  With pixel centres at integer coordinates the image spans u in
  [-0.5, width - 0.5], so the principal point of a centred camera is
  ((width - 1) / 2, (height - 1) / 2) and the full width W subtends the FOV:
  fx = (W / 2) / tan(hfov / 2).

  Args:
    height: image rows.
    width: image columns.
    hfov_degrees: horizontal field of view, degrees.

  Returns:
    K: [3, 3] float64.
  """
  f = (width / 2.0) / np.tan(np.radians(hfov_degrees) / 2.0)
  return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def pixel_grid(height: int, width: int) -> np.ndarray:
  """[H * W, 2] float64 pixel centres (u, v), row-major (v slowest)."""
  v, u = np.meshgrid(
      np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing='ij'
  )
  return np.stack([u.ravel(), v.ravel()], axis=1)


def camera_rays(intrinsics: np.ndarray, uv: np.ndarray) -> np.ndarray:
  """Rays K^-1 [u, v, 1] through pixels.

  Args:
    intrinsics: [3, 3] float K.
    uv: [N, 2] float pixel coordinates (column, row).

  Returns:
    [N, 3] float64 directions, camera frame, with z = 1 (so the ray parameter
    of a hit is its depth).
  """
  fx, fy = intrinsics[0, 0], intrinsics[1, 1]
  cx, cy = intrinsics[0, 2], intrinsics[1, 2]
  skew = intrinsics[0, 1]
  y = (uv[:, 1] - cy) / fy
  x = (uv[:, 0] - cx - skew * y) / fx
  return np.stack([x, y, np.ones_like(x)], axis=1)


@functools.lru_cache(maxsize=None)
def _lidar_directions_cached() -> np.ndarray:
  elevation = np.radians(
      np.linspace(LIDAR_MIN_ELEVATION_DEGREES, LIDAR_MAX_ELEVATION_DEGREES, LIDAR_BEAMS)
  )
  azimuth = 2.0 * np.pi * np.arange(LIDAR_AZIMUTHS) / LIDAR_AZIMUTHS
  el, az = np.meshgrid(elevation, azimuth, indexing='ij')
  dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(
      -1, 3
  )
  dirs.flags.writeable = False
  return dirs


def lidar_directions() -> np.ndarray:
  """[LIDAR_POINTS, 3] float64 unit beam directions, vehicle frame.

  Beam-major: index = beam * LIDAR_AZIMUTHS + azimuth. Read-only (cached).
  """
  return _lidar_directions_cached()


def _potentially_hit(origin, unit_dirs, max_norm, centers, half, max_distance):
  """Conservative culling of boxes by range and by the cone of the rays."""
  radius = np.linalg.norm(half, axis=1)
  rel = centers - origin
  dist = np.linalg.norm(rel, axis=1)
  keep = dist - radius <= max_distance * max_norm
  axis = unit_dirs.mean(axis=0)
  axis_norm = np.linalg.norm(axis)
  # A lidar sweep's rays span all azimuths: no useful cone.
  if axis_norm > 0.3:
    axis = axis / axis_norm
    cone = np.arccos(np.clip((unit_dirs @ axis).min(), -1.0, 1.0))
    safe = np.maximum(dist, 1e-9)
    angle = np.arccos(np.clip((rel @ axis) / safe, -1.0, 1.0))
    slack = np.arcsin(np.clip(radius / safe, 0.0, 1.0))
    # A sphere meets the cone iff its centre is within cone + asin(r/d).
    keep &= (angle <= cone + slack) | (dist <= radius)
  return keep


# The 8 corners of a box as sign patterns (bit 2: x, bit 1: y, bit 0: z) and
# its 12 edges as pairs of corners differing in one sign.
_CORNER_SIGNS = np.array(
    [[(k >> 2 & 1) * 2 - 1, (k >> 1 & 1) * 2 - 1, (k & 1) * 2 - 1] for k in range(8)], np.float64
)
_BOX_EDGES = np.array(
    [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count('1') == 1]
)


def box_corners(centers: np.ndarray, sizes: np.ndarray, headings: np.ndarray) -> np.ndarray:
  """[..., 8, 3] corners of yaw-rotated boxes (same frame as `centers`).

  Args:
    centers: [..., 3] float, box centres.
    sizes: [..., 3] float, full extents (l, w, h) along the box axes.
    headings: [...] float, radians, yaw of the box x axis about z.
  """
  local = _CORNER_SIGNS * (np.asarray(sizes)[..., None, :] / 2.0)
  c = np.cos(headings)[..., None]
  s = np.sin(headings)[..., None]
  return np.asarray(centers)[..., None, :] + np.stack(
      [c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1], local[..., 2]],
      axis=-1,
  )


def _rect_rows(keep, r0, r1, c0, c1):
  """[R, 6] int64 rows (frame, box, r0, r1, c0, c1) of the kept [F, M]."""
  f, m = np.nonzero(keep)
  return np.stack([f, m, r0[f, m], r1[f, m], c0[f, m], c1[f, m]], axis=1).astype(np.int64)


def camera_box_rects(
    scene: scene_lib.Scene,
    times,
    world_from_cams,
    intrinsics: np.ndarray,
    height: int,
    width: int,
    max_depth: float = SKY_DEPTH,
) -> np.ndarray:
  """Pixel rectangles outside which a frame's pixels cannot see a box.

  Each box is clipped against the plane z = near in front of the camera (its
  in-front corners plus the crossings of its 12 edges with that plane), the
  clipped vertices projected, and their bounding rectangle grown by a pixel.
  Vectorised over frames and boxes.

  Args:
    scene: the scene.
    times: [F] seconds since frame 0.
    world_from_cams: [F, 4, 4] camera poses.
    intrinsics: [3, 3] K.
    height, width: image size.
    max_depth: boxes entirely deeper than this are skipped.

  Returns:
    [R, 6] int64 rows (frame, box, row0, row1, col0, col1), half-open
    ranges, for `cast_ray_batch(rects=...)` on (height, width) grids.
  """
  near = 1e-3
  times = np.asarray(times, np.float64).reshape(-1)
  poses = np.asarray(world_from_cams, np.float64).reshape(-1, 4, 4)
  nf, nm = times.size, scene.num_boxes
  centers = scene.box_centers[None] + scene.box_velocities[None] * times[:, None, None]
  corners = box_corners(centers, scene.box_sizes[None], scene.box_headings[None])
  # World to camera, row-vector form: (x - t) R.
  pc = np.matmul(
      (corners - poses[:, None, None, :3, 3]).reshape(nf, -1, 3), poses[:, :3, :3]
  ).reshape(nf, nm, 8, 3)
  a, b = pc[:, :, _BOX_EDGES[:, 0]], pc[:, :, _BOX_EDGES[:, 1]]
  za, zb = a[..., 2], b[..., 2]
  crosses = (za - near) * (zb - near) < 0
  with np.errstate(divide='ignore', invalid='ignore'):
    frac = np.where(crosses, (near - za) / (zb - za), 0.0)
  crossing = a + frac[..., None] * (b - a)
  pts = np.concatenate([pc, crossing], axis=2)
  valid = np.concatenate([pc[..., 2] >= near, crosses], axis=2)
  z = np.where(valid, pts[..., 2], 1.0)
  u = (intrinsics[0, 0] * pts[..., 0] + intrinsics[0, 1] * pts[..., 1]) / z + intrinsics[0, 2]
  v = intrinsics[1, 1] * pts[..., 1] / z + intrinsics[1, 2]
  with np.errstate(invalid='ignore'):
    c0 = np.clip(np.floor(np.where(valid, u, np.inf).min(-1)) - 1, 0, width)
    c1 = np.clip(np.ceil(np.where(valid, u, -np.inf).max(-1)) + 2, 0, width)
    r0 = np.clip(np.floor(np.where(valid, v, np.inf).min(-1)) - 1, 0, height)
    r1 = np.clip(np.ceil(np.where(valid, v, -np.inf).max(-1)) + 2, 0, height)
  keep = valid.any(-1) & (pc[..., 2].min(-1) <= max_depth) & (r1 > r0) & (c1 > c0)
  return _rect_rows(keep, r0, r1, c0, c1)


def lidar_box_rects(
    scene: scene_lib.Scene, times, max_range: float = LIDAR_MAX_RANGE
) -> np.ndarray:
  """(beam, azimuth) rectangles of lidar sweeps outside which no beam can
  hit a box.

  Azimuths: the interval spanned by the box's corners as seen from the
  lidar (a box whose footprint does not contain the lidar subtends less than
  a half turn), split in two where it wraps through azimuth 0. Beams: the
  elevations between the box's bottom and top at its nearest and farthest
  horizontal distance. Vectorised over frames and boxes.

  Args:
    scene: the scene.
    times: [F] seconds since frame 0.
    max_range: boxes farther than this are skipped.

  Returns:
    [R, 6] int64 rows (frame, box, beam0, beam1, azimuth0, azimuth1),
    half-open ranges, for `cast_ray_batch(rects=...)` on
    (LIDAR_BEAMS, LIDAR_AZIMUTHS) grids.
  """
  z0 = scene_lib.LIDAR_HEIGHT
  na = LIDAR_AZIMUTHS
  times = np.asarray(times, np.float64).reshape(-1)
  # Boxes in each frame's vehicle frame.
  states = [scene_lib.ego_state(scene, t) for t in times]
  xy = np.array([st[0] for st in states])
  psi = np.array([st[1] for st in states])
  centers_w = scene.box_centers[None] + scene.box_velocities[None] * times[:, None, None]
  cp, sp = np.cos(psi)[:, None], np.sin(psi)[:, None]
  dx = centers_w[..., 0] - xy[:, None, 0]
  dy = centers_w[..., 1] - xy[:, None, 1]
  cx, cy = cp * dx + sp * dy, cp * dy - sp * dx
  cz = np.broadcast_to(centers_w[..., 2], cx.shape)
  headings = scene.box_headings[None] - psi[:, None]
  half = np.broadcast_to(scene.box_sizes / 2.0, cx.shape + (3,))
  corners = box_corners(np.stack([cx, cy, cz], -1), 2 * half, headings)
  # Horizontal distance from the lidar axis to each box footprint.
  c, s = np.cos(headings), np.sin(headings)
  px = -(c * cx + s * cy)
  py = -(c * cy - s * cx)
  d_min = np.hypot(
      np.maximum(np.abs(px) - half[..., 0], 0.0), np.maximum(np.abs(py) - half[..., 1], 0.0)
  )
  d_max = np.hypot(corners[..., 0], corners[..., 1]).max(-1)
  top = cz + half[..., 2] - z0
  bottom = cz - half[..., 2] - z0
  e_hi = np.where(top >= 0, np.arctan2(top, d_min), np.arctan2(top, d_max))
  e_lo = np.where(bottom <= 0, np.arctan2(bottom, d_min), np.arctan2(bottom, d_max))
  gap_z = np.maximum(np.maximum(bottom, -top), 0.0)
  az_c = np.arctan2(cy, cx)
  rel = scene_lib.wrap_angle(np.arctan2(corners[..., 1], corners[..., 0]) - az_c[..., None])
  az_lo = az_c + rel.min(-1)
  az_hi = az_c + rel.max(-1)
  elevations = np.radians(
      np.linspace(LIDAR_MIN_ELEVATION_DEGREES, LIDAR_MAX_ELEVATION_DEGREES, LIDAR_BEAMS)
  )
  step = 2.0 * np.pi / na
  r0 = np.maximum(np.searchsorted(elevations, e_lo) - 1, 0)
  r1 = np.minimum(np.searchsorted(elevations, e_hi, side='right') + 1, LIDAR_BEAMS)
  k0 = np.floor(az_lo / step).astype(np.int64) - 1
  k1 = np.ceil(az_hi / step).astype(np.int64) + 2
  keep = (np.hypot(d_min, gap_z) <= max_range) & (r1 > r0)
  # The lidar axis inside (or nearly inside) a footprint: all azimuths.
  full = (d_min <= 0.0) | (az_hi - az_lo >= np.pi) | (k1 - k0 >= na)
  start = np.where(full, 0, k0 % na)
  end = np.where(full, na, start + (k1 - k0))
  first = _rect_rows(keep, r0, r1, start, np.minimum(end, na))
  # The part of an interval that wraps through azimuth 0.
  second = _rect_rows(keep & (end > na), r0, r1, np.zeros_like(end), end - na)
  return np.concatenate([first, second])


def cast_ray_batch(
    scene: scene_lib.Scene,
    times,
    origins,
    directions,
    max_distance: float,
    grid_shape=None,
    rects=None,
    with_local_points: bool = True,
) -> RayHits:
  """Casts F frames of N rays each against the ground and all boxes.

  Every (ray, box) pair that may intersect (from per-box ray rectangles, or
  every ray with every box in range and in the rays' cone) goes through one
  vectorised slab test; the closest hit per ray is a scatter-min. The cost
  is a few dozen numpy calls whatever the number of frames and boxes, and
  the work scales with the boxes' footprints in the ray grids, like a
  rasteriser's bounding-rectangle pass with an exact per-ray test.

  Args:
    scene: the scene.
    times: [F] float, seconds since frame 0 (moves the movable boxes).
    origins: [F, 3] float, metres, world frame: each frame's common ray
      origin (above the ground, outside every box).
    directions: [F, N, 3] float, world frame, any non-zero length;
      distances are in units of these lengths.
    max_distance: hits with a larger ray parameter count as misses.
    grid_shape: (rows, cols) with rows * cols = N when each frame's rays are
      the row-major flattening of a grid; required with `rects`.
    rects: optional [R, 6] int rows (frame, box, row0, row1, col0, col1):
      no ray of a frame outside a box's rectangles can hit that box (from
      `camera_box_rects` or `lidar_box_rects`).
    with_local_points: whether to fill `RayHits.local_points` (only
      textures need them); None otherwise.

  Returns:
    The closest hit of every ray, `RayHits` of F * N rays (frame-major).
  """
  times = np.asarray(times, np.float64).reshape(-1)
  nf = times.size
  origins = np.asarray(origins, np.float64).reshape(nf, 3)
  dirs = np.asarray(directions, np.float64).reshape(nf, -1, 3)
  n = dirs.shape[1]
  nm = scene.num_boxes
  half = scene.box_sizes / 2.0
  cos_h, sin_h = np.cos(scene.box_headings), np.sin(scene.box_headings)
  # [F, M, 3] box centres per frame; ray origins in each box's axes [F * M].
  centers = scene.box_centers[None] + scene.box_velocities[None] * times[:, None, None]
  rel = origins[:, None, :] - centers
  o_local = (
      (cos_h * rel[..., 0] + sin_h * rel[..., 1]).ravel(),
      (cos_h * rel[..., 1] - sin_h * rel[..., 0]).ravel(),
      rel[..., 2].ravel(),
  )
  d = (dirs[..., 0].ravel(), dirs[..., 1].ravel(), dirs[..., 2].ravel())

  if rects is None:
    # Every ray of a frame with every box it may reach: a 1 x N grid.
    grid_shape = (1, n)
    rows = []
    for f in range(nf):
      norms = np.linalg.norm(dirs[f], axis=1)
      keep = _potentially_hit(
          origins[f], dirs[f] / norms[:, None], norms.max(), centers[f], half, max_distance
      )
      rows.extend((f, m, 0, 1, 0, n) for m in np.flatnonzero(keep))
    rects = np.array(rows, np.int64).reshape(-1, 6)
  if grid_shape[0] * grid_shape[1] != n:
    raise ValueError(f'ray grid {grid_shape} does not hold {n} rays')
  cols = grid_shape[1]

  t_best = np.full(nf * n, np.inf)
  # Winning box and face axis of each ray, as one code 3 * box + axis.
  code_best = np.full(nf * n, -3, np.int64)
  if rects.shape[0]:
    rf, rm, r0, r1, c0, c1 = np.asarray(rects, np.int64).T
    # Expand rectangles into runs of consecutive rays (one per rectangle
    # row), then runs into (ray, box) pairs: repeats and aranges only.
    heights = r1 - r0
    run_rect = np.repeat(np.arange(rects.shape[0]), heights)
    run_row = (
        r0[run_rect] + np.arange(run_rect.size) - np.repeat(np.cumsum(heights) - heights, heights)
    )
    run_start = rf[run_rect] * n + run_row * cols + c0[run_rect]
    run_len = (c1 - c0)[run_rect]
    ray = np.repeat(run_start - (np.cumsum(run_len) - run_len), run_len) + np.arange(run_len.sum())
    box = np.repeat(rm[run_rect], run_len)
    fm = np.repeat(rf[run_rect] * nm + rm[run_rect], run_len)
    c, s = cos_h[box], sin_h[box]
    dx, dy, dz = d[0][ray], d[1][ray], d[2][ray]
    d_l = (c * dx + s * dy, c * dy - s * dx, dz)
    t_in = []
    tf = None
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
      for k in range(3):
        inv = 1.0 / d_l[k]
        o_k = o_local[k][fm]
        h_k = half[:, k][box]
        t1 = (-h_k - o_k) * inv
        t2 = (h_k - o_k) * inv
        t_in.append(np.minimum(t1, t2))
        t_out = np.maximum(t1, t2)
        tf = t_out if tf is None else np.minimum(tf, t_out)
      tn = np.maximum(np.maximum(t_in[0], t_in[1]), t_in[2])
      # NaNs (0 * inf on a slab boundary) compare False: no hit, as wanted.
      hit = (tn <= tf) & (tn > 0)
    tn = np.where(hit, tn, np.inf)
    np.minimum.at(t_best, ray, tn)
    win = np.flatnonzero(hit & (tn == t_best[ray]))
    # The face entered is the slab whose entry parameter is the largest.
    tx, ty, tz = t_in[0][win], t_in[1][win], t_in[2][win]
    axis = np.where((tx >= ty) & (tx >= tz), 0, np.where(ty >= tz, 1, 2))
    # Ties (a ray through an edge shared by two boxes) write one ray twice;
    # whichever write lands, box and axis stay consistent in one code.
    code_best[ray[win]] = 3 * box[win] + axis

  # Per-ray quantities of the winning box, dense over all rays and one 1-D
  # array per coordinate: much cheaper in numpy than gathers of [N, 3] rows.
  frame = np.repeat(np.arange(nf), n)
  box_best = code_best // 3
  axis = code_best % 3
  has_box = box_best >= 0
  b = np.maximum(box_best, 0)
  fm = frame * nm + b
  cb, sb = cos_h[b], sin_h[b]
  o = tuple(np.repeat(origins[:, k], n) for k in range(3))
  o_l = tuple(o_local[k][fm] for k in range(3))
  d_l = (cb * d[0] + sb * d[1], cb * d[1] - sb * d[0], d[2])

  # Ground plane z = 0 in closed form: origin_z + t d_z = 0.
  with np.errstate(divide='ignore', invalid='ignore'):
    t_ground = np.where(d[2] < 0.0, -o[2] / d[2], np.inf)
  ground_wins = t_ground < t_best
  distance = np.minimum(t_ground, t_best)
  distance[distance > max_distance] = np.inf
  hit = np.isfinite(distance)
  is_box = hit & ~ground_wins & has_box
  is_ground = hit & ground_wins
  dist0 = np.where(hit, distance, 0.0)

  px = o[0] + dist0 * d[0]
  py = o[1] + dist0 * d[1]
  pz = np.where(is_ground, 0.0, o[2] + dist0 * d[2])  # exact on the plane
  semantics = np.where(
      is_box, scene.box_classes[b], np.where(is_ground, scene_lib.GROUND, scene_lib.SKY)
  ).astype(np.int32)
  box_index = np.where(is_box, box_best, -1)
  face_axis = np.where(is_box, axis, np.where(is_ground, 2, -1))
  # The face normal points against the ray, i.e. towards the origin.
  d_axis = np.where(axis == 0, d_l[0], np.where(axis == 1, d_l[1], d_l[2]))
  sign = np.where(is_box, -np.sign(d_axis), 0.0)
  nx = np.where(axis == 0, sign, 0.0)
  ny = np.where(axis == 1, sign, 0.0)
  nz = np.where(is_box, np.where(axis == 2, sign, 0.0), np.where(is_ground, 1.0, 0.0))
  normals = np.stack([cb * nx - sb * ny, sb * nx + cb * ny, nz], axis=1)
  points = np.stack([px, py, pz], axis=1)
  if with_local_points:
    local_points = np.stack(
        [
            np.where(is_box, o_l[k] + dist0 * d_l[k], np.where(is_ground, p, 0.0))
            for k, p in enumerate((px, py, pz))
        ],
        axis=1,
    )
  else:
    local_points = None
  return RayHits(
      distance=distance,
      semantics=semantics,
      box_index=box_index,
      points=points,
      normals=normals,
      face_axis=face_axis,
      local_points=local_points,
  )


def cast_rays(
    scene: scene_lib.Scene,
    time: float,
    origin: np.ndarray,
    directions: np.ndarray,
    max_distance: float,
) -> RayHits:
  """Casts rays from one origin at one time (see `cast_ray_batch`).

  Args:
    scene: the scene.
    time: seconds since frame 0.
    origin: [3] float, metres, world frame.
    directions: [N, 3] float, world frame, any non-zero length.
    max_distance: hits with a larger ray parameter count as misses.

  Returns:
    `RayHits` of the N rays.
  """
  return cast_ray_batch(
      scene, [time], np.asarray(origin)[None], np.asarray(directions)[None], max_distance
  )


# ---------------------------------------------------------------------------
# Procedural texture primitives (numpy, vectorised over points).


# A fixed table of uniform random values on a 256 x 256 periodic lattice.
# Looking values up is much cheaper than hashing per point; per-seed offsets
# into the table decorrelate surfaces and octaves. The period (256 lattice
# cells, 38 m for the finest 0.15 m octave) is longer than the distance over
# which an octave survives the footprint fade, so no repetition is visible.
_LATTICE_SIZE = 256
_LATTICE = np.random.default_rng(0x5EED).random(_LATTICE_SIZE**2)


def _clip01(x):
  """Clips to [0, 1] (two ufuncs: cheaper than np.clip's dispatch)."""
  return np.minimum(np.maximum(x, 0.0), 1.0)


def _seed_offsets(seed):
  """Two lattice offsets in [0, 256) per seed (scalar or array)."""
  h = (np.asarray(seed, np.int64) & 0xFFFFFFF) * 40503 + 0x9E37
  h = h ^ (h >> 11)
  return (h >> 3) & 255, (h >> 13) & 255


def _hash01(i, j, seed):
  """Pseudo-random value in [0, 1) per integer lattice point (i, j).

  Args:
    i, j: int or float arrays holding integers (broadcast together).
    seed: int or int array (broadcast).

  Returns:
    float64 array.
  """
  oi, oj = _seed_offsets(seed)
  ii = (np.asarray(i).astype(np.int64) + oi) & 255
  jj = (np.asarray(j).astype(np.int64) + oj) & 255
  return _LATTICE[(ii << 8) | jj]


def _value_noise(s, t, seed):
  """Smooth 2D value noise in [0, 1] with unit lattice spacing."""
  fs, ft = np.floor(s), np.floor(t)
  oi, oj = _seed_offsets(seed)
  i0 = (fs.astype(np.int64) + oi) & 255
  j0 = (ft.astype(np.int64) + oj) & 255
  i0 <<= 8
  i1 = (i0 + 256) & 0xFFFF
  j1 = (j0 + 1) & 255
  a, b = s - fs, t - ft
  a = a * a * (3.0 - 2.0 * a)
  b = b * b * (3.0 - 2.0 * b)
  n00 = _LATTICE[i0 | j0]
  n10 = _LATTICE[i1 | j0]
  n01 = _LATTICE[i0 | j1]
  n11 = _LATTICE[i1 | j1]
  lo = n00 + a * (n10 - n00)
  return lo + b * (n01 + a * (n11 - n01) - lo)


def _detail_weight(wavelength, footprint):
  """Weight of a pattern of `wavelength` seen through a pixel `footprint`.

  1 while the wavelength spans 3+ footprints, fading to 0 at 1.5 (a little
  under Nyquist, for crisp texture near the pixel scale): finer detail is
  replaced by its mean instead of aliasing into noise that would change from
  frame to frame.
  """
  return _clip01((wavelength / np.maximum(footprint, 1e-9) - 1.5) / 1.5)


def _fbm(s, t, seed, footprint, wavelengths, amplitudes):
  """Sum of value-noise octaves, zero mean, each faded by the footprint."""
  out = np.zeros_like(s)
  for k, (lam, amp) in enumerate(zip(wavelengths, amplitudes)):
    w = _detail_weight(lam, footprint)
    if not np.any(w > 0):
      continue
    out += (amp * w) * (_value_noise(s / lam, t / lam, seed + 1013 * k) - 0.5)
  return out


def _pulse(d, width, footprint):
  """Box-filtered coverage of the interval |d| <= width / 2.

  The exact fraction of a footprint interval [d - fp/2, d + fp/2] that
  overlaps the interval, so edges are anti-aliased.
  """
  fp = np.maximum(footprint, 1e-6)
  lo = np.maximum(-width / 2.0, d - fp / 2.0)
  hi = np.minimum(width / 2.0, d + fp / 2.0)
  return np.maximum(hi - lo, 0.0) / fp


def _periodic_pulse(x, period, width, footprint):
  """Box-filtered coverage of pulses of `width` centred at multiples of
  `period`.

  Exact from the nearest pulse while the footprint is narrower than the gap
  between pulses (period - width); then blends linearly to the mean duty
  cycle width / period, reached once the footprint spans a period.
  """
  d = np.mod(x + period / 2.0, period) - period / 2.0
  cov = _pulse(d, width, footprint)
  gap = period - width
  blend = _clip01((np.asarray(footprint) - gap) / width)
  return cov + blend * (width / period - cov)


def lane_paint_coverage(scene: scene_lib.Scene, x, y, footprint_x, footprint_y):
  """Fraction of road paint (lane lines, crosswalk) around ground points.

  Args:
    scene: the scene.
    x, y: [N] float64, metres, world-frame ground coordinates.
    footprint_x, footprint_y: [N] float64, metres, the pixel's extent along
      world x and y (0 for point samples such as lidar returns).

  Returns:
    [N] float64 in [0, 1].
  """
  lw, lanes = scene.lane_width, scene.lanes_per_direction
  ay = np.abs(y)
  dashes = _periodic_pulse(x, 9.0, 3.0, footprint_x)
  if lanes == 1:
    cov = _pulse(y, 0.15, footprint_y) * dashes  # dashed centre line
  else:
    cov = _pulse(ay - 0.15, 0.12, footprint_y)  # double solid centre line
    cov += _pulse(ay - lw, 0.15, footprint_y) * dashes
  cov += _pulse(ay - lanes * lw, 0.15, footprint_y)  # edge lines
  if np.isfinite(scene.crosswalk_x):
    stripes = _periodic_pulse(y, 1.0, 0.5, footprint_y)
    inside = _pulse(x - scene.crosswalk_x, 3.0, footprint_x) * _pulse(
        y, 2.0 * (lanes * lw), footprint_y
    )
    cov += stripes * inside
  return _clip01(cov) * (ay < scene.road_half_width)


# ---------------------------------------------------------------------------
# Appearance. Internally one 1-D array per coordinate: numpy's gathers and
# reductions along a short last axis are several times slower than
# elementwise work on 1-D arrays, and shading runs for every frame.

_SIM_COLORS = np.array(
    [
        (0.55, 0.72, 0.95),  # sky
        (0.42, 0.42, 0.44),  # ground
        (0.72, 0.60, 0.48),  # building
        (0.15, 0.30, 0.80),  # car
        (0.90, 0.30, 0.25),  # pedestrian
    ]
)
_SIM_LIGHT = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])
_SIM_LIGHT_COLOR = np.array([0.6, 0.6, 0.6])
_SIM_AMBIENT = np.array([0.45, 0.45, 0.45])
_PAINT = np.array([0.92, 0.92, 0.88])
_ASPHALT = np.array([0.30, 0.30, 0.32])
_PAVING = np.array([0.62, 0.60, 0.56])
_KERB = np.array([0.75, 0.75, 0.72])
_SKIN = np.array([0.85, 0.64, 0.5])
_HAIR = np.array([0.25, 0.17, 0.1])
_SKY_HORIZON = np.array([0.82, 0.86, 0.90])
_SKY_ZENITH = np.array([0.32, 0.52, 0.85])


@dataclasses.dataclass
class _Surface:
  """Hit points of one class, with their texture coordinates.

  s, t: metres along the surface axes (ground: world x, y; box faces: the
  face's horizontal axis from its corner, and height above the box bottom
  or local y on the top face). fs, ft: the pixel footprint along s and t.
  """

  s: np.ndarray
  t: np.ndarray
  fs: np.ndarray
  ft: np.ndarray
  box: np.ndarray = None
  axis: np.ndarray = None
  local: tuple = None
  size: tuple = None


def _world_pixel_derivatives(depth, d, n, a, b):
  """Ray differentials dX/du, dX/dv of surface points, world frame.

  For a plane n.X = c seen along X = z d (d = K^-1 [u, v, 1] rotated to the
  world, so its camera z is 1 and z is the depth), z = c / (n.d), hence
  dX/du = z (a - d (n.a) / (n.d)) with a = dd/du, and the same for v with
  b = dd/dv. In camera axes a = (1/fx, 0, 0) and b = (0, 1/fy, 0).

  Args:
    depth: [n] metres.
    d, n, a, b: 3-tuples of [n] arrays (or scalars), world frame: ray
      direction, unit normal, dd/du and dd/dv.

  Returns:
    (du, dv): 3-tuples of [n] arrays, metres per pixel, world frame.
  """
  nd = np.minimum(n[0] * d[0] + n[1] * d[1] + n[2] * d[2], -1e-6)
  ku = depth * (n[0] * a[0] + n[1] * a[1] + n[2] * a[2]) / nd
  kv = depth * (n[0] * b[0] + n[1] * b[1] + n[2] * b[2]) / nd
  du = tuple(depth * a[k] - ku * d[k] for k in range(3))
  dv = tuple(depth * b[k] - kv * d[k] for k in range(3))
  return du, dv


def _ground_surface(points, du, dv):
  """Ground texture coordinates: world (x, y); footprints from |d/du|+|d/dv|."""
  return _Surface(
      s=points[0], t=points[1], fs=np.abs(du[0]) + np.abs(dv[0]), ft=np.abs(du[1]) + np.abs(dv[1])
  )


def _box_surface(scene, box, axis, local, du, dv):
  """Face texture coordinates of box hits (see `_Surface`)."""
  h = scene.box_headings[box]
  c, s_ = np.cos(h), np.sin(h)
  # Derivatives in box axes (rotation by -heading about z).
  lu = (c * du[0] + s_ * du[1], c * du[1] - s_ * du[0], du[2])
  lv = (c * dv[0] + s_ * dv[1], c * dv[1] - s_ * dv[0], dv[2])
  size = tuple(scene.box_sizes[:, k][box] for k in range(3))
  # Faces normal to local x run along local y; the others (normal to local
  # y, and the top) along local x. t is the height, or local y on the top.
  side_y = axis == 0
  top = axis == 2
  s = np.where(side_y, local[1] + size[1] / 2, local[0] + size[0] / 2)
  t = np.where(top, local[1] + size[1] / 2, local[2] + size[2] / 2)
  fpx = np.abs(lu[0]) + np.abs(lv[0])
  fpy = np.abs(lu[1]) + np.abs(lv[1])
  fpz = np.abs(lu[2]) + np.abs(lv[2])
  fs = np.where(side_y, fpy, fpx)
  ft = np.where(top, fpy, fpz)
  return _Surface(s=s, t=t, fs=fs, ft=ft, box=box, axis=axis, local=local, size=size)


def _mix(a, b, w):
  """a + w (b - a) for colours a, b ([n, 3] or [3]) and weights w [n]."""
  return a + w[:, None] * (b - a)


def _ground_albedo(scene, g):
  """Asphalt with lane paint on the road, paving slabs on the sidewalk."""
  x, y, fx, fy = g.s, g.t, g.fs, g.ft
  fp = np.maximum(fx, fy)
  seed = scene.texture_seed
  ay = np.abs(y)
  road = ay < scene.road_half_width
  out = np.empty((x.size, 3))
  r = np.flatnonzero(road)
  if r.size:
    xr, yr, fpr = x[r], y[r], fp[r]
    # Asphalt: multi-octave noise, from repair patches to fine speckle.
    n = _fbm(xr, yr, seed, fpr, (6.0, 2.5, 1.0, 0.4, 0.15), (0.5, 0.5, 0.6, 0.6, 0.6))
    asphalt = _ASPHALT * (1.0 + n)[:, None]
    paint = lane_paint_coverage(scene, xr, yr, fx[r], fy[r])
    out[r] = _mix(asphalt, _PAINT, paint)
  w = np.flatnonzero(~road)
  if w.size:
    xw, yw, fxw, fyw, fpw = x[w], y[w], fx[w], fy[w], fp[w]
    # Sidewalk: 0.8 m slabs, each a little different, with darker joints.
    slab = 0.8
    tone = (_hash01(np.floor(xw / slab), np.floor(yw / slab), seed + 7) - 0.5) * _detail_weight(
        slab, fpw
    )
    joints = np.maximum(_periodic_pulse(xw, slab, 0.04, fxw), _periodic_pulse(yw, slab, 0.04, fyw))
    n = _fbm(xw, yw, seed + 3, fpw, (2.0, 0.5, 0.15), (0.3, 0.45, 0.45))
    walk = _PAVING * (1.0 + 0.45 * tone + n - 0.35 * joints)[:, None]
    kerb = _pulse(np.abs(yw) - scene.road_half_width - 0.12, 0.24, fyw)
    out[w] = _mix(walk, _KERB, kerb)
  return out


def _facade_albedo(scene, f):
  """Walls with noise, bricks and trim, and a grid of windows."""
  b, s, t, fs, ft = f.box, f.s, f.t, f.fs, f.ft
  seeds = scene.box_texture_seeds[b]
  fp = np.maximum(fs, ft)
  base = np.take(scene.box_colors[:, 0], b, axis=0)
  trim = np.take(scene.box_colors[:, 1], b, axis=0)
  floor_h = scene.facade_params[:, 0][b]
  spacing = scene.facade_params[:, 1][b]
  win_w = scene.facade_params[:, 2][b]
  win_h = scene.facade_params[:, 3][b]
  noise = _fbm(s, t, seeds, fp, (4.0, 1.5, 0.6, 0.25), (0.4, 0.45, 0.45, 0.45))
  # Bricks: 0.25 x 0.075 m courses, every other course offset by half.
  course = np.floor(t / 0.075)
  brick = (_hash01(np.floor(s / 0.25 + 0.5 * (course % 2)), course, seeds + 11) - 0.5) * (
      0.35 * _detail_weight(0.075, ft) * _detail_weight(0.25, fs)
  )
  # Trim band at each floor line, darker plinth at street level.
  band = _periodic_pulse(t, floor_h, 0.3, ft)
  plinth = _clip01((0.6 - t) / np.maximum(ft, 1e-6) + 0.5)
  wall = _mix(base * (1.0 + noise + brick)[:, None], trim, band)
  wall *= (1.0 - 0.35 * plinth)[:, None]
  # Windows: one per cell of `spacing` along s, one row per floor above the
  # ground floor; each pane its own brightness (reflections).
  col = np.floor(s / spacing)
  row = np.floor(t / floor_h)
  weight = _detail_weight(spacing, fs) * _detail_weight(floor_h, ft)
  tone = 0.27 + weight * (0.36 * _hash01(col, row, seeds + 5) - 0.18)
  cov = _periodic_pulse(s - spacing / 2, spacing, win_w, fs) * _periodic_pulse(
      t - 0.55 * floor_h, floor_h, win_h, ft
  )
  cov *= (t > floor_h) & (t < f.size[2] - 0.6) & (f.axis != 2)
  glass = tone[:, None] * np.array([0.6, 0.7, 0.85])
  return _mix(wall, glass, cov)


def _car_albedo(scene, f):
  """Body colour, glass band, wheels, lights and a little dirt."""
  b, lp, axis, fs, ft = f.box, f.local, f.axis, f.fs, f.ft
  length, width, h = f.size
  body = np.take(scene.box_colors[:, 0], b, axis=0)
  glass = np.take(scene.box_colors[:, 1], b, axis=0)
  fp = np.maximum(fs, ft)
  hb = lp[2] + h / 2  # height above the car's bottom
  dirt = _fbm(f.s, f.t, scene.box_texture_seeds[b], fp, (0.8, 0.25), (0.2, 0.15))
  col = body * (1.0 + dirt)[:, None]
  side = axis == 1
  ends = axis == 0
  # Glass band on the sides and ends, split by a pillar at mid-length.
  band = _pulse(hb - 0.74 * h, 0.3 * h, ft) * (side | ends)
  band *= 1.0 - _pulse(lp[0], 0.15, fs) * side
  col = _mix(col, glass, band)
  # Dark bumper strip low down.
  col *= (1.0 - 0.5 * _pulse(hb - 0.12 * h, 0.16 * h, ft))[:, None]
  # Wheels on the sides: discs of radius 0.33 m at 0.85 m from each end.
  axle = length / 2 - 0.85
  r = np.minimum(np.hypot(lp[0] - axle, hb - 0.33), np.hypot(lp[0] + axle, hb - 0.33))
  wheel = _clip01((0.33 - r) / np.maximum(fp, 1e-6) + 0.5) * side
  col = _mix(col, np.array([0.05, 0.05, 0.05]), wheel)
  # Lamps on the ends: white at the front (+x), red at the back.
  lamp = _pulse(np.abs(lp[1]) - (width / 2 - 0.3), 0.3, fs) * _pulse(hb - 0.45 * h, 0.12, ft) * ends
  lamp_col = np.where((lp[0] > 0)[:, None], [0.95, 0.93, 0.8], [0.8, 0.08, 0.05])
  return _mix(col, lamp_col, lamp)


def _pedestrian_albedo(scene, f):
  """Trousers, shirt, skin and hair by height, with fabric noise."""
  b, ft = f.box, f.ft
  h = f.size[2]
  hb = f.local[2] + h / 2
  seeds = scene.box_texture_seeds[b]
  noise = _fbm(f.s, f.t, seeds, np.maximum(f.fs, ft), (0.3, 0.1), (0.25, 0.2))
  skin = _SKIN * (0.55 + 0.45 * _hash01(seeds, 1, 3))[:, None]
  hair = _HAIR * (0.2 + 0.8 * _hash01(seeds, 2, 3))[:, None]
  shirt = np.take(scene.box_colors[:, 0], b, axis=0)
  trousers = np.take(scene.box_colors[:, 1], b, axis=0)
  inv_ft = 1.0 / np.maximum(ft, 1e-6)
  legs = _clip01((0.47 * h - hb) * inv_ft + 0.5)
  head = _clip01((hb - 0.86 * h) * inv_ft + 0.5)
  top = _clip01((hb - 0.95 * h) * inv_ft + 0.5)
  col = _mix(_mix(_mix(shirt, trousers, legs), skin, head), hair, top)
  return col * (1.0 + noise)[:, None]


def _sky_color(dirs_world, domain):
  """Smooth sky: flat in `sim`, an elevation gradient in `real`."""
  if domain == 'sim':
    return np.tile(_SIM_COLORS[scene_lib.SKY], (dirs_world.shape[0], 1))
  x, y, z = dirs_world[:, 0], dirs_world[:, 1], dirs_world[:, 2]
  elev = z / np.sqrt(x * x + y * y + z * z)
  w = _clip01(elev * 2.5) ** 0.7
  return _mix(_SKY_HORIZON, _SKY_ZENITH, w)


def shade(
    scene: scene_lib.Scene,
    domain: str,
    hits: RayHits,
    dirs_world: np.ndarray,
    depth: np.ndarray,
    ray_du: np.ndarray,
    ray_dv: np.ndarray,
) -> np.ndarray:
  """Colours of camera rays, before sensor effects.

  Rays of several frames can be shaded in one call (cheaper per ray).

  Args:
    scene: the scene.
    domain: 'sim' (flat class colours, Lambertian + ambient) or 'real'
      (procedural world-space textures, scene-specific sun and ambient).
    hits: [N] camera-ray hits (world frame).
    dirs_world: [N, 3] float64 ray directions R K^-1 [u, v, 1], world frame.
    depth: [N] float64, metres.
    ray_du: [N, 3] or [3] float64, world frame: change of the ray direction
      per pixel step in u, R (1/fx, 0, 0) for world_from_camera rotation R.
    ray_dv: [N, 3] or [3] float64: the same for v, R (0, 1/fy, 0).

  Returns:
    [N, 3] float64 RGB, nominally in [0, 1].
  """
  if domain not in DOMAINS:
    raise ValueError(f'domain must be one of {DOMAINS}, got {domain!r}')
  rgb = _sky_color(dirs_world, domain)
  sem = hits.semantics
  if domain == 'sim':
    albedo = np.take(_SIM_COLORS, sem, axis=0)
    movable = np.flatnonzero((sem == scene_lib.CAR) | (sem == scene_lib.PEDESTRIAN))
    # A per-object tint so instances are told apart; still flat colour.
    tint = _hash01(hits.box_index[movable], 0, 17) - 0.5
    albedo[movable] *= (1.0 + 0.5 * tint)[:, None]
    light, light_col, ambient = _SIM_LIGHT, _SIM_LIGHT_COLOR, _SIM_AMBIENT
    rows = np.flatnonzero(hits.hit)
    albedo = albedo[rows]
  else:
    ray_du = np.asarray(ray_du, np.float64)
    ray_dv = np.asarray(ray_dv, np.float64)
    albedo_parts, row_parts = [], []
    for cls, fn in (
        (scene_lib.GROUND, _ground_albedo),
        (scene_lib.BUILDING, _facade_albedo),
        (scene_lib.CAR, _car_albedo),
        (scene_lib.PEDESTRIAN, _pedestrian_albedo),
    ):
      idx = np.flatnonzero(sem == cls)
      if not idx.size:
        continue

      def pick(arr, idx=idx):
        if arr.ndim == 1:  # one vector for all rays
          return tuple(arr)
        return tuple(arr[:, k][idx] for k in range(3))

      du, dv = _world_pixel_derivatives(
          depth[idx], pick(dirs_world), pick(hits.normals), pick(ray_du), pick(ray_dv)
      )
      if cls == scene_lib.GROUND:
        surf = _ground_surface(pick(hits.points), du, dv)
      else:
        surf = _box_surface(
            scene, hits.box_index[idx], hits.face_axis[idx], pick(hits.local_points), du, dv
        )
      albedo_parts.append(fn(scene, surf))
      row_parts.append(idx)
    rows = np.concatenate(row_parts) if row_parts else np.zeros(0, np.int64)
    albedo = np.concatenate(albedo_parts) if albedo_parts else np.zeros((0, 3))
    light, light_col = scene.sun_direction, scene.sun_color
    ambient = scene.ambient_color
  nw = hits.normals
  lambert = np.maximum(
      nw[:, 0][rows] * light[0] + nw[:, 1][rows] * light[1] + nw[:, 2][rows] * light[2], 0.0
  )
  rgb[rows] = albedo * (ambient + lambert[:, None] * light_col)
  return rgb


@functools.lru_cache(maxsize=8)
def _vignette(height, width):
  """[H, W, 1] relative brightness: 1 at the centre, 1 - REAL_VIGNETTING in
  the corners (quadratic in the normalised radius)."""
  v, u = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing='ij')
  out = (1.0 - REAL_VIGNETTING * (u * u + v * v) / 2.0)[..., None]
  out.flags.writeable = False
  return out


def _sensor(rgb, shape, domain, rng):
  """Vignetting, noise and 8-bit quantisation: [T*H*W, 3] -> [T, H, W, 3]."""
  img = rgb.reshape(*shape, 3)
  if domain == 'real':
    img = img * _vignette(shape[-2], shape[-1])
    img += REAL_NOISE_SIGMA * rng.standard_normal(img.shape, np.float32)
  return np.round(_clip01(img) * 255.0).astype(np.uint8)


def lidar_intensity(scene: scene_lib.Scene, hits: RayHits, unit_dirs: np.ndarray) -> np.ndarray:
  """Simulated return intensity in [0, 1], the same in both domains.

  Reflectivity per class (road paint is retro-reflective) times a
  Lambertian incidence term.

  Args:
    scene: the scene.
    hits: [N] lidar hits.
    unit_dirs: [N, 3] unit beam directions, world frame.

  Returns:
    [N] float64 (0 where nothing was hit).
  """
  reflectivity = np.array([0.0, 0.18, 0.35, 0.55, 0.3])[hits.semantics]
  ground = hits.semantics == scene_lib.GROUND
  zeros = np.zeros(int(ground.sum()))
  paint = lane_paint_coverage(scene, hits.points[ground, 0], hits.points[ground, 1], zeros, zeros)
  reflectivity[ground] += 0.6 * paint
  cos_inc = np.abs(np.sum(hits.normals * unit_dirs, axis=1))
  return np.where(hits.hit, reflectivity * (0.25 + 0.75 * cos_inc), 0.0)


# ---------------------------------------------------------------------------
# Whole frames and examples.


def cast_camera_frames(
    scene: scene_lib.Scene, intrinsics: np.ndarray, times, uv: np.ndarray, grid_shape=None
):
  """Geometry seen through (sub-)pixel positions in several frames.

  Args:
    scene: the scene.
    intrinsics: [3, 3] K.
    times: [T] seconds since frame 0.
    uv: [N, 2] float pixel coordinates (column, row), the same every frame.
    grid_shape: optional (H, W) when `uv` is `pixel_grid(H, W)`; enables the
      per-box pixel-rectangle acceleration (same result, faster).

  Returns:
    A dict with 'depth' [T*N] float64 metres (SKY_DEPTH for sky), 'normals'
    [T*N, 3] float64 unit camera frame, 'semantics' [T*N] int32, 'instance'
    [T*N] int64 (-1 sky, 0 ground, 1 + box index for boxes), 'hits' (RayHits,
    world frame), 'dirs_world' [T*N, 3] (camera z = 1) and
    'world_from_camera' [T, 4, 4], all frame-major.
  """
  times = np.asarray(times, np.float64).reshape(-1)
  poses = np.stack([scene_lib.world_from_camera(scene, t) for t in times])
  rots = poses[:, :3, :3]
  dirs_cam = camera_rays(intrinsics, np.asarray(uv, np.float64))
  # (np.einsum is much slower than matmul for these shapes.)
  dirs_world = np.matmul(dirs_cam[None], rots.transpose(0, 2, 1))
  # Directions have camera z = 1, so the ray parameter is depth and the far
  # limit is a depth limit.
  rects = None
  if grid_shape is not None:
    rects = camera_box_rects(
        scene, times, poses, intrinsics, grid_shape[0], grid_shape[1], SKY_DEPTH
    )
  hits = cast_ray_batch(scene, times, poses[:, :3, 3], dirs_world, SKY_DEPTH, grid_shape, rects)
  n = dirs_cam.shape[0]
  depth = np.where(hits.hit, hits.distance, SKY_DEPTH)
  # World to camera: R^T n per frame.
  normals = np.matmul(hits.normals.reshape(-1, n, 3), rots).reshape(-1, 3)
  normals[~hits.hit] = SKY_NORMAL
  instance = np.where(hits.box_index >= 0, hits.box_index + 1, np.where(hits.hit, 0, -1))
  return {
      'depth': depth,
      'normals': normals,
      'semantics': hits.semantics,
      'instance': instance,
      'hits': hits,
      'dirs_world': dirs_world.reshape(-1, 3),
      'world_from_camera': poses,
  }


def cast_camera_rays(
    scene: scene_lib.Scene, intrinsics: np.ndarray, time: float, uv: np.ndarray, grid_shape=None
):
  """`cast_camera_frames` for one frame: arrays of N rays, one [4, 4] pose."""
  out = cast_camera_frames(scene, intrinsics, [time], uv, grid_shape)
  out['world_from_camera'] = out['world_from_camera'][0]
  return out


def cast_lidar_frames(scene: scene_lib.Scene, times, accelerate: bool = True):
  """Lidar sweeps at several times (one per frame).

  Args:
    scene: the scene.
    times: [T] seconds since frame 0.
    accelerate: use the per-box (beam, azimuth) rectangles (same result).

  Returns:
    points: [T, LIDAR_POINTS, 4] float32 (x, y, z, intensity), metres,
      vehicle frame at each time; zeros where invalid.
    valid: [T, LIDAR_POINTS] bool, False where no return within
      LIDAR_MAX_RANGE (e.g. sky).
    classes: [T, LIDAR_POINTS] uint8 semantic class (0 where invalid).
    track_ids: [T, LIDAR_POINTS] int32 track id of the object hit, -1
      otherwise.
  """
  times = np.asarray(times, np.float64).reshape(-1)
  nt = times.size
  poses = np.stack([scene_lib.world_from_vehicle(scene, t) for t in times])
  dirs_v = lidar_directions()
  origin_v = np.array([0.0, 0.0, scene_lib.LIDAR_HEIGHT])
  origins_w = poses[:, :3, :3] @ origin_v + poses[:, :3, 3]
  dirs_w = np.matmul(dirs_v[None], poses[:, :3, :3].transpose(0, 2, 1))
  grid = (LIDAR_BEAMS, LIDAR_AZIMUTHS)
  rects = lidar_box_rects(scene, times) if accelerate else None
  hits = cast_ray_batch(
      scene,
      times,
      origins_w,
      dirs_w,
      LIDAR_MAX_RANGE,
      grid if accelerate else None,
      rects,
      with_local_points=False,
  )
  valid = hits.hit.reshape(nt, -1)
  rng = np.where(hits.hit, hits.distance, 0.0).reshape(nt, -1, 1)
  xyz = origin_v + rng * dirs_v
  intensity = lidar_intensity(scene, hits, dirs_w.reshape(-1, 3))
  points = np.concatenate([xyz, intensity.reshape(nt, -1, 1)], axis=-1)
  points[~valid] = 0.0
  track = np.where(hits.box_index >= 0, scene.box_track_ids[np.maximum(hits.box_index, 0)], -1)
  return (
      points.astype(np.float32),
      valid,
      np.where(hits.hit, hits.semantics, 0).astype(np.uint8).reshape(nt, -1),
      track.astype(np.int32).reshape(nt, -1),
  )


def cast_lidar(scene: scene_lib.Scene, time: float, accelerate: bool = True):
  """`cast_lidar_frames` for one time: arrays without the leading T axis."""
  return tuple(a[0] for a in cast_lidar_frames(scene, [time], accelerate))


def render_example(
    scene: scene_lib.Scene,
    height: int,
    width: int,
    domain: str = 'real',
    num_frames: int = NUM_FRAMES,
    time_step: float = scene_lib.DEFAULT_TIME_STEP,
    hfov_degrees: float = DEFAULT_HFOV_DEGREES,
    with_lidar: bool = True,
):
  """Renders a video of `num_frames` frames of a scene and all ground truth.

  Args:
    scene: the scene (geometry is the same for every domain).
    height: image rows H.
    width: image columns W.
    domain: 'sim' or 'real' (appearance only).
    num_frames: T, frames at times 0, time_step, ..., (T-1) time_step.
    time_step: seconds between frames.
    hfov_degrees: horizontal field of view.
    with_lidar: whether to cast the lidar sweeps (zeros otherwise).

  Returns:
    A dict of numpy arrays:
      'image': [T, H, W, 3] uint8.
      'depth': [T, H, W, 1] float32, metres, camera z (SKY_DEPTH for sky).
      'normals': [T, H, W, 3] float32 unit, camera frame, facing the camera.
      'semantics': [T, H, W] uint8 class (scene.CLASS_NAMES).
      'instance': [T, H, W] int32: -1 sky, 0 ground, 1 + scene box index.
      'intrinsics': [3, 3] float32 K.
      'egomotion': [T-1, 4, 4] float32, [i] = cam_{i+1}_from_cam_i.
      'object_motion': [T-1, H, W, 3] float32, metres: displacement of the
        surface point seen at each pixel of frame i due to its object's own
        motion between t_i and t_{i+1}, in camera i+1 coordinates, so that
        X_{i+1} = R X_i + T + m with (R, T) = egomotion[i] (paper
        Sec. 3.2.1). Zero on static surfaces.
      'camera_to_vehicle': [4, 4] float32, maps camera to vehicle
        coordinates (vehicle_from_camera).
      'lidar_points': [T, L, 4] float32 (x, y, z, intensity), vehicle frame.
      'lidar_valid': [T, L] bool.
      'lidar_classes': [T, L] uint8.
      'lidar_track_ids': [T, L] int32 (-1 for static surfaces / invalid).
      'boxes': [T, MAX_OBJECTS, 7] float32 (x, y, z_center, l, w, h,
        heading), vehicle frame, zero-padded.
      'box_classes': [T, MAX_OBJECTS] int32 (0 = padding).
      'track_ids': [T, MAX_OBJECTS] int32 (-1 = padding).
      'num_boxes': [T] int32.
      'domain': str.
      'scene_seed': int64 scalar.
  """
  if domain not in DOMAINS:
    raise ValueError(f'domain must be one of {DOMAINS}, got {domain!r}')
  k = intrinsics_from_fov(height, width, hfov_degrees)
  uv = pixel_grid(height, width)
  times = np.arange(num_frames) * time_step
  noise_rng = np.random.default_rng([scene.seed, 2])
  out = {
      'image': np.zeros((num_frames, height, width, 3), np.uint8),
      'depth': np.zeros((num_frames, height, width, 1), np.float32),
      'normals': np.zeros((num_frames, height, width, 3), np.float32),
      'semantics': np.zeros((num_frames, height, width), np.uint8),
      'instance': np.zeros((num_frames, height, width), np.int32),
      'intrinsics': k.astype(np.float32),
      'egomotion': np.zeros((num_frames - 1, 4, 4), np.float32),
      'object_motion': np.zeros((num_frames - 1, height, width, 3), np.float32),
      'camera_to_vehicle': scene_lib.vehicle_from_camera().astype(np.float32),
      'lidar_points': np.zeros((num_frames, LIDAR_POINTS, 4), np.float32),
      'lidar_valid': np.zeros((num_frames, LIDAR_POINTS), bool),
      'lidar_classes': np.zeros((num_frames, LIDAR_POINTS), np.uint8),
      'lidar_track_ids': -np.ones((num_frames, LIDAR_POINTS), np.int32),
      'boxes': np.zeros((num_frames, scene_lib.MAX_OBJECTS, 7), np.float32),
      'box_classes': np.zeros((num_frames, scene_lib.MAX_OBJECTS), np.int32),
      'track_ids': -np.ones((num_frames, scene_lib.MAX_OBJECTS), np.int32),
      'num_boxes': np.zeros((num_frames,), np.int32),
      'domain': domain,
      'scene_seed': np.int64(scene.seed),
  }
  hw = height * width
  geo = cast_camera_frames(scene, k, times, uv, (height, width))
  hits = geo['hits']
  poses = geo['world_from_camera']
  out['depth'] = geo['depth'].reshape(num_frames, height, width, 1).astype(np.float32)
  out['normals'] = geo['normals'].reshape(num_frames, height, width, 3).astype(np.float32)
  out['semantics'] = hits.semantics.reshape(num_frames, height, width).astype(np.uint8)
  out['instance'] = geo['instance'].reshape(num_frames, height, width).astype(np.int32)
  # Objects only translate, so a surface point moves by v * dt in the world;
  # expressed in camera i+1 axes that is R_{c_{i+1} w} v dt.
  on_box = hits.box_index >= 0
  velocity = np.where(
      on_box[:, None], scene.box_velocities[np.maximum(hits.box_index, 0)], 0.0
  ).reshape(num_frames, hw, 3)
  for i in range(num_frames - 1):
    cam_next_from_world = np.linalg.inv(poses[i + 1])
    out['egomotion'][i] = cam_next_from_world @ poses[i]
    disp = velocity[i] * (times[i + 1] - times[i])
    out['object_motion'][i] = (disp @ cam_next_from_world[:3, :3].T).reshape(height, width, 3)
  if with_lidar:
    out['lidar_points'], out['lidar_valid'], out['lidar_classes'], out['lidar_track_ids'] = (
        cast_lidar_frames(scene, times)
    )
  for i, time in enumerate(times):
    boxes, classes, track_ids = scene_lib.object_boxes(scene, time)
    nb = boxes.shape[0]
    out['boxes'][i, :nb] = boxes
    out['box_classes'][i, :nb] = classes
    out['track_ids'][i, :nb] = track_ids
    out['num_boxes'][i] = nb

  # Shade all frames in one call: numpy's per-call overhead is paid once.
  ray_du = np.empty((num_frames * hw, 3))
  ray_dv = np.empty((num_frames * hw, 3))
  for i in range(num_frames):
    ray_du[i * hw : (i + 1) * hw] = poses[i, :3, 0] / k[0, 0]
    ray_dv[i * hw : (i + 1) * hw] = poses[i, :3, 1] / k[1, 1]
  rgb = shade(scene, domain, hits, geo['dirs_world'], geo['depth'], ray_du, ray_dv)
  out['image'] = _sensor(rgb, (num_frames, height, width), domain, noise_rng)
  return out
