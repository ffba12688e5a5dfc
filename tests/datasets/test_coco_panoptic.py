"""COCO panoptic -> project-class semantic labels: fixtures in COCO's layout, real samples, errors."""

import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from taskology_tf.datasets import class_set
from taskology_tf.datasets import loader
from taskology_tf.datasets import raw_io
from taskology_tf.datasets.coco_panoptic import builder as coco

REAL = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared', 'data', 'real')
REAL_COCO = os.path.join(REAL, 'coco_panoptic')
REAL_SAMPLE = os.path.join(REAL_COCO, 'sample_data')

H, W = 20, 30
# The fixture's categories: names as in panoptic_coco_categories.json.
CATEGORIES = [
    {'id': 1, 'name': 'person', 'isthing': 1, 'supercategory': 'person'},
    {'id': 3, 'name': 'car', 'isthing': 1, 'supercategory': 'vehicle'},
    {'id': 18, 'name': 'dog', 'isthing': 1, 'supercategory': 'animal'},
    {'id': 149, 'name': 'road', 'isthing': 0, 'supercategory': 'ground'},
    {'id': 187, 'name': 'sky-other-merged', 'isthing': 0, 'supercategory': 'sky'},
]
# Segment id -> (category id, region rows, region columns); painted in this order.
SKY, ROAD, CAR, PERSON, DOG = 5000, 70000, 1, 2 + 256 * 3, 12345 + 256**2 * 7
SEGMENTS = {
    SKY: (187, slice(0, 8), slice(0, W)),
    ROAD: (149, slice(8, H), slice(0, W)),
    CAR: (3, slice(10, 16), slice(5, 15)),
    PERSON: (1, slice(10, 18), slice(20, 24)),
    DOG: (18, slice(18, 20), slice(0, 4)),
}


def _segment_map():
  ids = np.zeros((H, W), np.int64)
  for seg_id, (_, rows, cols) in SEGMENTS.items():
    ids[rows, cols] = seg_id
  ids[0:2, 0:2] = 0  # Void.
  return ids


def _expected_labels():
  # sky 10, road 0, car 13, person 11; dog (unmapped) and void -> 255.
  ids = _segment_map()
  out = np.full((H, W), 255, np.uint8)
  for seg_id, name in ((SKY, 'sky'), (ROAD, 'road'), (CAR, 'car'), (PERSON, 'person')):
    out[ids == seg_id] = class_set.class_id(name)
  return out


def _ids_to_rgb(ids):
  return np.stack([ids % 256, ids // 256 % 256, ids // 256**2], -1).astype(np.uint8)


def write_coco(root, split_dir='val2017', segments=SEGMENTS, categories=CATEGORIES):
  """COCO's layout: <split>/<id>.jpg, annotations/panoptic_<split>.json and PNG folder."""
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(root, split_dir), exist_ok=True)
  png_dir = os.path.join(root, 'annotations', f'panoptic_{split_dir}')
  os.makedirs(png_dir, exist_ok=True)
  ids = _segment_map()
  Image.fromarray(_ids_to_rgb(ids)).save(os.path.join(png_dir, '000000000042.png'))
  Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
      os.path.join(root, split_dir, '000000000042.jpg'), quality=95
  )
  segments_info = [
      {'id': s, 'category_id': c, 'iscrowd': 0, 'area': int((ids == s).sum()), 'bbox': []}
      for s, (c, _, _) in segments.items()
  ]
  data = {
      'info': {},
      'licenses': [],
      'images': [
          {'id': 42, 'file_name': '000000000042.jpg', 'height': H, 'width': W},
          {'id': 7, 'file_name': '000000000007.jpg', 'height': H, 'width': W},  # Unannotated.
      ],
      'annotations': [
          {'image_id': 42, 'file_name': '000000000042.png', 'segments_info': segments_info}
      ],
      'categories': categories,
  }
  path = os.path.join(root, 'annotations', f'panoptic_{split_dir}.json')
  with open(path, 'w') as f:
    json.dump(data, f)
  return path


def _examples(builder, split):
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_build_summary_labels_and_crop(tmp_path):
  from taskology_tf_tools import build_dataset  # pylint: disable=g-import-not-at-top

  raw = str(tmp_path / 'raw')
  write_coco(raw)
  data_dir = str(tmp_path / 'tfds')
  builder, lines = build_dataset.build_video_dataset(
      'coco_panoptic', raw, H, W, data_dir, resize_mode='stretch'
  )
  text = '\n'.join(lines)
  assert 'validation: 1 examples' in text
  assert 'validation: image without a panoptic annotation: 1' in text
  # The summary names each class with its share of the pixels.
  assert 'validation pixels:' in text and 'person' in text
  (ex,) = _examples(builder, 'validation')
  assert ex['image'].shape == (1, H, W, 3) and ex['semantics'].shape == (1, H, W)
  np.testing.assert_array_equal(ex['semantics'][0], _expected_labels())
  assert ex['image_id'] == 42 and ex['scene_seed'] == 42
  # The counts are stored with the build (read back by a fresh builder).
  reread = coco.CocoPanoptic(config=coco.make_config(H, W, 'stretch'), data_dir=data_dir)
  pixels = reread.info.metadata['class_pixels']['validation']
  expected = _expected_labels()
  assert pixels['person'] == (expected == 11).sum() == 32
  assert pixels['ignore'] == (expected == 255).sum() == 4 + 8  # void 2x2, dog 2x4.
  # The loader reads the build as one-frame clips.
  ds = loader.load_coco_panoptic('validation', data_dir, H, W, resize_mode='stretch')
  assert ds.element_spec['semantics'].shape == (1, H, W)
  # 'crop' to 10 x 30 (aspect 3): rows 5:15 of the 20 x 30 image, no resize needed.
  crop, _ = build_dataset.build_video_dataset('coco_panoptic', raw, 10, W, data_dir)
  (ex,) = _examples(crop, 'validation')
  np.testing.assert_array_equal(ex['semantics'][0], _expected_labels()[5:15])
  np.testing.assert_array_equal(coco.crop_window((20, 30), 10, 30), (5, 15, 0, 30))
  # Output 20 x 10 (aspect 1/2): all 20 rows, 20 / 2 = 10 columns from (30 - 10) / 2 = 10.
  np.testing.assert_array_equal(coco.crop_window((20, 30), 20, 10), (0, 20, 10, 20))
  # Resizing labels is nearest-neighbour: only values of the source map appear.
  small, _ = build_dataset.build_video_dataset('coco_panoptic', raw, 7, 11, data_dir)
  (ex,) = _examples(small, 'validation')
  assert set(np.unique(ex['semantics'])) <= {0, 10, 11, 13, 255}


def test_segment_ids_from_rgb():
  # id = R + 256 G + 256^2 B.
  png = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [255, 255, 255]]], np.uint8)
  np.testing.assert_array_equal(coco.rgb_to_segment_ids(png), [[1, 256, 65536, 256**3 - 1]])


def _make(raw, split_dir='val2017'):
  skips = raw_io.SkipCounter()
  items, _ = coco.plan_split(raw, 'validation', split_dir, skips)
  return [coco.make_example(item, coco.make_config(H, W, 'stretch')) for item in items]


def test_errors_name_the_file(tmp_path):
  raw = str(tmp_path / 'raw')
  json_path = write_coco(raw)
  png = os.path.join(raw, 'annotations', 'panoptic_val2017', '000000000042.png')
  image = os.path.join(raw, 'val2017', '000000000042.jpg')
  assert len(_make(raw)) == 1
  # A JSON segment the PNG does not have.
  write_coco(raw, segments={**SEGMENTS, 99: (1, slice(0, 0), slice(0, 0))})
  with pytest.raises(raw_io.RawDataError, match=r'000000000042\.png.*\[99\].*not in the PNG'):
    _make(raw)
  # A PNG segment the JSON does not list.
  write_coco(raw, segments={k: v for k, v in SEGMENTS.items() if k != CAR})
  with pytest.raises(raw_io.RawDataError, match=r'000000000042\.png.*\[1\].*not in the JSON'):
    _make(raw)
  # A category id the JSON does not define, and one whose name contradicts the mapping.
  write_coco(raw, categories=CATEGORIES[1:])
  with pytest.raises(raw_io.RawDataError, match='panoptic_val2017.json.*category_id 1'):
    _make(raw)
  renamed = [dict(c, name='pedestrian') if c['id'] == 1 else c for c in CATEGORIES]
  write_coco(raw, categories=renamed)
  with pytest.raises(raw_io.RawDataError, match="category 1 is 'pedestrian'.*'person'"):
    _make(raw)
  write_coco(raw)
  # A truncated PNG and a missing image.
  with open(png, 'rb') as f:
    data = f.read()
  with open(png, 'wb') as f:
    f.write(data[: len(data) // 2])
  with pytest.raises(raw_io.RawDataError, match=r'000000000042\.png could not be decoded'):
    _make(raw)
  write_coco(raw)
  os.remove(image)
  with pytest.raises(raw_io.RawDataError, match=r'val2017/000000000042\.jpg does not exist'):
    _make(raw)
  # Malformed JSON: not JSON, and JSON without segments_info.
  with open(json_path, 'w') as f:
    f.write('{"images": [')
  with pytest.raises(raw_io.RawDataError, match='panoptic_val2017.json is not readable JSON'):
    _make(raw)
  with open(json_path, 'w') as f:
    json.dump({'images': [], 'annotations': [{'image_id': 1}], 'categories': []}, f)
  with pytest.raises(raw_io.RawDataError, match=r'panoptic_val2017.json: annotations\[0\] needs'):
    _make(raw)


def test_failed_build_leaves_nothing_prepared(tmp_path):
  raw = str(tmp_path / 'raw')
  write_coco(raw, segments={k: v for k, v in SEGMENTS.items() if k != PERSON})
  builder = coco.CocoPanoptic(config=coco.make_config(H, W), data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(raw_io.RawDataError, match='not in the JSON'):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=raw))
  assert not coco.CocoPanoptic(
      config=coco.make_config(H, W), data_dir=str(tmp_path / 'tfds')
  ).is_prepared()
  with pytest.raises(FileNotFoundError, match='build_dataset.py --dataset=coco_panoptic'):
    loader.load_coco_panoptic('validation', str(tmp_path / 'tfds'), H, W)


needs_real = pytest.mark.skipif(
    not os.path.isdir(REAL_SAMPLE), reason=f'real COCO panoptic samples not found at {REAL_SAMPLE}'
)


def _real_layout(tmp_path):
  """The real samples linked into COCO's layout (val2017)."""
  root = tmp_path / 'raw'
  (root / 'val2017').mkdir(parents=True)
  (root / 'annotations' / 'panoptic_val2017').mkdir(parents=True)
  with open(os.path.join(REAL_SAMPLE, 'panoptic_examples.json')) as f:
    data = json.load(f)
  for image in data['images']:
    os.symlink(
        os.path.join(REAL_SAMPLE, 'input_images', image['file_name']),
        root / 'val2017' / image['file_name'],
    )
  for ann in data['annotations']:
    os.symlink(
        os.path.join(REAL_SAMPLE, 'panoptic_examples', ann['file_name']),
        root / 'annotations' / 'panoptic_val2017' / ann['file_name'],
    )
  os.symlink(
      os.path.join(REAL_SAMPLE, 'panoptic_examples.json'),
      root / 'annotations' / 'panoptic_val2017.json',
  )
  return str(root), data


@needs_real
def test_real_samples_class_pixels_match_the_json_areas(tmp_path):
  raw, data = _real_layout(tmp_path)
  skips = raw_io.SkipCounter()
  items, categories = coco.plan_split(raw, 'validation', 'val2017', skips)
  assert len(items) == 2 and not skips.total()
  assert len(categories) == class_set.COCO_NUM_PANOPTIC_CATEGORIES
  by_image = {a['image_id']: a for a in data['annotations']}
  for item in items:
    png = raw_io.read_image(item.png_path, 'RGB')
    labels = coco.semantic_labels(coco.rgb_to_segment_ids(png), item.segments, item.png_path)
    # At full resolution every class's pixel count is the sum of its segments' JSON areas;
    # ignored are the unmapped segments plus the void pixels no segment covers.
    areas = {}
    for seg in by_image[item.image_id]['segments_info']:
      cls = int(class_set.coco_panoptic_to_classes([seg['category_id']])[0])
      areas[cls] = areas.get(cls, 0) + seg['area']
    for cls, area in areas.items():
      if cls != class_set.IGNORE_LABEL:
        assert (labels == cls).sum() == area, (item.image_id, cls)
    mapped = sum(a for c, a in areas.items() if c != class_set.IGNORE_LABEL)
    assert (labels == class_set.IGNORE_LABEL).sum() == labels.size - mapped
  # Image 142238: 14 person segments (one crowd) and 3 stuff segments that map (tree ->
  # vegetation, sky, grass -> terrain); the sports ball (37) is ignored.
  person = sum(s['area'] for s in by_image[142238]['segments_info'] if s['category_id'] == 1)
  assert person == 3528 + 3751 + 2301 + 4076 + 2931 + 2969 + 3557 + 477 + 3968 + 153 + 3330 + (
      355 + 636 + 24295
  )
  # Built at a quarter of the size (stretch, nearest): the person fraction stays close to the
  # JSON's (427 x 640 pixels).
  from taskology_tf_tools import build_dataset  # pylint: disable=g-import-not-at-top

  builder, lines = build_dataset.build_video_dataset(
      'coco_panoptic', raw, 107, 160, str(tmp_path / 'tfds'), resize_mode='stretch'
  )
  assert 'validation: 2 examples' in '\n'.join(lines)
  examples = {int(ex['image_id']): ex for ex in _examples(builder, 'validation')}
  built = (examples[142238]['semantics'] == class_set.class_id('person')).mean()
  assert abs(built - person / (427 * 640)) < 0.01
  # Image 439180: trucks (category 8) are movable; horses (19) are not in the class set.
  movable = class_set.movable_mask(examples[439180]['semantics'])
  truck = (examples[439180]['semantics'] == class_set.class_id('truck')).mean()
  assert truck > 0 and movable.mean() > truck
