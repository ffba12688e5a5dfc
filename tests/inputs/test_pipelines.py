"""Input pipelines: label-fraction subsets, label stripping, frame selection, mixing schedule."""

import numpy as np
import pytest
import tensorflow as tf

from taskology_tf.inputs import pipelines


def _clips(num=20, frames=3, h=4, w=6):
  index = np.arange(num, dtype=np.float32)
  return tf.data.Dataset.from_tensor_slices(
      {
          'image': np.zeros((num, frames, h, w, 3), np.uint8)
          + np.arange(frames, dtype=np.uint8)[None, :, None, None, None],
          'depth': np.ones((num, frames, h, w, 1), np.float32) * index[:, None, None, None, None],
          'intrinsics': np.tile(np.eye(3, dtype=np.float32), (num, 1, 1)),
      }
  )


def _ids(ds):
  return sorted(int(x['depth'][0, 0, 0, 0]) for x in ds)


def test_label_fraction_is_nested_and_deterministic():
  clips = _clips(200)
  small = _ids(pipelines.label_fraction_subset(clips, 0.1, seed=3))
  large = _ids(pipelines.label_fraction_subset(clips, 0.5, seed=3))
  assert set(small) <= set(large)  # Nested: a clip kept at 10% is kept at 50%.
  assert small == _ids(pipelines.label_fraction_subset(clips, 0.1, seed=3))
  assert 5 <= len(small) <= 40 and 70 <= len(large) <= 130  # ~Binomial(200, p)
  assert _ids(pipelines.label_fraction_subset(clips, 1.0)) == list(range(200))
  with pytest.raises(ValueError, match='label_fraction'):
    pipelines.label_fraction_subset(clips, 1.5)


def test_empty_dedicated_set_is_none():
  assert pipelines.dedicated_dataset(None, 4) is None
  with pytest.raises(ValueError, match='label_fraction'):
    pipelines.dedicated_dataset(_clips(), 4, label_fraction=0.0)


def test_dedicated_frames_carry_labels_and_selected_frames():
  batch = next(iter(pipelines.dedicated_dataset(_clips(), 5, frames=(1,), seed=0)))
  assert batch['image'].shape == (5, 4, 6, 3)
  assert np.all(batch['image'].numpy() == 1)  # frame index 1 of every clip
  assert batch['depth'].shape == (5, 4, 6, 1) and batch['intrinsics'].shape == (5, 3, 3)


def test_mediator_strips_labels_and_keeps_clips():
  batch = next(iter(pipelines.mediator_dataset(_clips(), 2, frames=(0, 2))))
  assert set(batch) == {'image', 'intrinsics'}  # No ground truth can leak into consistency.
  assert batch['image'].shape == (2, 2, 4, 6, 3)
  assert np.all(batch['image'].numpy()[:, 1] == 2)


def test_mixing_schedule():
  alternate = pipelines.MixingSchedule('alternate', mediator_every=2)
  kinds = [alternate.kinds(s, True, True) for s in range(6)]
  # Two supervised steps, then one consistency step.
  assert kinds == [(True, False), (True, False), (False, True)] * 2
  joint = pipelines.MixingSchedule('joint')
  assert joint.kinds(0, True, True) == (True, True)
  # No dedicated data (fully self-supervised): every step is a consistency step.
  assert alternate.kinds(0, False, True) == (False, True)
  assert alternate.kinds(2, True, False) == (True, False)
  with pytest.raises(ValueError, match='mode'):
    pipelines.MixingSchedule('sometimes')


def test_consistency_warm_up():
  schedule = pipelines.MixingSchedule('joint', consistency_start_step=3)
  assert [schedule.kinds(s, True, True) for s in range(5)] == [(True, False)] * 3 + [
      (True, True)
  ] * 2
  # A task with no dedicated data cannot warm up on labels: consistency from step 0.
  assert schedule.kinds(0, False, True) == (False, True)
