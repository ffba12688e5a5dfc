"""Cityscapes builder: crop and intrinsics, triplets, labels, disparity depth, bad input."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from taskology_tf.datasets import loader
from taskology_tf.datasets import raw_io
from taskology_tf.datasets.cityscapes import builder as cs
from taskology_tf.inputs import pipelines
from tests.datasets import fixtures

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAL = os.path.join(REPO_ROOT, '..', 'shared', 'data', 'real', 'cityscapes')
REAL_STEM = 'frankfurt_000000_000294'

needs_real = pytest.mark.skipif(
    not os.path.isdir(REAL), reason=f'real Cityscapes sample {REAL} is absent (../shared/data/real)'
)


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  return fixtures.build_cityscapes(str(tmp_path_factory.mktemp('cityscapes')))


def _examples(ds_builder, split):
  return sorted(
      tfds.as_numpy(ds_builder.as_dataset(split=split)), key=lambda e: e['frame_indices'][1]
  )


def test_crop_matches_struct2depth_at_full_resolution():
  # struct2depth's Cityscapes crop (its README: "(192, 1856, 256, 768)"): rows 256:768 (the
  # middle half, dropping the bottom quarter with the ego car), columns 192:1856 (1664 wide =
  # 512 * 416 / 128), then 1664 x 512 -> 416 x 128.
  config = cs.make_config(128, 416)
  assert cs.crop_box((1024, 2048), config) == (256, 768, 192, 1856)


def test_intrinsics_against_gordon_et_als_data_example():
  # Gordon et al.'s data_example/erfurt_93/0000000002_cam.txt (made by struct2depth from the
  # erfurt camera, fx 2262.52, fy 2265.3017905988554, u0 1096.98, v0 513.137) holds
  # fx = 565.63, fy = 566.3254476497139, cx = 222.8240625, cy = 64.142125 at 416 x 128.
  # Ours: fx, fy scale by 416 / 1664 = 128 / 512 = 0.25: 565.63 and 566.32545 (equal to theirs).
  # The principal point is shifted by the crop and scaled with pixel centres at integers:
  # cx = (1096.98 - 192 + 0.5) * 0.25 - 0.5 = 225.87, cy = (513.137 - 256 + 0.5) * 0.25 - 0.5
  # = 63.909. struct2depth's cx = 1096.98 * 0.25 / (512 / 416) = 222.82 ignores the 48-column
  # crop offset (3.05 px off) and its cy = 513.137 / 2 * 0.25 halves instead of shifting.
  camera = {'fx': 2262.52, 'fy': 2265.3017905988554, 'u0': 1096.98, 'v0': 513.137}
  config = cs.make_config(128, 416)
  top, bottom, left, right = cs.crop_box((1024, 2048), config)
  k = raw_io.scale_intrinsics(
      raw_io.crop_intrinsics(cs.camera_intrinsics(camera), top, left), 416 / 1664, 128 / 512
  )
  assert k[0, 0] == pytest.approx(565.63) and k[1, 1] == pytest.approx(566.3254476497139)
  assert k[0, 2] == pytest.approx(225.87) and k[1, 2] == pytest.approx(63.90925)


def test_triplets_intrinsics_labels_and_depth(built):
  _, config, ds_builder, fixture = built
  assert {k: v.num_examples for k, v in ds_builder.info.splits.items()} == {
      'train': 2,
      'validation': 2,
  }
  assert dict(ds_builder.info.metadata['skipped']) == {'test: split folder missing': 1}
  # Snippet frames 275-280, labelled frame 278, centre stride 2 phased on it: centres 276 and
  # 278 (280 has no successor).
  train = _examples(ds_builder, 'train')
  assert [e['frame_indices'].tolist() for e in train] == [[275, 276, 277], [277, 278, 279]]
  raw_root = fixture['root']
  ex = train[1]
  # Crop of the 256 x 128 raw frames for 52 x 16: rows 32:96, width 64 * 52 / 16 = 208,
  # columns 24:232.
  for t, frame in enumerate((277, 278, 279)):
    path = os.path.join(
        raw_root,
        'leftImg8bit_sequence',
        'train',
        'aachen',
        f'aachen_000000_{frame:06d}_leftImg8bit.png',
    )
    np.testing.assert_array_equal(
        ex['image'][t], raw_io.resize_image(raw_io.read_image(path)[32:96, 24:232], 16, 52)
    )
  # K from the camera JSON (fx 282.815, fy 283.16272, u0 137.1225, v0 64.142125 at 256 x 128):
  # shift by the crop (cx 113.1225, cy 32.142125), scale by 52 / 208 = 16 / 64 = 0.25:
  # fx 70.70375, fy 70.79068, cx (113.1225 + 0.5) * 0.25 - 0.5 = 27.905625,
  # cy (32.142125 + 0.5) * 0.25 - 0.5 = 7.66053.
  np.testing.assert_allclose(
      ex['intrinsics'],
      [[70.70375, 0, 27.905625], [0, 70.79068, 7.66053], [0, 0, 1]],
      rtol=1e-5,
  )
  # Labels on the labelled frame only: raw rows < 64 sky (labelId 23 -> train id and project
  # class 10), rows >= 64 car (26 -> 13). Crop rows 32:96 -> output rows 0-7 sky, 8-15 car.
  assert ex['has_labels'].tolist() == [False, True, False]
  assert (ex['semantics'][1, :8] == 10).all() and (ex['semantics'][1, 8:] == 13).all()
  assert (ex['cityscapes_label'][1, :8] == 10).all() and (ex['cityscapes_label'][1, 8:] == 13).all()
  assert (ex['semantics'][[0, 2]] == cs.IGNORE).all()
  # Disparity p = 1 + 256 * 8 -> d = 8 px -> depth = 0.209313 * 282.815 / 8 = 7.39960 m.
  np.testing.assert_allclose(ex['depth'][1], 0.209313 * 2262.52 / 8 / 8, rtol=1e-6)
  assert not ex['depth'][[0, 2]].any()
  assert not train[0]['has_labels'].any()


def test_label_mapping_reproduces_the_official_train_ids():
  # Every labelId's train id per cityscapesscripts' labels.py (255 = ignored in evaluation).
  label_ids = np.arange(-1, 34)
  expected = np.full(label_ids.shape, 255)
  for label_id, train_id in {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8,
                             22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16,
                             32: 17, 33: 18}.items():  # fmt: skip
    expected[label_ids == label_id] = train_id
  np.testing.assert_array_equal(cs.label_ids_to_train_ids(label_ids), expected)
  # The project class set is the 19 train classes (datasets/class_set.py): same table.
  np.testing.assert_array_equal(cs.label_ids_to_project_classes(label_ids), expected)


@needs_real
def test_real_label_ids_map_to_the_real_train_ids():
  gt = os.path.join(REAL, 'gtFine', 'val', 'frankfurt')
  label_ids = raw_io.read_image(os.path.join(gt, f'{REAL_STEM}_gtFine_labelIds.png'), 'I')
  train_ids = raw_io.read_image(os.path.join(gt, f'{REAL_STEM}_gtFine_labelTrainIds.png'), 'I')
  # The sample's two maps were downscaled (to 256 x 128) separately, so ~0.3% of pixels at
  # class boundaries disagree; for every labelId the train id it mostly has is ours.
  ours = cs.label_ids_to_train_ids(label_ids)
  assert np.mean(ours == train_ids) > 0.99
  for label_id in np.unique(label_ids):
    values, counts = np.unique(train_ids[label_ids == label_id], return_counts=True)
    assert values[np.argmax(counts)] == cs.label_ids_to_train_ids(np.array([label_id]))[0]


@needs_real
def test_real_frame_builds_with_its_labels(tmp_path):
  # The real 256 x 128 frame as three frames of a validation snippet (293-295), with a camera
  # JSON and its real gtFine labels on 294.
  root = tmp_path / 'raw'
  seq_dir = root / 'leftImg8bit_sequence' / 'val' / 'frankfurt'
  seq_dir.mkdir(parents=True)
  image = os.path.join(REAL, 'leftImg8bit', 'val', 'frankfurt', f'{REAL_STEM}_leftImg8bit.png')
  for frame in (293, 294, 295):
    shutil.copy(image, seq_dir / f'frankfurt_000000_{frame:06d}_leftImg8bit.png')
  cam_dir = root / 'camera' / 'val' / 'frankfurt'
  cam_dir.mkdir(parents=True)
  (cam_dir / f'{REAL_STEM}_camera.json').write_text(json.dumps(fixtures.CITY_CAMERA))
  gt_dir = root / 'gtFine' / 'val' / 'frankfurt'
  gt_dir.mkdir(parents=True)
  real_gt = os.path.join(REAL, 'gtFine', 'val', 'frankfurt', f'{REAL_STEM}_gtFine_labelIds.png')
  shutil.copy(real_gt, gt_dir / f'{REAL_STEM}_gtFine_labelIds.png')
  config = cs.make_config(64, 208, raw_size=(128, 256))
  ds_builder = cs.Cityscapes(config=config, data_dir=str(tmp_path / 'tfds'))
  ds_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  (ex,) = _examples(ds_builder, 'validation')
  assert ex['has_labels'].tolist() == [False, True, False]
  # Crop rows 32:96, columns 24:232 of 256 x 128 -> 208 x 64 is a 1:1 crop: labels are the
  # crop of the real labels exactly.
  label_ids = raw_io.read_image(real_gt, 'I')[32:96, 24:232]
  np.testing.assert_array_equal(ex['cityscapes_label'][1], cs.label_ids_to_train_ids(label_ids))
  np.testing.assert_array_equal(ex['semantics'][1], cs.label_ids_to_project_classes(label_ids))
  # A street: road 0, building 2, sky 10, car 13.
  assert {0, 2, 10, 13} <= set(np.unique(ex['semantics'][1]))
  np.testing.assert_array_equal(ex['image'][1], raw_io.read_image(image)[32:96, 24:232])


def test_loader_reads_the_build(built):
  data_dir, _, _, _ = built
  ds = loader.load_cityscapes('validation', data_dir=data_dir, height=16, width=52)
  assert ds.element_spec['image'] == tf.TensorSpec([3, 16, 52, 3], tf.uint8)
  assert ds.element_spec['semantics'] == tf.TensorSpec([3, 16, 52], tf.uint8)
  with pytest.raises(FileNotFoundError, match='build_dataset.py --dataset=cityscapes'):
    loader.load_cityscapes('validation', data_dir=data_dir)
  # The project's pipelines consume the clips unchanged.
  mediator = next(iter(pipelines.mediator_dataset(ds, batch_size=2)))
  assert set(mediator) == {'image', 'intrinsics'} and mediator['image'].shape == (2, 3, 16, 52, 3)
  frames = next(iter(pipelines.evaluation_dataset(ds, batch_size=6)))
  assert frames['semantics'].shape == (6, 16, 52) and frames['depth'].shape == (6, 16, 52, 1)


# Bad input.


@pytest.fixture
def raw(tmp_path):
  return fixtures.write_cityscapes(str(tmp_path / 'raw'), splits=('train',))['root']


def _build(root, tmp_path):
  config = cs.make_config(16, 52, raw_size=(fixtures.CITY_H, fixtures.CITY_W))
  ds_builder = cs.Cityscapes(config=config, data_dir=str(tmp_path / 'tfds'))
  ds_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  return ds_builder


def _camera_json(root):
  return os.path.join(root, 'camera', 'train', 'aachen', 'aachen_000000_000278_camera.json')


def test_malformed_camera_json_names_file_and_key(raw, tmp_path):
  path = _camera_json(raw)
  open(path, 'w').write('{"intrinsic": {"fx": 1.0,')
  with pytest.raises(raw_io.RawDataError, match='000278_camera.json is not readable JSON'):
    _build(raw, tmp_path)
  open(path, 'w').write(json.dumps({'intrinsic': {'fx': 1.0, 'fy': 1.0, 'u0': 'x', 'v0': 2.0}}))
  with pytest.raises(
      raw_io.RawDataError, match="000278_camera.json: expected a number at intrinsic.u0, got 'x'"
  ):
    _build(raw, tmp_path)
  # Without a baseline the disparity cannot become depth: named too.
  camera = json.loads(json.dumps(fixtures.CITY_CAMERA))
  del camera['extrinsic']
  open(path, 'w').write(json.dumps(camera))
  with pytest.raises(raw_io.RawDataError, match='extrinsic.baseline'):
    _build(raw, tmp_path)
  assert not cs.Cityscapes(
      config=cs.make_config(16, 52), data_dir=str(tmp_path / 'tfds')
  ).is_prepared()


def test_truncated_png_and_wrong_size_are_errors(raw, tmp_path):
  seq = os.path.join(raw, 'leftImg8bit_sequence', 'train', 'aachen')
  path = os.path.join(seq, 'aachen_000000_000279_leftImg8bit.png')
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:100])
  with pytest.raises(raw_io.RawDataError, match='000279_leftImg8bit.png could not be decoded'):
    _build(raw, tmp_path)
  fixtures.write_png(path, np.zeros((64, 128, 3), np.uint8))
  with pytest.raises(
      raw_io.RawDataError, match='000279_leftImg8bit.png is 128x64, expected 256x128'
  ):
    _build(raw, tmp_path)


def test_missing_folders_and_cameras(raw, tmp_path):
  os.remove(_camera_json(raw))
  with pytest.raises(raw_io.RawDataError, match='no snippet with a camera JSON'):
    _build(raw, tmp_path)
  shutil.rmtree(os.path.join(raw, 'leftImg8bit_sequence'))
  with pytest.raises(raw_io.RawDataError, match='leftImg8bit_sequence does not exist'):
    _build(raw, tmp_path)


def test_snippet_without_camera_is_skipped_and_counted(raw, tmp_path):
  # A second snippet (frames 500-505) with no camera JSON beside the good one.
  rng = np.random.default_rng(1)
  seq = os.path.join(raw, 'leftImg8bit_sequence', 'train', 'aachen')
  for f in range(500, 506):
    fixtures.write_png(
        os.path.join(seq, f'aachen_000000_{f:06d}_leftImg8bit.png'),
        fixtures.random_image(rng, fixtures.CITY_H, fixtures.CITY_W),
    )
  ds_builder = _build(raw, tmp_path)
  assert ds_builder.info.splits['train'].num_examples == 2
  skipped = dict(ds_builder.info.metadata['skipped'])
  assert skipped['train: snippet without a camera JSON'] == 1


def test_struct2depth_frame_step_names_its_own_build(raw, tmp_path):
  # frame_step 2 (struct2depth's SKIP), centre stride 1: snippet frames 275-280 give centres
  # 277 and 278 (each needs c - 2 and c + 2): triplets (275, 277, 279) and (276, 278, 280).
  config = cs.make_config(16, 52, frame_step=2, centre_stride=1, raw_size=(128, 256))
  assert config.name == '16x52_step2_stride1'
  ds_builder = cs.Cityscapes(config=config, data_dir=str(tmp_path / 'tfds'))
  ds_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=raw))
  assert [e['frame_indices'].tolist() for e in _examples(ds_builder, 'train')] == [
      [275, 277, 279],
      [276, 278, 280],
  ]
  ds = loader.load_cityscapes(
      'train', str(tmp_path / 'tfds'), 16, 52, frame_step=2, centre_stride=1
  )
  assert len(list(ds)) == 2
  with pytest.raises(FileNotFoundError, match='not built'):
    loader.load_cityscapes('train', str(tmp_path / 'tfds'), 16, 52)  # The default sampling.
