"""KITTI raw video triplets on the Eigen split (TFDS builder) and its calibration utilities.

Modules:
  calibration: calib_cam_to_cam / calib_velo_to_cam parsing and the devkit's velodyne
    ground-truth projection (`load_calibration`, `project_velodyne`).
  builder: the TFDS builder `KittiRaw` and `make_config`.

Build with `tools/build_dataset.py --dataset=kitti_raw --manual_dir=RAW --data_dir=DIR`; load
with `taskology_tf.datasets.loader.load_kitti_raw`.
"""

from taskology_tf.datasets.kitti_raw.builder import KittiRaw
from taskology_tf.datasets.kitti_raw.builder import KittiRawConfig
from taskology_tf.datasets.kitti_raw.builder import make_config
from taskology_tf.datasets.kitti_raw.calibration import CalibrationError
from taskology_tf.datasets.kitti_raw.calibration import KittiCalibration
from taskology_tf.datasets.kitti_raw.calibration import load_calibration
from taskology_tf.datasets.kitti_raw.calibration import project_velodyne
