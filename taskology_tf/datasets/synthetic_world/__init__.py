"""Procedural street world rendered by vectorised ray casting (TFDS builder).

Modules:
  scene: random street scenes and ego trajectories (`generate_scene`,
    `example_seed`, poses, class constants).
  render: ray casting and appearance (`render_example`, `cast_camera_rays`,
    `cast_lidar`, `intrinsics_from_fov`, `SKY_DEPTH`).
  builder: the TFDS builder `SyntheticWorld` and `make_config`.

Load a built dataset with `taskology_tf.datasets.loader.load_synthetic_world`.
"""

from taskology_tf.datasets.synthetic_world.builder import feature_spec
from taskology_tf.datasets.synthetic_world.builder import make_config
from taskology_tf.datasets.synthetic_world.builder import render_split_example
from taskology_tf.datasets.synthetic_world.builder import SPLIT_INDICES
from taskology_tf.datasets.synthetic_world.builder import SyntheticWorld
from taskology_tf.datasets.synthetic_world.builder import SyntheticWorldConfig
from taskology_tf.datasets.synthetic_world.render import cast_camera_rays
from taskology_tf.datasets.synthetic_world.render import cast_lidar
from taskology_tf.datasets.synthetic_world.render import DOMAINS
from taskology_tf.datasets.synthetic_world.render import intrinsics_from_fov
from taskology_tf.datasets.synthetic_world.render import LIDAR_MAX_RANGE
from taskology_tf.datasets.synthetic_world.render import LIDAR_POINTS
from taskology_tf.datasets.synthetic_world.render import NUM_FRAMES
from taskology_tf.datasets.synthetic_world.render import render_example
from taskology_tf.datasets.synthetic_world.render import SKY_DEPTH
from taskology_tf.datasets.synthetic_world.scene import CAMERA_HEIGHT
from taskology_tf.datasets.synthetic_world.scene import CLASS_NAMES
from taskology_tf.datasets.synthetic_world.scene import DEFAULT_TIME_STEP
from taskology_tf.datasets.synthetic_world.scene import example_seed
from taskology_tf.datasets.synthetic_world.scene import generate_scene
from taskology_tf.datasets.synthetic_world.scene import LIDAR_HEIGHT
from taskology_tf.datasets.synthetic_world.scene import MAX_OBJECTS
from taskology_tf.datasets.synthetic_world.scene import MOVABLE_CLASSES
