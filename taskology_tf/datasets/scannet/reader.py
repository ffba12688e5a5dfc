"""Reading a ScanNet scene in either raw layout: a `.sens` file or SensReader's exported folders.

Exported layout (what ScanNet's SensReader, or `sens.export_sens`, writes):

  <scene>/color/<i>.jpg (or .png)      colour, 1296x968 in ScanNet
  <scene>/depth/<i>.png                uint16 millimetres, 0 = invalid, 640x480 in ScanNet
  <scene>/pose/<i>.txt                 4x4 camera-to-world (world_from_camera), 4 text rows;
                                       all -inf where ScanNet's tracking failed
  <scene>/intrinsic/intrinsic_color.txt, intrinsic_depth.txt   4x4 (K in the top-left)
  <scene>/intrinsic/extrinsic_color.txt, extrinsic_depth.txt   4x4 (not used)

`i` is the frame number of the 30 fps scan (SensReader writes it unpadded, `12.jpg`; other
exports pad it, `0012.png`: both are read). `.sens` layout: `<scene>/<scene>.sens` (see
sens.py). `open_scene` picks the `.sens` file when a scene folder has one.

Depth is in millimetres in both layouts (the `.sens` header's depth_shift, 1000 for ScanNet;
the exported PNGs carry no shift, so 1000 is assumed, as ScanNet's own tools do).
"""

import os
import re
from typing import Dict, List, Optional

import numpy as np

from taskology_tf.datasets import raw_io
from taskology_tf.datasets.scannet import sens as sens_lib

EXPORTED_DEPTH_SHIFT = 1000.0  # Stored depth units per metre (millimetres).
# Rigidity tolerance of a pose's rotation: |R^T R - I| and |det R - 1| below it. Exported
# poses are printed with 6 decimals (SensReader's '%f'), whose rounding leaves errors ~1e-6.
POSE_TOLERANCE = 1e-3
_FRAME_FILE = re.compile(r'^(\d+)\.(jpg|jpeg|png|txt)$', re.IGNORECASE)


def read_matrix(path: str) -> np.ndarray:
  """A 4x4 matrix text file (4 rows of 4 numbers; '-inf' and 'nan' parse) -> [4, 4] float32.

  float32 is the precision ScanNet stores matrices in (`.sens`), so both layouts give the
  same values for the same scan.

  Raises:
    raw_io.RawDataError: missing, or not 16 numbers in 4 rows (names the file).
  """
  if not os.path.isfile(path):
    raise raw_io.RawDataError(f'{path} does not exist (expected a 4x4 matrix text file)')
  with open(path) as f:
    rows = [line.split() for line in f if line.strip()]
  try:
    values = np.array([[float(v) for v in row] for row in rows], np.float64)
  except ValueError as e:
    raise raw_io.RawDataError(f'{path}: not a matrix of numbers ({e})') from e
  if values.shape != (4, 4):
    raise raw_io.RawDataError(
        f'{path}: expected 4 rows of 4 numbers, got rows of {[len(r) for r in rows]}'
    )
  return values.astype(np.float32)


def pose_problem(pose: np.ndarray, tolerance: float = POSE_TOLERANCE) -> Optional[str]:
  """Why a camera-to-world matrix is not a valid rigid pose, or None when it is.

  Checks: every entry finite (ScanNet marks tracking failures with all -inf); last row
  (0, 0, 0, 1); rotation R orthonormal (max |R^T R - I| <= tolerance) and proper
  (|det R - 1| <= tolerance).
  """
  pose = np.asarray(pose, np.float64)
  if not np.all(np.isfinite(pose)):
    return 'non-finite entries (-inf or NaN: tracking failure)'
  if np.max(np.abs(pose[3] - [0.0, 0.0, 0.0, 1.0])) > tolerance:
    return f'last row {pose[3].tolist()} is not (0, 0, 0, 1)'
  rotation = pose[:3, :3]
  err = np.max(np.abs(rotation.T @ rotation - np.eye(3)))
  if err > tolerance:
    return f'rotation not orthonormal (max |R^T R - I| = {err:.3g})'
  det = np.linalg.det(rotation)
  if abs(det - 1.0) > tolerance:
    return f'rotation determinant {det:.4g}, not 1'
  return None


def relative_pose(world_from_a: np.ndarray, world_from_b: np.ndarray) -> np.ndarray:
  """b_from_a = (world_from_b)^-1 world_from_a for rigid 4x4 poses: [4, 4] float64.

  The rigid inverse [R^T, -R^T t] is used (not a general matrix inverse).
  """
  wb = np.asarray(world_from_b, np.float64)
  inv = np.eye(4)
  inv[:3, :3] = wb[:3, :3].T
  inv[:3, 3] = -wb[:3, :3].T @ wb[:3, 3]
  return inv @ np.asarray(world_from_a, np.float64)


def _frame_files(folder: str) -> Dict[int, str]:
  """Frame number -> file name of `<i>.<ext>` files in a folder (missing folder: empty)."""
  if not os.path.isdir(folder):
    return {}
  out = {}
  for name in os.listdir(folder):
    m = _FRAME_FILE.match(name)
    if m:
      index = int(m.group(1))
      if index in out:
        raise raw_io.RawDataError(
            f'{folder}: frame {index} appears twice ({out[index]} and {name})'
        )
      out[index] = name
  return out


class Scene:
  """A scan's frames, in either layout (`ExportedScene`, `SensScene`).

  Attributes:
    name: the scene id (folder name), e.g. 'scene0191_00'.
    source: the file or folder the frames are read from (named in errors).
    frames: sorted frame numbers.
    depth_shift: stored depth units per metre.
  """

  name: str
  source: str
  frames: List[int]
  depth_shift: float

  def intrinsics(self, which: str) -> np.ndarray:
    """[3, 3] float64 K of 'depth' or 'color' (native resolution), from its 4x4."""
    raise NotImplementedError

  def pose(self, frame: int) -> np.ndarray:
    """[4, 4] float32 camera-to-world of frame number `frame`."""
    raise NotImplementedError

  def pose_source(self, frame: int) -> str:
    """Where frame `frame`'s pose comes from (for skip reports)."""
    raise NotImplementedError

  def color(self, frame: int) -> np.ndarray:
    """[Hc, Wc, 3] uint8."""
    raise NotImplementedError

  def depth(self, frame: int) -> np.ndarray:
    """[Hd, Wd] uint16 (depth_shift per metre, 0 = invalid)."""
    raise NotImplementedError

  def close(self) -> None:
    pass


def _k3(matrix: np.ndarray, path: str) -> np.ndarray:
  k = np.asarray(matrix, np.float64)[:3, :3]
  if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0 or k[2, 2] != 1.0:
    raise raw_io.RawDataError(f'{path}: not camera intrinsics (fx, fy > 0, K[2, 2] = 1): {k}')
  return k


class ExportedScene(Scene):
  """A scene in SensReader's exported layout (module docstring).

  Frame numbers are those with a colour image. Every such frame must have a pose file.
  Intrinsics (intrinsic/intrinsic_depth.txt, intrinsic_color.txt) are read when first asked
  for. With `require_depth` (what the builder asks), each colour frame must also have a depth
  map and vice versa.

  Raises:
    raw_io.RawDataError: the color/ folder is missing or empty; colour, depth and pose frame
      sets that differ (names the scene folder and the first frames missing on each side);
      later, a missing intrinsics file (named).
  """

  def __init__(self, folder: str, require_depth: bool = True):
    self.source = os.path.normpath(folder)
    self.name = os.path.basename(self.source)
    self.depth_shift = EXPORTED_DEPTH_SHIFT
    self._color = _frame_files(os.path.join(folder, 'color'))
    if not self._color:
      raise raw_io.RawDataError(f'{self.source}: no color/<i>.jpg or .png frames')
    self._pose = _frame_files(os.path.join(folder, 'pose'))
    self._depth = _frame_files(os.path.join(folder, 'depth'))
    sets = [('color', self._color), ('pose', self._pose)]
    if require_depth:
      sets.append(('depth', self._depth))
    for (name_a, a), (name_b, b) in zip(sets[:1] * (len(sets) - 1), sets[1:]):
      if set(a) != set(b):
        only_a = sorted(set(a) - set(b))[:3]
        only_b = sorted(set(b) - set(a))[:3]
        raise raw_io.RawDataError(
            f'{self.source}: {len(a)} {name_a} frames but {len(b)} {name_b} frames (frame '
            f'count mismatch; only in {name_a}/: {only_a}, only in {name_b}/: {only_b})'
        )
    self.frames = sorted(self._color)
    self._k = {}

  def intrinsics(self, which: str) -> np.ndarray:
    """Read on first use: a missing intrinsic_<which>.txt is an error naming it."""
    if which not in self._k:
      path = os.path.join(self.source, 'intrinsic', f'intrinsic_{which}.txt')
      self._k[which] = _k3(read_matrix(path), path)
    return self._k[which].copy()

  def pose_source(self, frame: int) -> str:
    return os.path.join(self.source, 'pose', self._pose[frame])

  def pose(self, frame: int) -> np.ndarray:
    return read_matrix(self.pose_source(frame))

  def color(self, frame: int) -> np.ndarray:
    return raw_io.read_image(os.path.join(self.source, 'color', self._color[frame]), 'RGB')

  def depth(self, frame: int) -> np.ndarray:
    if frame not in self._depth:
      raise raw_io.RawDataError(f'{self.source}/depth: no depth map of frame {frame}')
    path = os.path.join(self.source, 'depth', self._depth[frame])
    depth = raw_io.read_image(path, 'I')
    if depth.min() < 0 or depth.max() > 65535:
      raise raw_io.RawDataError(f'{path}: depth outside uint16 (expected millimetres)')
    return depth.astype(np.uint16)


class SensScene(Scene):
  """A scene as one `.sens` file (`<scene>/<scene>.sens`)."""

  def __init__(self, path: str):
    self.source = os.path.normpath(path)
    self.name = os.path.splitext(os.path.basename(self.source))[0]
    self._sens = sens_lib.SensFile(self.source)
    self.depth_shift = self._sens.header.depth_shift
    if not self.depth_shift > 0:
      raise sens_lib.SensError(f'{self.source}: depth_shift {self.depth_shift} is not positive')
    self.frames = list(range(len(self._sens)))
    self._k = {
        'depth': _k3(self._sens.header.intrinsic_depth, f'{self.source} (intrinsic_depth)'),
        'color': _k3(self._sens.header.intrinsic_color, f'{self.source} (intrinsic_color)'),
    }

  def intrinsics(self, which: str) -> np.ndarray:
    return self._k[which].copy()

  def pose_source(self, frame: int) -> str:
    return f'{self.source} frame {frame}'

  def pose(self, frame: int) -> np.ndarray:
    return self._sens.poses[frame].copy()

  def color(self, frame: int) -> np.ndarray:
    return self._sens.color(frame)

  def depth(self, frame: int) -> np.ndarray:
    return self._sens.depth(frame)


def open_scene(folder: str, require_depth: bool = True) -> Scene:
  """The scene in `folder`: `<folder>/<name>.sens` if present, else the exported layout."""
  name = os.path.basename(os.path.normpath(folder))
  sens_path = os.path.join(folder, f'{name}.sens')
  if os.path.isfile(sens_path):
    return SensScene(sens_path)
  return ExportedScene(folder, require_depth=require_depth)


def find_scenes(root: str) -> Dict[str, str]:
  """Scene id -> folder of every scene under `root`, `root/scans` or `root/scans_test`.

  A scene folder is named like `scene0191_00` (ScanNet's download script puts them in
  scans/ and scans_test/).
  """
  out = {}
  for base in (root, os.path.join(root, 'scans'), os.path.join(root, 'scans_test')):
    if not os.path.isdir(base):
      continue
    for name in sorted(os.listdir(base)):
      folder = os.path.join(base, name)
      if re.match(r'^scene\d{4}_\d{2}$', name) and os.path.isdir(folder):
        if name in out:
          raise raw_io.RawDataError(f'scene {name} is in both {out[name]} and {folder}')
        out[name] = folder
  return out
