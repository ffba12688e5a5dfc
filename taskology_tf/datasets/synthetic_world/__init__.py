"""Procedural street world rendered by vectorised ray casting (TFDS builder).

Public API:
  scene: `generate_scene`, `example_seed`, poses (`world_from_camera`, ...),
    class constants.
  render: `render_example`, `cast_camera_rays`, `cast_lidar`,
    `intrinsics_from_fov`, `SKY_DEPTH`.
  builder: `SyntheticWorld` (TFDS), `make_config`, `render_split_example`.
"""

from taskology_tf.datasets.synthetic_world.builder import make_config
from taskology_tf.datasets.synthetic_world.builder import render_split_example
from taskology_tf.datasets.synthetic_world.builder import SyntheticWorld
from taskology_tf.datasets.synthetic_world.builder import SyntheticWorldConfig
from taskology_tf.datasets.synthetic_world.render import DOMAINS
from taskology_tf.datasets.synthetic_world.render import intrinsics_from_fov
from taskology_tf.datasets.synthetic_world.render import LIDAR_POINTS
from taskology_tf.datasets.synthetic_world.render import NUM_FRAMES
from taskology_tf.datasets.synthetic_world.render import render_example
from taskology_tf.datasets.synthetic_world.render import SKY_DEPTH
from taskology_tf.datasets.synthetic_world.scene import CLASS_NAMES
from taskology_tf.datasets.synthetic_world.scene import example_seed
from taskology_tf.datasets.synthetic_world.scene import generate_scene
from taskology_tf.datasets.synthetic_world.scene import MAX_OBJECTS
from taskology_tf.datasets.synthetic_world.scene import MOVABLE_CLASSES
