r"""How well the DfVitW objective tells good depth from bad on ground truth (no networks).

Scores `DfvConsistency` (+ the weighted depth-smoothness term) on synthetic-world clips with the
ground-truth ego-motion (and object motion as the residual field, no mask), for depth variants:
the ground truth, the ground truth blurred by a 9x9 box filter, a constant depth per frame (its
median), the ground truth doubled and halved, the ground truth with only the movable objects'
(cars', pedestrians') depth doubled, and the ground truth with zero motion. An
objective whose value barely moves between the ground truth and a blurred or constant depth
cannot drive depth towards the truth.

Besides the published objective (`counted_pixel_floor=1.0`, `occlusion_tolerance=0.0`), each
`--loss_variants` entry `FLOOR:TOLERANCE` scores the same depths with `DfvConsistency`'s
counted-pixel normalisation and occlusion slack (see consistency/dfv.py), and reports:

- `objective`: mean over clips, per variant (as before), with its terms;
- `gt_wins`: per clip, the fraction of clips whose ground truth scores strictly lower than
  the variant (1.0: the ground truth is the minimum on every clip);
- `abs_rel`: the median-scaled Abs Rel of each depth variant on the middle frame (what the
  evaluation would score it, for scale).

`--exclude` re-scores with frame-1 pixels of some kind left out of the photometric terms
(treated like out-of-view pixels): `sky`, `movable` (car, pedestrian), `textureless` (mean
absolute horizontal and vertical colour difference < 0.01) or `far` (ground truth >= 30 m),
each against the same depths, to show which part of the world closes or widens the gap.

  python tools/dfv_objective_probe.py --domain=real --split=test --height=48 --width=64 \
      --data_dir=/work/data_demo --loss_variants=1.0:0.0,0.25:0.0 --exclude=sky,movable
"""

import json
import shlex
import sys

from absl import flags

import taskology_tf_tools  # noqa: F401  (quiet TF start-up)

flags.DEFINE_string('domain', 'real', 'sim or real.')
flags.DEFINE_string('split', 'test', 'TFDS split.')
flags.DEFINE_integer('height', 48, 'Built config height.')
flags.DEFINE_integer('width', 64, 'Built config width.')
flags.DEFINE_string('data_dir', 'data/tensorflow_datasets', 'TFDS data dir.')
flags.DEFINE_float('smoothness_weight', 0.01, 'Weight of DfvDepthSmoothness (gin default).')
flags.DEFINE_list(
    'loss_variants',
    ['1.0:0.0'],
    'counted_pixel_floor:occlusion_tolerance pairs of DfvConsistency to score (1.0:0.0 is the '
    'published objective).',
)
flags.DEFINE_list(
    'exclude', [], 'Pixel kinds to leave out in extra scorings: sky, movable, textureless, far.'
)
flags.DEFINE_integer('max_clips', 100, 'Clips of the split to score.')
FLAGS = flags.FLAGS

_EXCLUSIONS = ('sky', 'movable', 'textureless', 'far')


def _parse_variants(entries):
  variants = []
  for entry in entries:
    try:
      floor, tolerance = (float(x) for x in entry.split(':'))
    except ValueError as e:
      raise ValueError(
          f'--loss_variants: expected FLOOR:TOLERANCE (e.g. 0.25:0.0), got {entry!r}'
      ) from e
    variants.append((floor, tolerance))
  return variants


def main(argv):
  del argv
  import numpy as np
  import tensorflow as tf

  from taskology_tf.consistency import base
  from taskology_tf.consistency import dfv
  from taskology_tf.datasets.loader import load_synthetic_world
  from taskology_tf.datasets.synthetic_world import scene
  from taskology_tf.metrics.depth import DepthMetrics

  loss_variants = _parse_variants(FLAGS.loss_variants)
  unknown = sorted(set(FLAGS.exclude) - set(_EXCLUSIONS))
  if unknown:
    raise ValueError(f'--exclude: unknown kinds {unknown}; choose from {_EXCLUSIONS}')
  clips = (
      load_synthetic_world(FLAGS.domain, FLAGS.split, FLAGS.data_dir, FLAGS.height, FLAGS.width)
      .take(FLAGS.max_clips)
      .batch(10)
  )
  smoothness = dfv.DfvDepthSmoothness()

  def blur(depth):
    shape = tf.shape(depth)
    flat = tf.reshape(depth, tf.concat([[-1], shape[2:]], 0))
    padded = tf.pad(flat, [[0, 0], [4, 4], [4, 4], [0, 0]], mode='SYMMETRIC')
    out = tf.nn.avg_pool2d(padded, 9, 1, 'VALID')
    return tf.reshape(out, shape)

  def constant(depth):
    flat = tf.reshape(depth, tf.concat([tf.shape(depth)[:2], [-1]], 0)).numpy()
    median = np.median(flat, axis=-1)[:, :, None, None, None]
    return tf.ones_like(depth) * median

  def movable_scaled(factor):
    def scale(depth, b):
      labels = tf.cast(b['semantics'], tf.int32)[..., tf.newaxis]
      movable = tf.logical_or(tf.equal(labels, scene.CAR), tf.equal(labels, scene.PEDESTRIAN))
      return tf.where(movable, factor * depth, depth)

    return scale

  # Each variant: (ground-truth depth, clip batch) -> depth.
  depth_variants = {
      'ground_truth': lambda d, b: d,
      'blurred_9x9': lambda d, b: blur(d),
      'constant_median': lambda d, b: constant(d),
      'doubled': lambda d, b: 2.0 * d,
      'halved': lambda d, b: 0.5 * d,
      # Only the cars' and pedestrians' depth doubled: does the objective pin a moving object's
      # depth, given its true motion?
      'movable_doubled': movable_scaled(2.0),
  }
  case_names = list(depth_variants) + ['zero_motion', 'static_scene']

  def keep_mask(b, kind):
    """[B, T, H, W, 1] float32: 1 for frame pixels the photometric terms may use."""
    if kind is None:
      return tf.ones_like(b['depth'])
    if kind == 'sky':
      drop = tf.equal(tf.cast(b['semantics'], tf.int32), scene.SKY)
    elif kind == 'movable':
      labels = tf.cast(b['semantics'], tf.int32)
      drop = tf.logical_or(tf.equal(labels, scene.CAR), tf.equal(labels, scene.PEDESTRIAN))
    elif kind == 'textureless':
      image = tf.cast(b['image'], tf.float32) / 255.0
      dx = tf.abs(image[:, :, :, 1:] - image[:, :, :, :-1])
      dy = tf.abs(image[:, :, 1:] - image[:, :, :-1])
      dx = tf.pad(dx, [[0, 0], [0, 0], [0, 0], [0, 1], [0, 0]])
      dy = tf.pad(dy, [[0, 0], [0, 0], [0, 1], [0, 0], [0, 0]])
      drop = tf.reduce_mean(dx + dy, axis=-1) / 2.0 < 0.01
    else:  # far
      drop = b['depth'][..., 0] >= 30.0
    return 1.0 - tf.cast(drop, tf.float32)[..., tf.newaxis]

  @tf.function
  def per_image_terms(pixels, moved, valid, rgb1, depth2, rgb2, floor, tolerance):
    """rgbd_consistency_loss of each image alone: {term: [N]}."""

    def one(args):
      out = dfv.rgbd_consistency_loss(
          *(a[tf.newaxis] for a in args),
          counted_pixel_floor=floor,
          occlusion_tolerance=tolerance,
      )
      return (
          out['rgb_error'],
          out['ssim_error'],
          out['depth_error'],
          tf.reduce_mean(out['frame1_closer_to_camera']),
      )

    rgb, ssim, depth_error, counted = tf.map_fn(
        one,
        (pixels, moved, valid, rgb1, depth2, rgb2),
        fn_output_signature=(tf.float32,) * 4,
    )
    return {'rgb_error': rgb, 'ssim_error': ssim, 'depth_error': depth_error, 'counted': counted}

  relations = {
      v: dfv.DfvConsistency(counted_pixel_floor=v[0], occlusion_tolerance=v[1])
      for v in loss_variants
  }

  def photometric_per_clip(depth, motion, batch, keep, variant):
    """DfvConsistency's RGB + SSIM + depth terms per clip [B] (cycle terms left out), with
    frame-1 pixels outside `keep` treated as out of view."""
    relation = relations[variant]
    floor, tolerance = variant
    num_clips = depth.shape[0]
    pairs = depth.shape[1] - 1
    intrinsics = base.repeat_per_frame(tf.convert_to_tensor(batch['intrinsics']), pairs)
    directions = relation.pair_directions(depth, motion, batch['image'])
    total = np.zeros([num_clips])
    terms = {}
    for d in directions:
      pixels, moved, valid = dfv.transform_depth_map(
          d['depth1'], d['rotation1'], d['field1'], intrinsics
      )
      keep1 = base.fold_time(keep[:, d['frames1']])
      per_image = per_image_terms(
          pixels, moved, valid * keep1, d['rgb1'], d['depth2'], d['rgb2'], floor, tolerance
      )
      for k, v in per_image.items():
        # Per clip: the sum over its pairs (the relation's batch mean times the pairs).
        v = v.numpy().reshape([num_clips, pairs])
        v = v.mean(axis=1) * 0.5 if k == 'counted' else v.sum(axis=1)
        terms[k] = terms.get(k, 0.0) + v
        if k != 'counted':
          total += relation.weights[k] * v
    return total, terms

  def smooth_per_clip(depth, batch):
    return np.array(
        [
            float(
                smoothness(
                    {'depth': {'depth': depth[c : c + 1]}}, {'image': batch['image'][c : c + 1]}
                )[0]
            )
            for c in range(depth.shape[0])
        ]
    )

  metrics = {name: DepthMetrics(max_depth=80.0, median_scaling=True) for name in depth_variants}
  exclusions = [None] + list(FLAGS.exclude)
  # scores[exclusion][variant][case] -> list of per-clip objectives; terms likewise.
  scores = {e: {v: {n: [] for n in case_names} for v in loss_variants} for e in exclusions}
  term_sums = {e: {v: {n: {} for n in case_names} for v in loss_variants} for e in exclusions}
  relation_objective = {v: {n: [] for n in case_names} for v in loss_variants}
  for b in clips:
    batch = {'image': tf.cast(b['image'], tf.float32) / 255.0, 'intrinsics': b['intrinsics']}
    motion = dfv.motion_from_ground_truth(b['egomotion'], b['object_motion'])
    zero = {k: tf.zeros_like(v) for k, v in motion.items()}
    static = dict(motion)
    static['residual_translation'] = tf.zeros_like(b['object_motion'])
    static['residual_translation_backward'] = tf.zeros_like(b['object_motion'])
    cases = {name: (fn(b['depth'], b), motion) for name, fn in depth_variants.items()}
    cases['zero_motion'] = (b['depth'], zero)
    cases['static_scene'] = (b['depth'], static)
    gt_mid = b['depth'][:, 1].numpy()
    for name in depth_variants:
      metrics[name].update(gt_mid, cases[name][0][:, 1].numpy())
    keeps = {e: keep_mask(b, e) for e in exclusions}
    for name, (depth, m) in cases.items():
      preds = {'depth': {'depth': depth}, 'motion': m}
      smooth = smooth_per_clip(depth, batch)
      for variant in loss_variants:
        loss, _ = relations[variant](preds, batch)
        relation_objective[variant][name].append(
            float(loss) + FLAGS.smoothness_weight * float(np.mean(smooth))
        )
        for e in exclusions:
          total, terms = photometric_per_clip(depth, m, batch, keeps[e], variant)
          scores[e][variant][name].extend(total + FLAGS.smoothness_weight * smooth)
          for k, v in terms.items():
            term_sums[e][variant][name].setdefault(k, []).extend(v)

  result = {'abs_rel_median_scaled': {n: float(m.result()['abs_rel']) for n, m in metrics.items()}}
  for variant in loss_variants:
    key = f'floor={variant[0]:g},tolerance={variant[1]:g}'
    result[key] = {
        'relation_objective': {n: float(np.mean(v)) for n, v in relation_objective[variant].items()}
    }
    for e in exclusions:
      per_case = scores[e][variant]
      gt = np.array(per_case['ground_truth'])
      result[key]['all pixels' if e is None else f'without {e}'] = {
          n: {
              'objective': float(np.mean(v)),
              'gt_wins': float(np.mean(gt < np.array(v))) if n != 'ground_truth' else None,
              **{k: float(np.mean(t)) for k, t in term_sums[e][variant][n].items()},
          }
          for n, v in per_case.items()
      }
  result['command'] = 'python tools/dfv_objective_probe.py ' + shlex.join(sys.argv[1:])
  print(json.dumps(result, indent=2))
  # The same numbers as one markdown table: objective (fraction of clips where the ground
  # truth scores lower) per depth, per loss variant and pixel set.
  shown = list(depth_variants) + ['zero_motion']
  print('| floor, tolerance | pixels | ' + ' | '.join(shown) + ' | GT counted |')
  print('|' + '---|' * (len(shown) + 3))
  for key, by_pixels in result.items():
    if not key.startswith('floor='):
      continue
    for pixels, cases in by_pixels.items():
      if pixels == 'relation_objective':
        continue
      cells = [f"{cases['ground_truth']['objective']:.3f}"] + [
          f"{cases[n]['objective']:.3f} ({cases[n]['gt_wins']:.2f})" for n in shown[1:]
      ]
      print(
          f'| {key} | {pixels} | '
          + ' | '.join(cells)
          + f" | {cases['ground_truth']['counted']:.2f} |"
      )
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
