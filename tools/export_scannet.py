r"""Exports ScanNet `.sens` files to SensReader's folder layout (no python 2, no OpenCV).

  python tools/export_scannet.py --sens=RAW/scans/scene0000_00/scene0000_00.sens \
      --out_dir=EXPORTED/scene0000_00 [--frame_skip=1]

  python tools/export_scannet.py --manual_dir=RAW --out_dir=EXPORTED   # every scene

writes <out_dir>/color/<i>.jpg (the stored JPEG bytes, not re-encoded), depth/<i>.png (uint16
millimetres), pose/<i>.txt and intrinsic/*.txt (taskology_tf/datasets/scannet/sens.py,
`export_sens`). Each scene is written to `<out>.incomplete` and renamed when complete; a scene
already exported is left as it is, so an interrupted run resumes. The builder
(`tools/build_dataset.py --dataset=scannet`) reads either layout; exporting is only needed for
other tools that want image files.
"""

import os
import sys

from absl import app
from absl import flags

import taskology_tf_tools

_SENS = flags.DEFINE_string('sens', None, 'One .sens file (then --out_dir is its scene folder).')
_MANUAL_DIR = flags.DEFINE_string(
    'manual_dir', None, 'A ScanNet download: every <scene>/<scene>.sens under it is exported.'
)
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Output folder.')
_FRAME_SKIP = flags.DEFINE_integer('frame_skip', 1, 'Export every n-th frame (frame numbers kept).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not _OUT_DIR.value or bool(_SENS.value) == bool(_MANUAL_DIR.value):
    raise app.UsageError('give --out_dir and exactly one of --sens, --manual_dir')
  from taskology_tf.datasets import raw_io  # pylint: disable=g-import-not-at-top
  from taskology_tf.datasets.scannet import reader  # pylint: disable=g-import-not-at-top
  from taskology_tf.datasets.scannet import sens  # pylint: disable=g-import-not-at-top

  if _SENS.value:
    jobs = [(_SENS.value, _OUT_DIR.value)]
  else:
    jobs = []
    for name, folder in sorted(reader.find_scenes(_MANUAL_DIR.value).items()):
      path = os.path.join(folder, f'{name}.sens')
      if os.path.isfile(path):
        jobs.append((path, os.path.join(_OUT_DIR.value, name)))
    if not jobs:
      print(f'error: no <scene>/<scene>.sens under {_MANUAL_DIR.value}', file=sys.stderr)
      return 2
  os.makedirs(os.path.dirname(os.path.abspath(_OUT_DIR.value)), exist_ok=True)
  exported = kept = 0
  for path, out in jobs:
    if os.path.isdir(out):
      kept += 1
      continue
    try:
      n = sens.export_sens(path, out, _FRAME_SKIP.value, progress=True)
    except (raw_io.RawDataError, ValueError) as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
    exported += 1
    print(f'{path} -> {out}: {n} frames')
  print(f'exported {exported} scenes, {kept} already exported (kept)')
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
