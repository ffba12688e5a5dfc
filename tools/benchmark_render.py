r"""Measures synthetic-world rendering speed (frames per second, one core).

Usage (from the repository root):

  python tools/benchmark_render.py --height=64 --width=96 --num_scenes=50

Reports, per domain, full examples (3 camera frames with every label and 3
lidar sweeps) as frames/s and examples/s, plus the stages on their own:
camera geometry, lidar sweep, and shading. Each figure is the best of
--repeats passes over the same scenes (the machine may be shared; the best
pass is the least disturbed one). Pin to one core with `taskset -c 0` to
match "one core" exactly; numpy here is single-threaded anyway.
"""

import time

from absl import flags

from taskology_tf.datasets.synthetic_world import render
from taskology_tf.datasets.synthetic_world import scene as scene_lib
import taskology_tf_tools  # noqa: F401  (quiet TF start-up)

_HEIGHT = flags.DEFINE_integer('height', 64, 'Image rows.')
_WIDTH = flags.DEFINE_integer('width', 96, 'Image columns.')
_NUM_SCENES = flags.DEFINE_integer('num_scenes', 50, 'Scenes per pass.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Passes; the best is reported.')


def _best_seconds(fn, items, repeats):
  best = float('inf')
  for _ in range(repeats):
    # CPU time of this process: less sensitive to other jobs on the machine.
    start = time.process_time()
    for item in items:
      fn(item)
    best = min(best, time.process_time() - start)
  return best


def main(argv):
  del argv
  h, w = _HEIGHT.value, _WIDTH.value
  scenes = [
      scene_lib.generate_scene(scene_lib.example_seed(0, 0, i)) for i in range(_NUM_SCENES.value)
  ]
  n = len(scenes)
  k = render.intrinsics_from_fov(h, w)
  uv = render.pixel_grid(h, w)
  frames = n * render.NUM_FRAMES
  print(
      f'synthetic_world rendering, {h}x{w}, {n} scenes x '
      f'{render.NUM_FRAMES} frames, best of {_REPEATS.value}'
  )
  for domain in render.DOMAINS:
    sec = _best_seconds(
        lambda s, d=domain: render.render_example(s, h, w, d), scenes, _REPEATS.value
    )
    print(
        f'  full example ({domain}): {frames / sec:8.1f} frames/s '
        f'({n / sec:6.1f} examples/s, {1e3 * sec / n:6.1f} ms/example)'
    )
  sec = _best_seconds(
      lambda s: render.cast_camera_rays(s, k, 0.0, uv, (h, w)), scenes, _REPEATS.value
  )
  print(f'  camera geometry only:  {n / sec:8.1f} frames/s')
  sec = _best_seconds(lambda s: render.cast_lidar(s, 0.0), scenes, _REPEATS.value)
  print(f'  lidar sweep only:      {n / sec:8.1f} sweeps/s ' f'({render.LIDAR_POINTS} rays)')
  geos = [render.cast_camera_rays(s, k, 0.0, uv, (h, w)) for s in scenes]
  for domain in render.DOMAINS:

    def shade(i, d=domain):
      g = geos[i]
      rot = g['world_from_camera'][:3, :3]
      render.shade(
          scenes[i],
          d,
          g['hits'],
          g['dirs_world'],
          g['depth'],
          rot[:, 0] / k[0, 0],
          rot[:, 1] / k[1, 1],
      )

    sec = _best_seconds(shade, range(n), _REPEATS.value)
    print(f'  shading only ({domain}):  {n / sec:8.1f} frames/s')


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(main, __name__)


if __name__ == '__main__':
  run()
