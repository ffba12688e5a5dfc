"""The gin clip sources of the video datasets, as an experiment's gin file binds them."""

import gin
import pytest
import tensorflow as tf

from taskology_tf.inputs import pipelines
from taskology_tf.training import experiment  # noqa: F401  (registers the clip sources)
from tests.datasets import fixtures


@pytest.fixture(scope='module')
def kitti(tmp_path_factory):
  return fixtures.build_kitti_raw(str(tmp_path_factory.mktemp('kitti')))[0]


@pytest.fixture(scope='module')
def cityscapes(tmp_path_factory):
  return fixtures.build_cityscapes(str(tmp_path_factory.mktemp('cityscapes')))[0]


@gin.configurable(module='tests')
def video_sources(kitti=gin.REQUIRED, city=gin.REQUIRED):
  """What an Experiment's `mediator_clips` / `evaluation_clips` bindings receive."""
  return kitti, city


def _bind(text):
  gin.clear_config()
  gin.parse_config(text)


def test_gin_bound_sources_shard_at_read_time(kitti, cityscapes):
  _bind(f"""
kitti_raw_clips.data_dir = '{kitti}'
kitti_raw_clips.height = 16
kitti_raw_clips.width = 48
kitti_train/kitti_raw_clips.split = 'train'
cityscapes_clips.data_dir = '{cityscapes}'
cityscapes_clips.height = 16
cityscapes_clips.width = 52
city_val/cityscapes_clips.split = 'validation'
video_sources.kitti = @kitti_train/kitti_raw_clips
video_sources.city = @city_val/cityscapes_clips
""")

  try:
    kitti_source, city_source = video_sources()
    whole = list(pipelines.read_clips(kitti_source))
    assert len(whole) == 3  # The fixture's three train clips.
    # Two input pipelines: each reads its own even share (the source takes input_context).
    shards = [
        list(
            pipelines.read_clips(
                kitti_source, tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i)
            )
        )
        for i in range(2)
    ]
    keys = sorted(int(c['scene_seed']) for shard in shards for c in shard)
    assert keys == sorted(int(c['scene_seed']) for c in whole)
    city = list(pipelines.read_clips(city_source))
    assert len(city) == 2 and city[0]['image'].shape == (3, 16, 52, 3)
  finally:
    gin.clear_config()
