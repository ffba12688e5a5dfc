"""COCO panoptic as semantic labels in the project class set (TFDS builder).

Build with `tools/build_dataset.py --dataset=coco_panoptic --manual_dir=RAW --data_dir=DIR`
(`--height`, `--width`, `--resize_mode`); load with
`taskology_tf.datasets.loader.load_coco_panoptic` or the clip source `clips.coco_panoptic_clips`.
"""

from taskology_tf.datasets.coco_panoptic.builder import CocoPanoptic
from taskology_tf.datasets.coco_panoptic.builder import CocoPanopticConfig
from taskology_tf.datasets.coco_panoptic.builder import make_config
