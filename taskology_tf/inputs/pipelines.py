"""tf.data pipelines: dedicated (labelled single frames), mediator (unlabelled clips), evaluation.

A clip dataset yields examples with `image` uint8 [T, H, W, 3], per-frame labels [T, ...] and
`intrinsics` [3, 3] (the synthetic world's and the video datasets' common format).
"""

from typing import Optional, Sequence

import tensorflow as tf

# Per-frame label keys carried into dedicated and evaluation batches when present.
LABEL_KEYS = ('depth', 'normals', 'semantics')


def _hash_fraction(index: tf.Tensor, seed: int) -> tf.Tensor:
  """A deterministic pseudo-random number in [0, 1) per example index (stateless)."""
  return tf.random.stateless_uniform(
      [], seed=tf.stack([tf.cast(index, tf.int64), tf.constant(seed, tf.int64)])
  )


def label_fraction_subset(clips: tf.data.Dataset, fraction: float, seed: int = 0):
  """Keeps each clip with probability `fraction`, decided by a hash of its index and `seed`.

  The kept set is nested as the fraction grows (a clip kept at 10% is kept at 50%), so label
  fraction sweeps compare like with like.
  """
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f'label_fraction must be in [0, 1], got {fraction}')
  if fraction >= 1.0:
    return clips
  return (
      clips.enumerate().filter(lambda i, _: _hash_fraction(i, seed) < fraction).map(lambda _, x: x)
  )


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
    clips: labelled clip dataset, or None (fully unsupervised task).
    batch_size: frames per batch.
    label_fraction: fraction of clips whose labels may be used (Sec. 4's label-fraction study).
    frames: frame indices per clip to use (None: all).
    seed: shuffling and subset seed.
    shuffle_buffer: shuffle buffer in frames.
  """
  if clips is None or label_fraction == 0.0:
    return None
  frames_ds = clips_to_frames(label_fraction_subset(clips, label_fraction, seed), frames)
  return (
      frames_ds.cache()
      .shuffle(shuffle_buffer, seed=seed)
      .repeat()
      .batch(batch_size, drop_remainder=True)
      .prefetch(2)
  )


def strip_labels(clip):
  """Keeps only what a mediator example may carry: images and intrinsics (no labels)."""
  return {'image': clip['image'], 'intrinsics': clip['intrinsics']}


def mediator_dataset(
    clips: tf.data.Dataset,
    batch_size: int,
    frames: Optional[Sequence[int]] = None,
    seed: int = 0,
    shuffle_buffer: int = 256,
) -> tf.data.Dataset:
  """Endless, shuffled batches of unlabelled clips: image uint8 [B, T, H, W, 3], intrinsics.

  Labels are dropped here, so no consistency relation can see ground truth by accident.

  Args:
    clips: clip dataset (labels, if any, are discarded).
    batch_size: clips per batch.
    frames: frame indices to keep per clip (e.g. (1,) for single-frame relations).
    seed: shuffling seed.
    shuffle_buffer: shuffle buffer in clips.
  """

  def select(clip):
    clip = strip_labels(clip)
    if frames is not None:
      clip['image'] = tf.gather(clip['image'], list(frames))
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
