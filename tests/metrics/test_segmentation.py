"""Segmentation metrics over the project class set: movable mIoU on Cityscapes gtFine clips."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.datasets import class_set
from taskology_tf.datasets import loader
from taskology_tf.metrics import segmentation
from tests.datasets import fixtures

MOVABLE = 'person, rider, car, truck, bus, train, motorcycle, bicycle'
KEY = 'miou_movable_person_rider_car_truck_bus_train_motorcycle_bicycle'
SKY, CAR = class_set.class_id('sky'), class_set.class_id('car')


@pytest.fixture(scope='module')
def cityscapes(tmp_path_factory):
  """The Cityscapes fixture at 16 x 52: its labelled frame is sky in rows 0-7, car in 8-15."""
  data_dir, _, _, _ = fixtures.build_cityscapes(str(tmp_path_factory.mktemp('cityscapes')))
  return data_dir


def _sky_over_car(images):
  # Logits: sky in rows 0-7, car in rows 8-15 (the fixture's ground truth).
  n, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
  labels = tf.concat([tf.fill([n, h // 2, w], SKY), tf.fill([n, h - h // 2, w], CAR)], 1)
  return tf.one_hot(labels, class_set.NUM_CLASSES)


def test_movable_miou_on_gtfine_clips(cityscapes):
  clips = loader.load_cityscapes('validation', data_dir=cityscapes, height=16, width=52)
  # Car everywhere: car IoU = 8 x 52 / (16 x 52) = 1/2 (tp the car rows, union every pixel),
  # sky IoU = 0 (never predicted): movable mIoU 1/2 (car is the only movable class with
  # pixels), mIoU (1/2 + 0) / 2.
  result = segmentation.evaluate_frames(
      lambda im: tf.one_hot(tf.fill(tf.shape(im)[:3], CAR), class_set.NUM_CLASSES), clips
  )
  # Of the 2 validation clips only one has gtFine labels on its middle frame.
  assert len(list(clips)) == 2
  assert result['frames'] == 1 and result['movable_classes_present'] == ['car']
  np.testing.assert_allclose(result['metrics'][KEY], 0.5)
  np.testing.assert_allclose(result['metrics']['iou/car'], 0.5)
  np.testing.assert_allclose(result['metrics']['iou/sky'], 0.0)
  np.testing.assert_allclose(result['metrics']['miou'], 0.25)
  np.testing.assert_allclose(result['metrics']['pixel_accuracy'], 0.5)


def test_saved_model_evaluation_names_the_classes(cityscapes, tmp_path):
  module = tf.Module()
  module.serve = tf.function(
      lambda image: {'logits': _sky_over_car(image)},
      input_signature=[tf.TensorSpec([None, 16, 52, 3], tf.uint8, name='image')],
  )
  path = str(tmp_path / 'segmenter')
  tf.saved_model.save(module, path, signatures={'serving_default': module.serve})
  result = segmentation.evaluate_cityscapes_segmentation(path, cityscapes)
  assert result['protocol'] == 'cityscapes_gtFine_validation_16x52'
  np.testing.assert_allclose(result['metrics'][KEY], 1.0)
  np.testing.assert_allclose(result['metrics']['miou'], 1.0)
  text = segmentation.format_results(result)
  assert f'mIoU over the movable classes ({MOVABLE}; with pixels: car): 1.0000' in text
  # The same through tools/evaluate.py.
  output = tmp_path / 'eval.json'
  run = subprocess.run(
      [sys.executable, '-m', 'taskology_tf_tools.evaluate', f'--saved_model={path}',
       '--protocol=segmentation', '--dataset=cityscapes', '--split=validation',
       f'--data_dir={cityscapes}', f'--output={output}'],
      capture_output=True, text=True, timeout=300, check=False,
  )  # fmt: skip
  assert run.returncode == 0, run.stderr[-2000:]
  assert f'mIoU over the movable classes ({MOVABLE}; with pixels: car): 1.0000' in run.stdout
  saved = json.loads(output.read_text())
  assert saved['metrics'][KEY] == 1.0 and saved['movable_classes_present'] == ['car']


def test_iou_results_checks_its_inputs():
  with pytest.raises(ValueError, match='does not fit 19 class names'):
    segmentation.iou_results(np.zeros([5, 5]), class_set.CLASS_NAMES)
  # No movable class among the names: no movable key.
  assert not [k for k in segmentation.iou_results(np.eye(2), ('a', 'b')) if 'movable' in k]
