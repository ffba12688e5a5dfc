"""Waymo TFDS builder: in process and as a Beam pipeline (DirectRunner) on the same generated
raw folder give identical examples and drop counts; the clip source feeds the pillar pipeline."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from taskology_tf.datasets.waymo import builder as waymo
from taskology_tf.datasets.waymo import clips as waymo_clips
from taskology_tf.datasets.waymo import generated as wf

# 3 frames 0.2 s apart: a 6-frame segment at 10 Hz gives sequences at frames 4 and 5.
CONFIG = dict(num_frames=3, time_step=0.2, max_boxes=4)


def _build(raw, data_dir, use_beam):
  b = waymo.Waymo(config=waymo.make_config(**CONFIG), data_dir=data_dir, use_beam=use_beam)
  dl = tfds.download.DownloadConfig(manual_dir=raw)
  if use_beam:
    import apache_beam as beam  # pylint: disable=g-import-not-at-top

    dl = tfds.download.DownloadConfig(
        manual_dir=raw,
        beam_runner='DirectRunner',
        beam_options=beam.options.pipeline_options.PipelineOptions(),
    )
  b.download_and_prepare(download_config=dl)
  return b


def _examples(b, split):
  return {
      (e['segment'].decode(), int(e['timestamp_micros'][0])): e
      for e in tfds.as_numpy(b.as_dataset(split=split))
  }


@pytest.mark.timeout(600)
def test_beam_and_in_process_builds_are_identical(tmp_path):
  raw = wf.build_raw_dir(str(tmp_path / 'raw'), num_segments=(2, 1), num_frames=6)
  local = _build(raw, str(tmp_path / 'local'), use_beam=False)
  beam = _build(raw, str(tmp_path / 'beam'), use_beam=True)
  want = {'train': 4, 'validation': 2}  # 2 sequences per segment
  for b in (local, beam):
    assert {s: v.num_examples for s, v in b.info.splits.items()} == want
    # Frames 0..3 of every segment lack their earlier frames.
    assert dict(b.info.metadata['skipped']) == {
        'train: frames without 2 earlier frames 0.2 s apart': 8,
        'validation: frames without 2 earlier frames 0.2 s apart': 4,
    }
  for split in want:
    a, c = _examples(local, split), _examples(beam, split)
    assert sorted(a) == sorted(c) and len(a) == want[split]
    for key in a:
      assert sorted(a[key]) == sorted(c[key])
      for name in a[key]:
        np.testing.assert_array_equal(a[key][name], c[key][name], err_msg=f'{key} {name}')
  # The clip source reads the build into the pillar pipeline's sequence format.
  from taskology_tf.geometry import pillars  # pylint: disable=g-import-not-at-top
  from taskology_tf.inputs import point_clouds  # pylint: disable=g-import-not-at-top

  clips = waymo_clips.waymo_point_cloud_clips('train', str(tmp_path / 'local'), **CONFIG)
  seq = next(iter(clips))
  assert seq['points'].shape[0] == 3 and seq['gt_boxes'].shape == (3, 4, 7)
  assert float(tf.reduce_max(tf.abs(seq['points'][..., 3]))) < 1.0  # tanh(intensity)
  grid = pillars.PillarGrid(rows=16, cols=16, cell_size=3.0, x_min=-24.0, y_min=-24.0,
                            z_min=-3.0, z_max=5.0, max_pillars=32, max_points=4)  # fmt: skip
  pipe = point_clouds.PointCloudPipeline(grid=grid)
  batch = next(iter(pipe.dedicated_dataset(clips, batch_size=2)))
  assert batch['pillars'].shape == (2, 3, 32, 4, 9)
  assert batch['anchor_match'].shape[:2] == (2, 3)
  assert set(np.unique(batch['gt_difficulty'].numpy())) <= {0, 1, 2}


def test_missing_raw_data_and_unbuilt_dataset_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'(?s)waymo .* is not built.*--dataset=waymo'):
    waymo_clips.waymo_point_cloud_clips('train', str(tmp_path))
  (tmp_path / 'raw').mkdir()
  (tmp_path / 'raw' / 'notes.txt').write_text('no segments here')  # TFDS rejects an empty dir
  b = waymo.Waymo(config=waymo.make_config(**CONFIG), data_dir=str(tmp_path / 'out'))
  with pytest.raises(ValueError, match=r'no Waymo segment files under .*training/\*\.tfrecord'):
    b.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / 'raw'))
    )
  assert not b.is_prepared()


def test_truncated_segment_fails_the_build_naming_the_file(tmp_path):
  raw = wf.build_raw_dir(str(tmp_path / 'raw'), num_segments=(1, 0), num_frames=3)
  path = str(tmp_path / 'raw' / 'training' / 'segment-training_00_with_camera_labels.tfrecord')
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:-40])
  b = waymo.Waymo(config=waymo.make_config(**CONFIG), data_dir=str(tmp_path / 'out'))
  with pytest.raises(ValueError, match=r'segment-training_00.*record 2 is truncated'):
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=raw))
  assert not b.is_prepared()
