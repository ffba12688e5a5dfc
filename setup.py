"""Package layout (everything else is in pyproject.toml).

tools/ (the absl entry points) installs as the package `taskology_tf_tools`, so the console
scripts and `python -m taskology_tf_tools.<tool>` work without any sys.path manipulation.
"""

import setuptools

setuptools.setup(
    packages=setuptools.find_packages(include=['taskology_tf', 'taskology_tf.*'])
    + ['taskology_tf_tools'],
    package_dir={'taskology_tf_tools': 'tools'},
    # Data files the code reads at run time (the KITTI Eigen and ScanNet v2 split lists,
    # SceneNet's schema).
    package_data={
        'taskology_tf.datasets.kitti_raw': ['splits/*'],
        'taskology_tf.datasets.scenenet': ['*.proto'],
        'taskology_tf.datasets.scannet': ['splits/*'],
    },
)
