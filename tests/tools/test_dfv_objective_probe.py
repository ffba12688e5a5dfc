"""tools/dfv_objective_probe.py end to end on the tiny synthetic world (no networks)."""

import json

import numpy as np
import pytest

from tests.conftest import run_tool
from tests.conftest import TINY_HEIGHT
from tests.conftest import TINY_WIDTH


def test_objective_probe_scores_the_depth_variants(tiny_world):
  proc = run_tool(
      'dfv_objective_probe',
      [
          '--domain=real',
          '--split=test',
          f'--height={TINY_HEIGHT}',
          f'--width={TINY_WIDTH}',
          f'--data_dir={tiny_world}',
          '--loss_variants=1.0:0.0,0.25:1e9',
          '--exclude=movable',
      ],
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  text = proc.stdout
  result = json.loads(text[: text.index('\n| floor')])
  abs_rel = result['abs_rel_median_scaled']
  # Median scaling undoes a global factor: the truth, doubled and halved all score 0.
  for name in ('ground_truth', 'doubled', 'halved'):
    assert abs_rel[name] == pytest.approx(0.0, abs=1e-6), name
  assert abs_rel['blurred_9x9'] > 0 and abs_rel['constant_median'] > 0

  # Only the movers doubled: exactly their share of the scored pixels is off, by a factor the
  # median-scaled metric sees; zero iff the middle frames show no car or pedestrian in range.
  from taskology_tf.datasets.loader import load_synthetic_world  # pylint: disable=g-import-not-at-top
  from taskology_tf.datasets.synthetic_world import scene  # pylint: disable=g-import-not-at-top

  movers = 0
  for clip in load_synthetic_world('real', 'test', tiny_world, TINY_HEIGHT, TINY_WIDTH):
    labels = clip['semantics'][1].numpy()
    depth = clip['depth'][1, ..., 0].numpy()
    movers += np.sum(np.isin(labels, [scene.CAR, scene.PEDESTRIAN]) & (depth < 80.0))
  assert (abs_rel['movable_doubled'] > 1e-6) == (movers > 0)

  for key in ('floor=1,tolerance=0', 'floor=0.25,tolerance=1e+09'):
    for pixels in ('all pixels', 'without movable'):
      cases = result[key][pixels]
      assert cases['ground_truth']['gt_wins'] is None
      for name, case in cases.items():
        assert np.isfinite(case['objective']), (key, pixels, name)
        if name != 'ground_truth':
          assert 0.0 <= case['gt_wins'] <= 1.0
  # A zero motion on a moving camera leaves the frames unaligned: worse than the true motion.
  assert (
      result['floor=1,tolerance=0']['all pixels']['zero_motion']['objective']
      > result['floor=1,tolerance=0']['all pixels']['ground_truth']['objective']
  )
  header = next(l for l in text.splitlines() if l.startswith('| floor, tolerance'))
  assert '| movable_doubled |' in header
