"""The project class set: names, movable classes, and the COCO / Cityscapes / synthetic maps."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.datasets import class_set as cs
from taskology_tf.datasets.synthetic_world import scene

REAL = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared', 'data', 'real')
COCO_CATEGORIES = os.path.join(REAL, 'coco_panoptic', 'panoptic_coco_categories.json')


def test_class_names_and_movable_ids():
  assert cs.NUM_CLASSES == len(cs.CLASS_NAMES) == 19 and len(set(cs.CLASS_NAMES)) == 19
  assert cs.IGNORE_LABEL >= cs.NUM_CLASSES
  names = ('person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle')
  assert cs.MOVABLE_CLASS_NAMES == names
  assert cs.class_names(cs.MOVABLE_CLASS_IDS) == names
  # Cityscapes train ids 11..18 are exactly the human and vehicle categories.
  assert cs.MOVABLE_CLASS_IDS == tuple(range(11, 19))
  with pytest.raises(KeyError, match='not a project class'):
    cs.class_id('pedestrian')
  key = cs.movable_classes_key()
  assert key == 'miou_movable_person_rider_car_truck_bus_train_motorcycle_bicycle'


@pytest.mark.parametrize(
    'mapping', [cs.COCO_PANOPTIC_MAPPING, cs.CITYSCAPES_LABEL_MAPPING, cs.SYNTHETIC_WORLD_MAPPING]
)
def test_every_mapped_name_is_a_class(mapping):
  for _, (_, name) in mapping.items():
    assert name in cs.CLASS_NAMES, name


def test_cityscapes_mapping_is_the_train_id_table():
  # labelId -> trainId of cityscapesscripts: the 19 evaluated labelIds in order.
  label_ids = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
  np.testing.assert_array_equal(cs.cityscapes_label_ids_to_classes(label_ids), np.arange(19))
  # The Cityscapes label names are the class names.
  for label_id, (cs_name, name) in cs.CITYSCAPES_LABEL_MAPPING.items():
    assert cs_name == name, label_id
  # Void, caravan (29), trailer (30), polegroup (18), license plate (-1) are ignored.
  for label_id in (0, 1, 4, 6, 9, 10, 14, 15, 16, 18, 29, 30, -1, 34, 255, 1000):
    assert cs.cityscapes_label_ids_to_classes([label_id])[0] == cs.IGNORE_LABEL, label_id


def test_synthetic_mapping_matches_scene_names():
  for synthetic_id, (synthetic_name, _) in cs.SYNTHETIC_WORLD_MAPPING.items():
    assert scene.CLASS_NAMES[synthetic_id] == synthetic_name
  mapped = cs.synthetic_to_classes(np.arange(len(scene.CLASS_NAMES)))
  assert cs.class_names(mapped) == ('sky', 'road', 'building', 'car', 'person')
  # The synthetic world's movable classes stay movable and nothing else becomes movable.
  movable = cs.movable_mask(mapped)
  np.testing.assert_array_equal(
      movable, np.isin(np.arange(len(scene.CLASS_NAMES)), scene.MOVABLE_CLASSES)
  )


def test_coco_mapping_names_match_the_real_categories_file():
  if not os.path.isfile(COCO_CATEGORIES):
    pytest.skip(f'real COCO panoptic categories not found at {COCO_CATEGORIES}')
  with open(COCO_CATEGORIES) as f:
    categories = {c['id']: c for c in json.load(f)}
  assert len(categories) == cs.COCO_NUM_PANOPTIC_CATEGORIES
  for cat_id, (coco_name, _) in cs.COCO_PANOPTIC_MAPPING.items():
    assert categories[cat_id]['name'] == coco_name, cat_id
  # The movable COCO categories map onto movable classes; every movable class but rider
  # (COCO has none) has a COCO source.
  sources = {name for _, name in cs.COCO_PANOPTIC_MAPPING.values()}
  assert set(cs.MOVABLE_CLASS_NAMES) - sources == {'rider'}
  things = [i for i, c in categories.items() if c['isthing'] and i in cs.COCO_PANOPTIC_MAPPING]
  assert sorted(things) == [1, 2, 3, 4, 6, 7, 8, 10, 13]


def test_hand_built_label_images_map_as_expected():
  # COCO: person 1, car 3, road 149, sky 187, dog 18 (unmapped), 0 (unlabelled), 300 (unknown).
  coco = np.array([[1, 3, 149], [187, 18, 0], [300, -5, 191]])
  expected = np.array([
      [cs.class_id('person'), cs.class_id('car'), cs.class_id('road')],
      [cs.class_id('sky'), 255, 255],
      [255, 255, cs.class_id('sidewalk')],
  ])  # fmt: skip
  np.testing.assert_array_equal(cs.coco_panoptic_to_classes(coco), expected)
  graph = tf.function(cs.tf_coco_panoptic_to_classes)(tf.constant(coco))
  assert graph.dtype == tf.uint8
  np.testing.assert_array_equal(graph.numpy(), expected)
  # Cityscapes labelIds: road 7, rider 25, bicycle 33, ego vehicle 1.
  city = np.array([[7, 25], [33, 1]], np.uint8)
  np.testing.assert_array_equal(cs.cityscapes_label_ids_to_classes(city), [[0, 12], [18, 255]])
  np.testing.assert_array_equal(
      cs.tf_cityscapes_label_ids_to_classes(tf.constant(city)).numpy(), [[0, 12], [18, 255]]
  )
  # Synthetic: pedestrian 4 -> person 11, 9 (unknown) -> ignore.
  synthetic = tf.constant([[scene.PEDESTRIAN, 9]], tf.uint8)
  np.testing.assert_array_equal(
      cs.tf_synthetic_to_classes(synthetic, tf.int32).numpy(), [[11, 255]]
  )
  # The movable mask: person, car, sidewalk / sky / ignore / ignore.
  labels = cs.coco_panoptic_to_classes(coco)
  np.testing.assert_array_equal(
      cs.movable_mask(labels), [[True, True, False], [False, False, False], [False] * 3]
  )
  np.testing.assert_array_equal(
      cs.movable_mask(tf.constant(labels)).numpy(), cs.movable_mask(labels)
  )


def test_float_labels_are_rejected():
  with pytest.raises(TypeError, match='integers'):
    cs.coco_panoptic_to_classes(np.array([1.0]))


def test_real_cityscapes_label_ids_map_to_the_real_train_ids():
  gt = os.path.join(REAL, 'cityscapes', 'gtFine', 'val', 'frankfurt')
  if not os.path.isdir(gt):
    pytest.skip(f'real Cityscapes gtFine sample not found at {gt}')
  from PIL import Image  # pylint: disable=g-import-not-at-top

  stem = os.path.join(gt, 'frankfurt_000000_000294_gtFine_')
  label_ids = np.asarray(Image.open(stem + 'labelIds.png'))
  train_ids = np.asarray(Image.open(stem + 'labelTrainIds.png'))
  # The project classes of the real labelIds are the official labelTrainIds. The sample's two
  # maps were downscaled separately, so ~0.3% of boundary pixels disagree; for every labelId
  # the train id it mostly has is ours.
  ours = cs.cityscapes_label_ids_to_classes(label_ids)
  assert np.mean(ours == train_ids) > 0.99
  for label_id in np.unique(label_ids):
    values, counts = np.unique(train_ids[label_ids == label_id], return_counts=True)
    assert values[np.argmax(counts)] == cs.cityscapes_label_ids_to_classes([label_id])[0]
  assert cs.movable_mask(train_ids).any()  # The frame has people or vehicles.
