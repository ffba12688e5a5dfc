"""Atomic file writes, shared by the library and the tools.

Every result, config and plot the project writes goes to a temporary file beside its target
(named after the target and this process) and is then renamed over it, so a reader sees the old
file or the new one, never a half-written one, and a crash mid-write leaves the target as it was.
Paths go through tf.io.gfile, so gs:// and other TensorFlow file systems work as local paths do
(a rename there is a copy and a delete: atomic for readers of the final name, not a POSIX rename).
"""

import io
import json
import os
from typing import Any

import tensorflow as tf


def _temporary(path: str) -> str:
  return f'{path}.tmp-{os.getpid()}'


def write_bytes_atomic(path: str, data: bytes) -> str:
  """Writes `data` to `path` atomically (parent folders made as needed); returns `path`."""
  parent = os.path.dirname(path)
  if parent:
    tf.io.gfile.makedirs(parent)
  tmp = _temporary(path)
  try:
    with tf.io.gfile.GFile(tmp, 'wb') as f:
      f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except Exception:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
    raise
  return path


def write_text_atomic(path: str, text: str) -> str:
  """Writes `text` (UTF-8) to `path` atomically; returns `path`."""
  return write_bytes_atomic(path, text.encode('utf-8'))


def write_json_atomic(path: str, obj: Any, indent: int = 2, sort_keys: bool = False) -> str:
  """Writes `obj` as JSON to `path` atomically; returns `path`.

  The object is serialised before anything touches the disk, so an object JSON cannot encode
  raises (TypeError / ValueError) and leaves `path` as it was.
  """
  return write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys))


def save_figure_atomic(fig, path: str, dpi: int = 120) -> str:
  """Saves a matplotlib figure to `path` atomically, in the format its extension names."""
  fmt = os.path.splitext(path)[1].lstrip('.') or 'png'
  buffer = io.BytesIO()
  fig.savefig(buffer, format=fmt, dpi=dpi)
  return write_bytes_atomic(path, buffer.getvalue())
