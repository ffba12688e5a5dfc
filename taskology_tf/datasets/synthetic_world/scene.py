"""Random street scenes and ego trajectories for the synthetic world.

A scene is a straight street along the world x axis:

* the ground plane z = 0 (road for |y| < road_half_width, sidewalk beyond),
* building facades: static boxes along both sides of the street,
* movable objects: cars (boxes in lanes or parked) and pedestrians (thin tall
  boxes on the sidewalks), each translating at its own constant velocity and
  never rotating, so that the per-pixel object motion of a frame pair is an
  exact translation (paper Sec. 3.2.1),
* an ego vehicle driving forward at constant speed and yaw rate, carrying a
  forward-looking camera and a spinning lidar.

Frames:

* world: x along the street, y to its left, z up, ground at z = 0.
* vehicle (one per time): x forward, y left, z up, origin on the ground below
  the camera. Lidar points and 3D boxes live here.
* camera: OpenCV, x right, y down, z forward; `CAMERA_HEIGHT` above the
  vehicle origin, zero pitch and roll (so the horizon is the row cy).

Geometry and appearance parameters are drawn from two independent random
streams of the scene seed, so appearance changes never move geometry, and the
`sim` and `real` domains (which differ in appearance only) share geometry
exactly.
"""

import dataclasses

import numpy as np

# Semantic classes, shared by the image labels, lidar labels and boxes.
SKY = 0
GROUND = 1
BUILDING = 2
CAR = 3
PEDESTRIAN = 4
CLASS_NAMES = ('sky', 'road', 'building', 'car', 'pedestrian')
MOVABLE_CLASSES = (CAR, PEDESTRIAN)

# Boxes per frame are zero-padded to this many movable objects.
MAX_OBJECTS = 16
MAX_CARS = 10
MAX_PEDESTRIANS = MAX_OBJECTS - MAX_CARS

# Metres above the ground (the vehicle origin).
CAMERA_HEIGHT = 1.5
LIDAR_HEIGHT = 1.8

# Seconds between consecutive frames of a triplet.
DEFAULT_TIME_STEP = 0.1


@dataclasses.dataclass(frozen=True)
class Scene:
  """One random street scene and ego trajectory.

  Boxes hold buildings first, then movable objects. A box is centred at
  `box_centers` (at time 0; movable boxes translate with `box_velocities`),
  with full extents `box_sizes` = (l, w, h) along its local x, y, z axes and
  local x rotated by `box_headings` about world z (counter-clockwise).

  Attributes:
    seed: the scene seed everything was drawn from.
    lane_width: metres.
    lanes_per_direction: int, lanes in each direction of travel.
    road_half_width: metres; |y| < road_half_width is road, beyond is
      sidewalk up to `sidewalk_outer`, then buildings.
    sidewalk_outer: metres.
    crosswalk_x: world x of a zebra crossing centre, or NaN for none.
    box_centers: [M, 3] float64, metres, world frame, at time 0.
    box_sizes: [M, 3] float64, metres, (l, w, h) full extents.
    box_headings: [M] float64, radians, yaw of the box x axis from world x.
    box_velocities: [M, 3] float64, metres/second, world frame (z = 0; zero
      for buildings and parked cars).
    box_classes: [M] int32, BUILDING, CAR or PEDESTRIAN.
    box_track_ids: [M] int32, object id in 0..MAX_OBJECTS-1, -1 for buildings.
    box_colors: [M, 2, 3] float64 in [0, 1], primary and secondary albedo in
      the `real` domain (facade and trim; car body and glass; shirt and
      trousers).
    facade_params: [M, 4] float64, metres: floor height, window spacing,
      window width, window height (buildings only, zeros otherwise).
    box_texture_seeds: [M] int64, per-box seed of the procedural texture.
    ego_position: [2] float64, metres, world xy of the vehicle at time 0.
    ego_heading: radians, world yaw of the vehicle x axis at time 0.
    ego_speed: metres/second, along the vehicle x axis.
    ego_yaw_rate: radians/second, constant.
    sun_direction: [3] float64, unit, world frame, pointing towards the sun
      (`real` domain light).
    sun_color: [3] float64, `real` domain direct light colour.
    ambient_color: [3] float64, `real` domain ambient light colour.
    texture_seed: int, seed of the world (ground) texture.
  """

  seed: int
  lane_width: float
  lanes_per_direction: int
  road_half_width: float
  sidewalk_outer: float
  crosswalk_x: float
  box_centers: np.ndarray
  box_sizes: np.ndarray
  box_headings: np.ndarray
  box_velocities: np.ndarray
  box_classes: np.ndarray
  box_track_ids: np.ndarray
  box_colors: np.ndarray
  facade_params: np.ndarray
  box_texture_seeds: np.ndarray
  ego_position: np.ndarray
  ego_heading: float
  ego_speed: float
  ego_yaw_rate: float
  sun_direction: np.ndarray
  sun_color: np.ndarray
  ambient_color: np.ndarray
  texture_seed: int

  @property
  def num_boxes(self) -> int:
    return int(self.box_classes.shape[0])

  @property
  def object_indices(self) -> np.ndarray:
    """[K] int, indices of the movable boxes, ordered by track id."""
    idx = np.nonzero(self.box_track_ids >= 0)[0]
    return idx[np.argsort(self.box_track_ids[idx])]


def _buildings(rng, sidewalk_outer):
  """Facade boxes along both sides of the street (world frame)."""
  centers, sizes = [], []
  # Enough candidates to always pass the far end; drawn in bulk for speed.
  n = 40
  for side in (-1.0, 1.0):
    length = rng.uniform(8.0, 30.0, n)
    depth = rng.uniform(8.0, 20.0, n)
    height = rng.uniform(6.0, 35.0, n)
    setback = np.where(rng.uniform(size=n) < 0.4, rng.uniform(0.0, 2.5, n), 0.0)
    # Mostly terraced houses, sometimes a gap or a side street.
    gap = np.where(rng.uniform(size=n) < 0.3, rng.uniform(2.0, 14.0, n), 0.0)
    start = -80.0 + rng.uniform(0.0, 10.0) + np.concatenate([[0.0], np.cumsum(length + gap)[:-1]])
    # Cover what the camera (200 m ahead) and the lidar (60 m around) see.
    keep = start < 230.0
    y_center = side * (sidewalk_outer + setback + depth / 2)
    centers.append(np.stack([start + length / 2, y_center, height / 2], axis=1)[keep])
    sizes.append(np.stack([length, depth, height], axis=1)[keep])
  return np.concatenate(centers), np.concatenate(sizes)


def _cars(rng, lane_width, lanes, has_parking, ego_lane_y):
  """Cars in lanes (moving) and in the parking strips (static)."""
  num_attempts = int(rng.integers(2, MAX_CARS + 1))
  lane_ys = [-(k + 0.5) * lane_width for k in range(lanes)]  # ego direction
  lane_ys += [(k + 0.5) * lane_width for k in range(lanes)]  # oncoming
  if has_parking:
    lane_ys += [-(lanes * lane_width + 1.1), lanes * lane_width + 1.1]
  placed = []  # (lane index, x)
  cars = []
  for _ in range(num_attempts):
    for _ in range(30):
      lane = int(rng.integers(len(lane_ys)))
      x = rng.uniform(-40.0, 100.0)
      y = lane_ys[lane]
      # Keep clear of the ego vehicle in its own lane (closing speed is at
      # most ~11 m/s, so 2.2 m over a triplet).
      if abs(y - ego_lane_y) < 0.1 and -12.0 < x < 15.0:
        continue
      # Same-lane cars at least 9 m apart between centres: 4.8 m of car plus
      # 2.2 m of possible closing over a triplet, plus margin.
      if any(l == lane and abs(x - px) < 9.0 for l, px in placed):
        continue
      break
    else:
      continue
    placed.append((lane, x))
    parked = lane >= 2 * lanes
    oncoming = (y > 0) if not parked else bool(rng.uniform() < 0.5)
    heading = np.pi if oncoming else 0.0
    speed = 0.0 if parked else rng.uniform(3.0, 14.0)
    if not parked:
      # Slight lane wandering; the car still moves along its own heading.
      heading += rng.uniform(-0.04, 0.04)
    length = rng.uniform(3.8, 4.8)
    width = rng.uniform(1.7, 2.0)
    height = rng.uniform(1.4, 1.75)
    velocity = (speed * np.cos(heading), speed * np.sin(heading), 0.0)
    cars.append(((x, y, height / 2), (length, width, height), heading, velocity))
  return cars


def _pedestrians(rng, road_half_width, sidewalk_outer):
  """Pedestrians on the sidewalks, standing or walking along them."""
  peds = []
  for _ in range(int(rng.integers(0, MAX_PEDESTRIANS + 1))):
    for _ in range(30):
      side = -1.0 if rng.uniform() < 0.5 else 1.0
      y = side * rng.uniform(road_half_width + 0.6, sidewalk_outer - 0.5)
      x = rng.uniform(-15.0, 60.0)
      # 1.2 m between centres: 0.7 m of bodies plus 0.4 m of walking.
      if all(np.hypot(x - p[0][0], y - p[0][1]) > 1.2 for p in peds):
        break
    else:
      continue
    if rng.uniform() < 0.3:
      speed, heading = 0.0, rng.uniform(-np.pi, np.pi)
    else:
      speed = rng.uniform(0.6, 1.8)
      heading = 0.0 if rng.uniform() < 0.5 else np.pi
    height = rng.uniform(1.5, 1.95)
    size = (rng.uniform(0.35, 0.55), rng.uniform(0.45, 0.65), height)
    velocity = (speed * np.cos(heading), speed * np.sin(heading), 0.0)
    peds.append(((x, y, height / 2), size, heading, velocity))
  return peds


_FACADE_PALETTE = np.array(
    [
        (0.55, 0.27, 0.20),  # red brick
        (0.72, 0.62, 0.46),  # sandstone
        (0.60, 0.60, 0.57),  # concrete
        (0.80, 0.76, 0.66),  # render
        (0.45, 0.38, 0.33),  # dark brick
        (0.62, 0.70, 0.72),  # painted blue-grey
        (0.78, 0.58, 0.42),  # ochre
    ]
)
_CAR_PALETTE = np.array(
    [
        (0.75, 0.10, 0.08),
        (0.10, 0.20, 0.60),
        (0.90, 0.90, 0.88),
        (0.08, 0.08, 0.09),
        (0.62, 0.63, 0.65),
        (0.15, 0.40, 0.20),
        (0.85, 0.65, 0.10),
        (0.35, 0.35, 0.38),
    ]
)


def generate_scene(seed: int) -> Scene:
  """Draws a random street scene and ego trajectory, deterministically.

  Args:
    seed: non-negative int; the same seed always gives the same scene.

  Returns:
    The `Scene`.
  """
  seed = int(seed)
  geo = np.random.default_rng([seed, 0])
  look = np.random.default_rng([seed, 1])

  lane_width = geo.uniform(3.0, 3.7)
  lanes = int(geo.integers(1, 3))
  has_parking = bool(geo.uniform() < 0.5)
  road_half_width = lanes * lane_width + (2.2 if has_parking else 0.4)
  sidewalk_outer = road_half_width + geo.uniform(2.0, 4.5)

  ego_lane = int(geo.integers(lanes))
  ego_lane_y = -(ego_lane + 0.5) * lane_width
  ego_position = np.array([0.0, ego_lane_y + geo.uniform(-0.3, 0.3)])
  ego_heading = geo.uniform(-0.08, 0.08)
  ego_speed = geo.uniform(3.0, 14.0)
  ego_yaw_rate = geo.uniform(-0.35, 0.35)
  crosswalk_x = geo.uniform(15.0, 60.0) if geo.uniform() < 0.4 else np.nan

  b_centers, b_sizes = _buildings(geo, sidewalk_outer)
  objects = _cars(geo, lane_width, lanes, has_parking, ego_lane_y)
  num_cars = len(objects)
  objects += _pedestrians(geo, road_half_width, sidewalk_outer)
  num_buildings = len(b_centers)
  num_objects = len(objects)

  if num_objects:
    o_centers = np.array([o[0] for o in objects], dtype=np.float64)
    o_sizes = np.array([o[1] for o in objects], dtype=np.float64)
    o_headings = np.array([o[2] for o in objects], dtype=np.float64)
    o_velocities = np.array([o[3] for o in objects], dtype=np.float64)
  else:
    o_centers = o_sizes = o_velocities = np.zeros((0, 3))
    o_headings = np.zeros((0,))
  classes = np.array(
      [BUILDING] * num_buildings + [CAR] * num_cars + [PEDESTRIAN] * (num_objects - num_cars),
      dtype=np.int32,
  )
  track_ids = np.concatenate(
      [-np.ones(num_buildings, np.int32), np.arange(num_objects, dtype=np.int32)]
  )

  # Appearance (own random stream).
  m = num_buildings + num_objects
  colors = np.zeros((m, 2, 3))
  facade = np.zeros((m, 4))
  base = _FACADE_PALETTE[look.integers(len(_FACADE_PALETTE), size=num_buildings)]
  colors[:num_buildings, 0] = np.clip(base * look.uniform(0.85, 1.15, (num_buildings, 3)), 0, 1)
  colors[:num_buildings, 1] = np.clip(base * look.uniform(0.6, 1.3, (num_buildings, 1)), 0, 1)
  floor = look.uniform(2.9, 3.6, num_buildings)
  spacing = look.uniform(2.0, 3.6, num_buildings)
  facade[:num_buildings] = np.stack(
      [
          floor,
          spacing,
          look.uniform(0.35, 0.6, num_buildings) * spacing,
          look.uniform(0.4, 0.6, num_buildings) * floor,
      ],
      axis=1,
  )
  for k in range(num_objects):
    i = num_buildings + k
    if classes[i] == CAR:
      colors[i, 0] = _CAR_PALETTE[look.integers(len(_CAR_PALETTE))]
      colors[i, 1] = look.uniform(0.06, 0.18) * np.array([0.9, 1.0, 1.15])
    else:
      colors[i, 0] = look.uniform(0.1, 0.9, 3)
      colors[i, 1] = look.uniform(0.05, 0.5) * look.uniform(0.7, 1.0, 3)
  elevation = look.uniform(np.radians(25), np.radians(70))
  azimuth = look.uniform(-np.pi, np.pi)
  sun_direction = np.array(
      [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
  )
  warmth = look.uniform(0.0, 0.15)
  sun_color = np.array([1.0, 0.95 - warmth / 2, 0.88 - warmth]) * look.uniform(0.65, 0.8)
  ambient_color = np.array([0.36, 0.40, 0.48]) * look.uniform(0.8, 1.1)

  return Scene(
      seed=seed,
      lane_width=float(lane_width),
      lanes_per_direction=lanes,
      road_half_width=float(road_half_width),
      sidewalk_outer=float(sidewalk_outer),
      crosswalk_x=float(crosswalk_x),
      box_centers=np.concatenate([b_centers, o_centers]),
      box_sizes=np.concatenate([b_sizes, o_sizes]),
      box_headings=np.concatenate([np.zeros(num_buildings), o_headings]),
      box_velocities=np.concatenate([np.zeros((num_buildings, 3)), o_velocities]),
      box_classes=classes,
      box_track_ids=track_ids,
      box_colors=colors,
      facade_params=facade,
      box_texture_seeds=look.integers(0, 2**31 - 1, m),
      ego_position=ego_position,
      ego_heading=float(ego_heading),
      ego_speed=float(ego_speed),
      ego_yaw_rate=float(ego_yaw_rate),
      sun_direction=sun_direction,
      sun_color=sun_color,
      ambient_color=ambient_color,
      texture_seed=int(look.integers(0, 2**31 - 1)),
  )


def rigid(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
  """Builds a 4x4 rigid transform from R [3, 3] and t [3]."""
  out = np.eye(4)
  out[:3, :3] = rotation
  out[:3, 3] = translation
  return out


def yaw_rotation(yaw: float) -> np.ndarray:
  """[3, 3] rotation by `yaw` radians about z (counter-clockwise from above)."""
  c, s = np.cos(yaw), np.sin(yaw)
  return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def ego_state(scene: Scene, time: float):
  """Ego vehicle pose at `time` seconds on its constant-curvature path.

  Args:
    scene: the scene.
    time: seconds since frame 0.

  Returns:
    (xy [2] float64 metres in the world frame, heading float radians).
  """
  w, v = scene.ego_yaw_rate, scene.ego_speed
  psi0 = scene.ego_heading
  psi = psi0 + w * time
  if abs(w) < 1e-9:
    dx, dy = v * time * np.cos(psi0), v * time * np.sin(psi0)
  else:
    # Exact integral of (v cos psi, v sin psi) for psi linear in time.
    dx = v / w * (np.sin(psi) - np.sin(psi0))
    dy = -v / w * (np.cos(psi) - np.cos(psi0))
  return scene.ego_position + np.array([dx, dy]), psi


def world_from_vehicle(scene: Scene, time: float) -> np.ndarray:
  """[4, 4] float64 pose of the vehicle frame at `time` in the world frame."""
  xy, psi = ego_state(scene, time)
  return rigid(yaw_rotation(psi), np.array([xy[0], xy[1], 0.0]))


def vehicle_from_camera(camera_height: float = CAMERA_HEIGHT) -> np.ndarray:
  """[4, 4] float64 fixed extrinsic mapping camera to vehicle coordinates.

  Camera x (right) is vehicle -y, camera y (down) is vehicle -z, camera z
  (forward) is vehicle x; the camera sits `camera_height` metres above the
  vehicle origin.
  """
  rotation = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
  return rigid(rotation, np.array([0.0, 0.0, camera_height]))


def world_from_camera(scene: Scene, time: float) -> np.ndarray:
  """[4, 4] float64 pose of the camera at `time` in the world frame."""
  return world_from_vehicle(scene, time) @ vehicle_from_camera()


def box_centers_at(scene: Scene, time: float) -> np.ndarray:
  """[M, 3] float64 box centres in metres, world frame, at `time` seconds."""
  return scene.box_centers + scene.box_velocities * time


def wrap_angle(angle):
  """Wraps radians to [-pi, pi)."""
  return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def object_boxes(scene: Scene, time: float):
  """Movable-object boxes at `time` in the vehicle frame at that time.

  Every movable object of the scene is listed (visible or not), ordered by
  track id, so an object keeps its row and id across a triplet.

  Returns:
    boxes: [K, 7] float64 (x, y, z_center, l, w, h, heading), metres and
      radians, vehicle frame; heading is the yaw of the box length axis from
      vehicle x, wrapped to [-pi, pi).
    classes: [K] int32, CAR or PEDESTRIAN.
    track_ids: [K] int32.
  """
  idx = scene.object_indices
  vehicle_from_world = np.linalg.inv(world_from_vehicle(scene, time))
  centers_w = box_centers_at(scene, time)[idx]
  centers_v = centers_w @ vehicle_from_world[:3, :3].T + vehicle_from_world[:3, 3]
  _, psi = ego_state(scene, time)
  headings = wrap_angle(scene.box_headings[idx] - psi)
  boxes = np.concatenate([centers_v, scene.box_sizes[idx], headings[:, None]], axis=1)
  return boxes, scene.box_classes[idx], scene.box_track_ids[idx]


def example_seed(base_seed: int, split_index: int, index: int) -> int:
  """Scene seed of example `index` of a split, independent of build order.

  Derived with numpy's SeedSequence from (base_seed, split_index, index), so
  splits never share a scene (up to a 2^-63 collision chance) and example k
  is the same however many examples are built.

  Args:
    base_seed: non-negative int, the dataset's seed.
    split_index: non-negative int identifying the split.
    index: non-negative int, example index within the split.

  Returns:
    A non-negative int below 2^63 (fits int64).
  """
  state = np.random.SeedSequence([int(base_seed), int(split_index), int(index)]).generate_state(
      2, np.uint32
  )
  return (int(state[0]) << 31) | (int(state[1]) >> 1)
