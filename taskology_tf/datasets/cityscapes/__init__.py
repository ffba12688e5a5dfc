"""Cityscapes video triplets (TFDS builder), cropped as Gordon et al. (ICCV 2019) did.

Build with `tools/build_dataset.py --dataset=cityscapes --manual_dir=RAW --data_dir=DIR`; load
with `taskology_tf.datasets.loader.load_cityscapes`.
"""

from taskology_tf.datasets.cityscapes.builder import Cityscapes
from taskology_tf.datasets.cityscapes.builder import CityscapesConfig
from taskology_tf.datasets.cityscapes.builder import crop_box
from taskology_tf.datasets.cityscapes.builder import make_config
from taskology_tf.datasets.cityscapes.builder import read_camera_json
