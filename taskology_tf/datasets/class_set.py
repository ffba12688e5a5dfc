"""The project's one semantic class set, its movable classes, and every dataset's map into it.

The class set is Cityscapes' 19 evaluation classes in their train-id order (cityscapesscripts
`helpers/labels.py`), so a Cityscapes train id *is* a project class id and Table 1's
"person and vehicles" mIoU is the usual Cityscapes one over the 8 movable classes. The
synthetic world's five classes (sky, ground, building, car, pedestrian) all have a counterpart,
so nothing is added for it.

Mappings (label value in the source -> project class id, everything else -> `IGNORE_LABEL`):

- COCO panoptic (`panoptic_coco_categories.json`, 133 categories): the categories that name the
  same thing as a class (person, bicycle, car, motorcycle, bus, train, truck, traffic light,
  stop sign -> traffic sign, road, pavement -> sidewalk, building / house / roof -> building,
  the five wall-* -> wall, fence, tree / flower -> vegetation, grass / dirt / sand / gravel /
  playingfield -> terrain, sky). Deliberate choices: COCO has no *rider* (a person on a bike is
  a `person`) and no *pole*, so a COCO-trained segmenter never predicts them; airplane and boat
  move but are not in the set (ignored, as Cityscapes ignores caravan and trailer); railroad and
  bridge are ignored as Cityscapes' train ids ignore rail track and bridge; indoor stuff,
  animals and objects are ignored. Every entry carries COCO's category name, and the COCO
  builder checks the dataset's JSON against it, so an id that means something else is an error.
- Cityscapes labelIds (`*_gtFine_labelIds.png`): the official labelId -> trainId table (caravan,
  trailer, polegroup, license plate and the void classes are ignored).
- Synthetic world (`datasets/synthetic_world/scene.py`): sky, ground -> road (the synthetic
  ground plane is road and the sidewalk beyond it in one class), building, car,
  pedestrian -> person. The synthetic builder keeps its own ids (the existing synthetic
  experiments and tests use them); experiments that want project ids map them when reading
  with `synthetic_to_classes` (a `tf.gather`, usable in a tf.data map).

Each mapping is a 256-entry lookup table (`*_TABLE`), applied by a numpy function (build time)
and a TF function (`tf_*`, graph and XLA friendly); values outside the table go to
`IGNORE_LABEL`.
"""

from typing import Dict, Mapping, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from taskology_tf.datasets.synthetic_world import scene as _scene

IGNORE_LABEL = 255

# Cityscapes train-id order.
CLASS_NAMES: Tuple[str, ...] = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
    'motorcycle', 'bicycle',
)  # fmt: skip
NUM_CLASSES = len(CLASS_NAMES)
CLASS_IDS: Dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

# Table 1's movable classes: Cityscapes' human and vehicle categories (Eq. 2's mask).
MOVABLE_CLASS_NAMES: Tuple[str, ...] = (
    'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle',
)  # fmt: skip
MOVABLE_CLASS_IDS: Tuple[int, ...] = tuple(CLASS_IDS[n] for n in MOVABLE_CLASS_NAMES)

# COCO panoptic category id -> (COCO category name, project class name).
COCO_PANOPTIC_MAPPING: Dict[int, Tuple[str, str]] = {
    1: ('person', 'person'),
    2: ('bicycle', 'bicycle'),
    3: ('car', 'car'),
    4: ('motorcycle', 'motorcycle'),
    6: ('bus', 'bus'),
    7: ('train', 'train'),
    8: ('truck', 'truck'),
    10: ('traffic light', 'traffic light'),
    13: ('stop sign', 'traffic sign'),
    119: ('flower', 'vegetation'),
    125: ('gravel', 'terrain'),
    128: ('house', 'building'),
    145: ('playingfield', 'terrain'),
    149: ('road', 'road'),
    151: ('roof', 'building'),
    154: ('sand', 'terrain'),
    171: ('wall-brick', 'wall'),
    175: ('wall-stone', 'wall'),
    176: ('wall-tile', 'wall'),
    177: ('wall-wood', 'wall'),
    184: ('tree-merged', 'vegetation'),
    185: ('fence-merged', 'fence'),
    187: ('sky-other-merged', 'sky'),
    191: ('pavement-merged', 'sidewalk'),
    193: ('grass-merged', 'terrain'),
    194: ('dirt-merged', 'terrain'),
    197: ('building-other-merged', 'building'),
    199: ('wall-other-merged', 'wall'),
}
COCO_NUM_PANOPTIC_CATEGORIES = 133

# Cityscapes labelId -> (Cityscapes label name, project class name); the trainId table.
CITYSCAPES_LABEL_MAPPING: Dict[int, Tuple[str, str]] = {
    7: ('road', 'road'),
    8: ('sidewalk', 'sidewalk'),
    11: ('building', 'building'),
    12: ('wall', 'wall'),
    13: ('fence', 'fence'),
    17: ('pole', 'pole'),
    19: ('traffic light', 'traffic light'),
    20: ('traffic sign', 'traffic sign'),
    21: ('vegetation', 'vegetation'),
    22: ('terrain', 'terrain'),
    23: ('sky', 'sky'),
    24: ('person', 'person'),
    25: ('rider', 'rider'),
    26: ('car', 'car'),
    27: ('truck', 'truck'),
    28: ('bus', 'bus'),
    31: ('train', 'train'),
    32: ('motorcycle', 'motorcycle'),
    33: ('bicycle', 'bicycle'),
}

# Synthetic world class id -> (its name in scene.CLASS_NAMES, project class name).
SYNTHETIC_WORLD_MAPPING: Dict[int, Tuple[str, str]] = {
    _scene.SKY: ('sky', 'sky'),
    _scene.GROUND: ('road', 'road'),
    _scene.BUILDING: ('building', 'building'),
    _scene.CAR: ('car', 'car'),
    _scene.PEDESTRIAN: ('pedestrian', 'person'),
}

TABLE_SIZE = 256


def class_id(name: str) -> int:
  """The project class id of a class name.

  Raises:
    KeyError: not a class of the set (the message lists them).
  """
  if name not in CLASS_IDS:
    raise KeyError(f'{name!r} is not a project class; classes: {", ".join(CLASS_NAMES)}')
  return CLASS_IDS[name]


def class_names(ids: Sequence[int]) -> Tuple[str, ...]:
  """The names of project class ids, e.g. for naming the classes an mIoU averages."""
  return tuple(CLASS_NAMES[int(i)] for i in ids)


def movable_classes_key(prefix: str = 'miou_movable') -> str:
  """A metric key that names the movable classes it averages, e.g. 'miou_movable_person_...'.

  Summary-safe characters only (spaces become '-').
  """
  return '_'.join([prefix] + [n.replace(' ', '-') for n in MOVABLE_CLASS_NAMES])


def make_table(mapping: Mapping[int, Tuple[str, str]]) -> np.ndarray:
  """[256] uint8 lookup table: source value -> project class id (IGNORE_LABEL if unmapped)."""
  table = np.full([TABLE_SIZE], IGNORE_LABEL, np.uint8)
  for source_id, (_, name) in mapping.items():
    if not 0 <= source_id < TABLE_SIZE:
      raise ValueError(f'source label {source_id} ({name}) is outside [0, {TABLE_SIZE})')
    table[source_id] = class_id(name)
  return table


COCO_PANOPTIC_TABLE = make_table(COCO_PANOPTIC_MAPPING)
CITYSCAPES_LABEL_TABLE = make_table(CITYSCAPES_LABEL_MAPPING)
SYNTHETIC_WORLD_TABLE = make_table(SYNTHETIC_WORLD_MAPPING)


def apply_table(table: np.ndarray, labels) -> np.ndarray:
  """numpy: maps integer `labels` (any shape) through `table`; outside [0, len) -> ignore."""
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer):
    raise TypeError(f'labels must be integers, got {labels.dtype}')
  flat = labels.astype(np.int64)
  inside = (flat >= 0) & (flat < len(table))
  out = np.full(labels.shape, IGNORE_LABEL, np.uint8)
  out[inside] = table[flat[inside]]
  return out


def tf_apply_table(table: np.ndarray, labels: tf.Tensor, dtype=tf.uint8) -> tf.Tensor:
  """TF: maps integer `labels` (any shape) through `table` with tf.gather; outside -> ignore."""
  labels = tf.cast(labels, tf.int32)
  inside = (labels >= 0) & (labels < len(table))
  mapped = tf.gather(tf.constant(table, tf.int32), tf.where(inside, labels, 0))
  return tf.cast(tf.where(inside, mapped, IGNORE_LABEL), dtype)


def coco_panoptic_to_classes(category_ids) -> np.ndarray:
  """COCO panoptic category ids (e.g. per segment or per pixel) -> uint8 project classes."""
  return apply_table(COCO_PANOPTIC_TABLE, category_ids)


def cityscapes_label_ids_to_classes(label_ids) -> np.ndarray:
  """Cityscapes labelIds ([H, W] of `*_gtFine_labelIds.png`) -> uint8 project classes."""
  return apply_table(CITYSCAPES_LABEL_TABLE, label_ids)


def synthetic_to_classes(labels) -> np.ndarray:
  """Synthetic world class ids (scene.SKY, ...) -> uint8 project classes."""
  return apply_table(SYNTHETIC_WORLD_TABLE, labels)


def tf_coco_panoptic_to_classes(category_ids: tf.Tensor, dtype=tf.uint8) -> tf.Tensor:
  """TF version of `coco_panoptic_to_classes`."""
  return tf_apply_table(COCO_PANOPTIC_TABLE, category_ids, dtype)


def tf_cityscapes_label_ids_to_classes(label_ids: tf.Tensor, dtype=tf.uint8) -> tf.Tensor:
  """TF version of `cityscapes_label_ids_to_classes`."""
  return tf_apply_table(CITYSCAPES_LABEL_TABLE, label_ids, dtype)


def tf_synthetic_to_classes(labels: tf.Tensor, dtype=tf.uint8) -> tf.Tensor:
  """TF version of `synthetic_to_classes` (e.g. in a tf.data map over synthetic clips)."""
  return tf_apply_table(SYNTHETIC_WORLD_TABLE, labels, dtype)


def movable_mask(
    labels: Union[np.ndarray, tf.Tensor], movable_ids: Sequence[int] = MOVABLE_CLASS_IDS
) -> Union[np.ndarray, tf.Tensor]:
  """True where a project class id is movable (Eq. 2's mask before dilation).

  Args:
    labels: integer project class ids, any shape (IGNORE_LABEL is not movable); a tf.Tensor
      gives a tf.Tensor, anything else a numpy array.
    movable_ids: the movable class ids (default the 8 of MOVABLE_CLASS_NAMES).

  Returns:
    bool, the shape of `labels`.
  """
  if isinstance(labels, (tf.Tensor, tf.Variable)):
    labels = tf.cast(labels, tf.int32)
    mask = tf.zeros_like(labels, tf.bool)
    for c in movable_ids:
      mask = mask | tf.equal(labels, int(c))
    return mask
  return np.isin(np.asarray(labels), np.asarray(movable_ids))
