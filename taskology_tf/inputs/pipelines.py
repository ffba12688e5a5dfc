"""tf.data pipelines: dedicated (labelled single frames), mediator (unlabelled clips), evaluation.

A clip dataset yields examples with `image` uint8 [T, H, W, 3], per-frame labels [T, ...] and
`intrinsics` [3, 3] (the synthetic world's and the video datasets' common format).

Scaling out: under a tf.distribute strategy each input pipeline (one per worker) builds its own
dataset from a `tf.distribute.InputContext`: it reads only its shard of the clips and batches its
per-replica batch (`strategy.distribute_datasets_from_function`), so no worker reads or decodes
examples that another worker trains on. A clip source that accepts an `input_context` keyword
(e.g. `synthetic_world_clips`) shards at read time, so each worker decodes only its shard; any
other source is sharded after reading (correct, but every worker reads everything).
"""

import inspect
from typing import Callable, Optional, Sequence

from absl import logging
import tensorflow as tf

# Per-frame label keys carried into dedicated and evaluation batches when present.
LABEL_KEYS = ('depth', 'normals', 'semantics')

# A per-example integer that identifies a clip independently of its position in a (sharded)
# stream; label-fraction subsets hash it when present, so every worker count keeps the same set.
EXAMPLE_KEY = 'scene_seed'

ClipSource = Callable[..., tf.data.Dataset]


def _hash_fraction(index: tf.Tensor, seed: int) -> tf.Tensor:
  """A deterministic pseudo-random number in [0, 1) per example index (stateless)."""
  return tf.random.stateless_uniform(
      [], seed=tf.stack([tf.cast(index, tf.int64), tf.constant(seed, tf.int64)])
  )


def check_label_fraction(fraction: float, where: str = 'label_fraction') -> None:
  """Raises ValueError naming `where` unless 0 < fraction <= 1."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(
        f'{where} must be in (0, 1], got {fraction} (a task without labels has '
        'dedicated_clips = None)'
    )


def label_fraction_subset(clips: tf.data.Dataset, fraction: float, seed: int = 0):
  """Keeps each clip with probability `fraction`, decided by a hash of its key and `seed`.

  The key is the clip's `scene_seed` when it has one (so a sharded stream keeps exactly the
  clips an unsharded one keeps), else its index in `clips`. The kept set is nested as the
  fraction grows (a clip kept at 10% is kept at 50%), so label fraction sweeps compare like
  with like.
  """
  check_label_fraction(fraction)
  if fraction >= 1.0:
    return clips
  if EXAMPLE_KEY in clips.element_spec:
    return clips.filter(lambda x: _hash_fraction(x[EXAMPLE_KEY], seed) < fraction)
  return (
      clips.enumerate().filter(lambda i, _: _hash_fraction(i, seed) < fraction).map(lambda _, x: x)
  )


def read_clips(
    source: ClipSource, input_context: Optional[tf.distribute.InputContext] = None
) -> tf.data.Dataset:
  """Calls a clip source for one input pipeline and returns that pipeline's shard.

  Args:
    source: a callable returning a clip dataset. If it takes an `input_context` keyword it is
      given the context and must return only this pipeline's shard (read-time sharding);
      otherwise the whole dataset is read and sharded here.
    input_context: this input pipeline's context (None: the only pipeline).
  """
  n = input_context.num_input_pipelines if input_context is not None else 1
  try:
    takes_context = 'input_context' in inspect.signature(source).parameters
  except (TypeError, ValueError):  # Builtins and some gin wrappers have no signature.
    takes_context = False
  if takes_context:
    return source(input_context=input_context)
  clips = source()
  if n > 1:
    logging.log_first_n(
        logging.WARNING,
        'clip source %r takes no input_context: every input pipeline reads all of it and keeps '
        'its 1/%d shard',
        1,
        source,
        n,
    )
    clips = clips.shard(n, input_context.input_pipeline_id)
  return clips


def per_replica_batch_size(
    global_batch_size: int, input_context: Optional[tf.distribute.InputContext], what: str
) -> int:
  """The batch one replica takes, checking that the global batch divides evenly."""
  if input_context is None:
    return global_batch_size
  n = input_context.num_replicas_in_sync
  if global_batch_size % n:
    raise ValueError(
        f'{what} ({global_batch_size}) must be divisible by the number of replicas ({n}): '
        'each replica takes an equal share of the global batch'
    )
  return global_batch_size // n


def clips_to_frames(clips: tf.data.Dataset, frames: Optional[Sequence[int]] = None):
  """Splits clips into single labelled frames: {'image', labels..., 'intrinsics'}.

  Args:
    clips: dataset of clips.
    frames: which frame indices of each clip to keep (None: all).
  """

  def split(clip):
    num = tf.shape(clip['image'])[0]
    idx = tf.range(num) if frames is None else tf.constant(list(frames), tf.int32)
    out = {'image': tf.gather(clip['image'], idx)}
    for key in LABEL_KEYS:
      if key in clip:
        out[key] = tf.gather(clip[key], idx)
    out['intrinsics'] = tf.repeat(clip['intrinsics'][None], tf.shape(idx)[0], axis=0)
    return tf.data.Dataset.from_tensor_slices(out)

  return clips.flat_map(split)


def dedicated_dataset(
    clips: Optional[tf.data.Dataset],
    batch_size: int,
    label_fraction: float = 1.0,
    frames: Optional[Sequence[int]] = None,
    seed: int = 0,
    shuffle_buffer: int = 512,
) -> Optional[tf.data.Dataset]:
  """Endless, shuffled batches of labelled frames, or None for an empty dedicated set.

  Args:
    clips: labelled clip dataset (this input pipeline's shard), or None (fully unsupervised task).
    batch_size: frames per batch (per replica under a strategy).
    label_fraction: fraction of clips whose labels may be used (Sec. 4's label-fraction study),
      in (0, 1].
    frames: frame indices per clip to use (None: all).
    seed: shuffling and subset seed.
    shuffle_buffer: shuffle buffer in frames.
  """
  if clips is None:
    return None
  if batch_size < 1:
    raise ValueError(f'dedicated batch_size must be >= 1, got {batch_size}')
  frames_ds = clips_to_frames(label_fraction_subset(clips, label_fraction, seed), frames)
  return (
      frames_ds.cache()
      .shuffle(shuffle_buffer, seed=seed)
      .repeat()
      .batch(batch_size, drop_remainder=True)
      .prefetch(2)
  )


def strip_labels(clip, label_keys: Sequence[str] = ()):
  """Keeps only what a mediator example may carry: images and intrinsics, and no labels but
  the `label_keys` a relation explicitly asked for (e.g. `semantics` for a movable mask)."""
  out = {'image': clip['image'], 'intrinsics': clip['intrinsics']}
  for key in label_keys:
    if key not in clip:
      raise KeyError(
          f'mediator_label_keys: a relation asks for {key!r} from the mediator data, but its '
          f'clips have only {sorted(clip)}'
      )
    out[key] = clip[key]
  return out


def mediator_dataset(
    clips: tf.data.Dataset,
    batch_size: int,
    frames: Optional[Sequence[int]] = None,
    seed: int = 0,
    shuffle_buffer: int = 256,
    label_keys: Sequence[str] = (),
) -> tf.data.Dataset:
  """Endless, shuffled batches of unlabelled clips: image uint8 [B, T, H, W, 3], intrinsics.

  Labels are dropped here, so no consistency relation can see ground truth by accident; only
  `label_keys` (per-frame [T, ...] labels a relation names in its `mediator_label_keys`) are
  kept, frame-selected like the images.

  Args:
    clips: clip dataset (labels, if any, are discarded); this input pipeline's shard.
    batch_size: clips per batch (per replica under a strategy).
    frames: frame indices to keep per clip (e.g. (1,) for single-frame relations).
    seed: shuffling seed.
    shuffle_buffer: shuffle buffer in clips.
    label_keys: per-frame label keys to keep (default none).
  """
  if batch_size < 1:
    raise ValueError(f'mediator batch_size must be >= 1, got {batch_size}')
  label_keys = tuple(label_keys)

  def select(clip):
    clip = strip_labels(clip, label_keys)
    if frames is not None:
      for key in ('image',) + label_keys:
        clip[key] = tf.gather(clip[key], list(frames))
    return clip

  return (
      clips.map(select)
      .cache()
      .shuffle(shuffle_buffer, seed=seed)
      .repeat()
      .batch(batch_size, drop_remainder=True)
      .prefetch(2)
  )


def evaluation_dataset(
    clips: tf.data.Dataset,
    batch_size: int,
    frames: Optional[Sequence[int]] = None,
    max_examples: Optional[int] = None,
) -> tf.data.Dataset:
  """One ordered pass over labelled frames for evaluation."""
  if max_examples is not None:
    clips = clips.take(max_examples)
  return clips_to_frames(clips, frames).batch(batch_size).prefetch(2)


class MixingSchedule:
  """Decides, per step, whether a step uses the dedicated batch, the mediator batch, or both.

  Sec. 3.1: the trainer alternates dedicated and mediator batches. `mode='alternate'` runs a
  supervised step, then a consistency step, and so on; `mode='joint'` sums both losses in every
  step. A task without dedicated data only ever takes consistency steps, and an experiment
  without relations only supervised steps.

  Args:
    mode: 'alternate' or 'joint'.
    mediator_every: in 'alternate' mode, one consistency step after every `mediator_every`
      supervised steps.
    consistency_start_step: no consistency before this global step (a supervised warm-up), so
      that no task is asked to agree with peers that are still random.
  """

  def __init__(
      self, mode: str = 'alternate', mediator_every: int = 1, consistency_start_step: int = 0
  ):
    if mode not in ('alternate', 'joint'):
      raise ValueError(f'MixingSchedule: mode must be "alternate" or "joint", got {mode!r}')
    if mediator_every < 1:
      raise ValueError(f'MixingSchedule: mediator_every must be >= 1, got {mediator_every}')
    if consistency_start_step < 0:
      raise ValueError(
          'MixingSchedule: consistency_start_step must be >= 0, got ' f'{consistency_start_step}'
      )
    self.mode = mode
    self.mediator_every = mediator_every
    self.consistency_start_step = consistency_start_step

  def kinds(self, step: int, has_dedicated: bool, has_mediator: bool):
    """Returns (use_dedicated, use_mediator) for a global step (0-based)."""
    if step < self.consistency_start_step and has_dedicated:
      has_mediator = False
    if not has_dedicated:
      return False, has_mediator
    if not has_mediator or self.mode == 'joint':
      return True, has_mediator
    period = self.mediator_every + 1
    use_mediator = step % period == self.mediator_every
    return not use_mediator, use_mediator
