"""TensorBoard summaries and a progress line with steps/s and ETA."""

import time
from typing import Mapping, Optional

from absl import logging
import tensorflow as tf


class SummaryWriter:
  """A thin wrapper over tf.summary that accepts plain floats and float images in [0, 1]."""

  def __init__(self, logdir: str):
    self._writer = tf.summary.create_file_writer(logdir)

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    with self._writer.as_default(step=step):
      for k, v in values.items():
        tf.summary.scalar(k, v)

  def images(self, step: int, images: Mapping[str, tf.Tensor], max_outputs: int = 3) -> None:
    """images: {name: float [N, H, W, C] in [0, 1], C in (1, 3)}."""
    with self._writer.as_default(step=step):
      for k, v in images.items():
        tf.summary.image(
            k, tf.clip_by_value(tf.cast(v, tf.float32), 0.0, 1.0), max_outputs=max_outputs
        )

  def flush(self) -> None:
    self._writer.flush()


class Progress:
  """Logs `step/total, steps/s, ETA` and the main losses every `every` steps.

  The rate is an exponential moving average over logging intervals, so the first step's
  tracing time does not dominate the ETA for long.
  """

  def __init__(self, total: int, start: int, prefix: str = ''):
    self.total = total
    self.prefix = prefix
    self._last_step = start
    self._last_time = time.monotonic()
    self.rate: float = 0.0

  def update(self, step: int, scalars: Mapping[str, float], every: int) -> None:
    if step % every and step != self.total:
      return
    now = time.monotonic()
    done = step - self._last_step
    if done > 0:
      inst = done / max(now - self._last_time, 1e-9)
      self.rate = inst if self.rate == 0.0 else 0.5 * self.rate + 0.5 * inst
    self._last_step, self._last_time = step, now
    eta = (self.total - step) / self.rate if self.rate > 0 else float('nan')
    shown = {
        k: v
        for k, v in scalars.items()
        if k == 'total' or k.startswith(('supervised/', 'consistency/', 'staleness'))
    }
    logging.info(
        '%sstep %d/%d  %.2f steps/s  ETA %s  %s',
        self.prefix,
        step,
        self.total,
        self.rate,
        format_seconds(eta),
        '  '.join(f'{k}={v:.4g}' for k, v in sorted(shown.items())),
    )


def format_seconds(seconds: Optional[float]) -> str:
  if seconds is None or seconds != seconds:
    return '?'
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h:d}:{m:02d}:{s:02d}' if h else f'{m:d}:{s:02d}'
