"""ScanNet v2 RGB-D frame triplets (TFDS builder), its `.sens` reader/writer and exporter.

Modules:
  sens: the `.sens` binary format (`SensFile`, `write_sens`, `export_sens`).
  reader: a scene in either raw layout (`open_scene`, `ExportedScene`, `SensScene`), pose
    validation and relative poses.
  builder: the TFDS builder `ScanNet` and `make_config`.

Build with `tools/build_dataset.py --dataset=scannet --manual_dir=RAW --data_dir=DIR`; load
with `taskology_tf.datasets.loader.load_scannet`; export a `.sens` file with
`tools/export_scannet.py`.
"""
