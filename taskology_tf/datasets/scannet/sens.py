"""ScanNet `.sens` files: reader, writer, and export to the SensReader folder layout.

The format (version 4), as ScanNet's `SensReader/c++/src/sensorData.h` (`SensorData::
loadFromFile` / `saveToFile`) and `SensReader/python/SensorData.py` read and write it; every
field little-endian, no padding:

  header:
    version            uint32   (4)
    sensor name        uint64 length, then that many bytes
    intrinsic_color    4x4 float32, row-major (a 3x3 K in the top-left)
    extrinsic_color    4x4 float32
    intrinsic_depth    4x4 float32
    extrinsic_depth    4x4 float32
    color compression  int32    (-1 unknown, 0 raw, 1 png, 2 jpeg; ScanNet: 2)
    depth compression  int32    (-1 unknown, 0 raw_ushort, 1 zlib_ushort, 2 occi; ScanNet: 1)
    color width, height, depth width, height   uint32 each
    depth shift        float32  (depth value per metre; ScanNet: 1000, i.e. millimetres)
    num frames         uint64
  per frame:
    camera_to_world    4x4 float32 (all -inf where tracking failed)
    timestamp color, timestamp depth, color size bytes, depth size bytes   uint64 each
    color bytes, depth bytes
  then (C++ writer only; the python reader ignores it): num IMU frames uint64 and 128 bytes
  per IMU frame (5 vec3d and a uint64 timestamp).

`read_header` indexes a file without reading the frames' payloads (it seeks past them), so
a 2 GB scan is planned in a fraction of a second; `SensFile.frame(i)` then decodes one frame.
A file that ends inside the header or inside a frame is an error naming the file (and the
frame). This is our own implementation of the format; ScanNet's scripts are python 2 and
need OpenCV and imageio, neither of which is needed here.
"""

import dataclasses
import io
import os
import shutil
import struct
from typing import Iterable, List, Optional, Tuple
import zlib

import numpy as np
from PIL import Image

from taskology_tf.datasets import raw_io

VERSION = 4
COLOR_COMPRESSION = {-1: 'unknown', 0: 'raw', 1: 'png', 2: 'jpeg'}
DEPTH_COMPRESSION = {-1: 'unknown', 0: 'raw_ushort', 1: 'zlib_ushort', 2: 'occi_ushort'}
_FRAME_HEADER = struct.Struct('<16f4Q')  # camera_to_world, 2 timestamps, 2 payload sizes.
_IMU_FRAME_BYTES = 5 * 3 * 8 + 8


class SensError(raw_io.RawDataError):
  """A `.sens` file is truncated, of another version, or uses an unsupported compression."""


@dataclasses.dataclass(frozen=True)
class SensHeader:
  """What precedes the frames of a `.sens` file.

  Attributes:
    sensor_name: bytes as stored.
    intrinsic_color, extrinsic_color, intrinsic_depth, extrinsic_depth: [4, 4] float32.
    color_compression: 'raw', 'png' or 'jpeg' (COLOR_COMPRESSION's names).
    depth_compression: 'raw_ushort' or 'zlib_ushort' (DEPTH_COMPRESSION's names).
    color_size, depth_size: (height, width) of the colour and depth images.
    depth_shift: stored depth value per metre (ScanNet: 1000.0).
  """

  sensor_name: bytes
  intrinsic_color: np.ndarray
  extrinsic_color: np.ndarray
  intrinsic_depth: np.ndarray
  extrinsic_depth: np.ndarray
  color_compression: str
  depth_compression: str
  color_size: Tuple[int, int]
  depth_size: Tuple[int, int]
  depth_shift: float


@dataclasses.dataclass(frozen=True)
class SensFrame:
  """One RGB-D frame as stored (payloads still compressed).

  Attributes:
    camera_to_world: [4, 4] float32 (world_from_camera; all -inf marks a tracking failure).
    timestamp_color, timestamp_depth: microseconds as stored.
    color_bytes: the compressed colour image (JPEG bytes for ScanNet).
    depth_bytes: the compressed depth (zlib of row-major uint16 for ScanNet).
  """

  camera_to_world: np.ndarray
  timestamp_color: int
  timestamp_depth: int
  color_bytes: bytes
  depth_bytes: bytes


def _read_exact(f, n: int, path: str, what: str) -> bytes:
  data = f.read(n)
  if len(data) != n:
    raise SensError(
        f'{path} is truncated: {what} needs {n} bytes, the file has {len(data)} left '
        '(incomplete download?)'
    )
  return data


def _matrix(f, path: str, what: str) -> np.ndarray:
  return np.frombuffer(_read_exact(f, 64, path, what), '<f4').reshape(4, 4).astype(np.float32)


def _read_header(f, path: str) -> Tuple[SensHeader, int]:
  (version,) = struct.unpack('<I', _read_exact(f, 4, path, 'the version'))
  if version != VERSION:
    raise SensError(f'{path}: .sens version {version}, expected {VERSION} (ScanNet v2 files)')
  (name_len,) = struct.unpack('<Q', _read_exact(f, 8, path, 'the sensor name length'))
  if name_len > 4096:
    raise SensError(f'{path}: sensor name of {name_len} bytes: not a .sens file?')
  name = _read_exact(f, name_len, path, 'the sensor name')
  matrices = [
      _matrix(f, path, what)
      for what in ('intrinsic_color', 'extrinsic_color', 'intrinsic_depth', 'extrinsic_depth')
  ]
  color_c, depth_c, cw, ch, dw, dh, shift, num_frames = struct.unpack(
      '<2i4IfQ', _read_exact(f, 36, path, 'the image sizes and frame count')
  )
  if color_c not in (0, 1, 2):
    raise SensError(f'{path}: colour compression {COLOR_COMPRESSION.get(color_c, color_c)!r} '
                    'is not supported (raw, png, jpeg)')  # fmt: skip
  if depth_c not in (0, 1):
    raise SensError(f'{path}: depth compression {DEPTH_COMPRESSION.get(depth_c, depth_c)!r} '
                    'is not supported (raw_ushort, zlib_ushort)')  # fmt: skip
  header = SensHeader(
      sensor_name=name,
      intrinsic_color=matrices[0],
      extrinsic_color=matrices[1],
      intrinsic_depth=matrices[2],
      extrinsic_depth=matrices[3],
      color_compression=COLOR_COMPRESSION[color_c],
      depth_compression=DEPTH_COMPRESSION[depth_c],
      color_size=(int(ch), int(cw)),
      depth_size=(int(dh), int(dw)),
      depth_shift=float(shift),
  )
  return header, int(num_frames)


class SensFile:
  """An indexed `.sens` file: header, every frame's pose, and random access to frames.

  Opening reads the header and each frame's 96-byte frame header, seeking past the payloads;
  a file that ends before a frame's payload does is an error naming the file and the frame.

  Attributes:
    path: the file.
    header: its SensHeader.
    poses: [N, 4, 4] float32 camera_to_world of every frame.
  """

  def __init__(self, path: str):
    self.path = os.fspath(path)
    if not os.path.isfile(self.path):
      raise SensError(f'{self.path} does not exist')
    size = os.path.getsize(self.path)
    self._offsets = []  # (colour payload offset, colour bytes, depth bytes) per frame.
    poses, stamps = [], []
    with open(self.path, 'rb') as f:
      self.header, num_frames = _read_header(f, self.path)
      for i in range(num_frames):
        raw = f.read(_FRAME_HEADER.size)
        if len(raw) != _FRAME_HEADER.size:
          raise SensError(
              f'{self.path} is truncated at frame {i} of {num_frames}: its frame header is cut '
              'off (incomplete download?)'
          )
        values = _FRAME_HEADER.unpack(raw)
        color_n, depth_n = values[18], values[19]
        start = f.tell()
        if start + color_n + depth_n > size:
          raise SensError(
              f'{self.path} is truncated at frame {i} of {num_frames}: the frame needs '
              f'{color_n + depth_n} payload bytes, the file has {size - start} left '
              '(incomplete download?)'
          )
        poses.append(np.array(values[:16], np.float32).reshape(4, 4))
        stamps.append((values[16], values[17]))
        self._offsets.append((start, color_n, depth_n))
        f.seek(color_n + depth_n, os.SEEK_CUR)
    self.poses = np.stack(poses) if poses else np.zeros([0, 4, 4], np.float32)
    self._stamps = stamps

  def __len__(self) -> int:
    return len(self._offsets)

  def raw_frame(self, index: int) -> SensFrame:
    """Frame `index` with its payloads still compressed."""
    start, color_n, depth_n = self._offsets[index]
    with open(self.path, 'rb') as f:
      f.seek(start)
      color = _read_exact(f, color_n, self.path, f'frame {index} colour')
      depth = _read_exact(f, depth_n, self.path, f'frame {index} depth')
    return SensFrame(self.poses[index].copy(), *self._stamps[index], color, depth)

  def color(self, index: int, frame: Optional[SensFrame] = None) -> np.ndarray:
    """Decoded colour image of frame `index`: [Hc, Wc, 3] uint8."""
    frame = frame or self.raw_frame(index)
    h, w = self.header.color_size
    what = f'{self.path} frame {index} colour'
    if self.header.color_compression == 'raw':
      if len(frame.color_bytes) != h * w * 3:
        raise SensError(f'{what}: {len(frame.color_bytes)} bytes, expected {h}x{w}x3')
      return np.frombuffer(frame.color_bytes, np.uint8).reshape(h, w, 3).copy()
    try:
      with Image.open(io.BytesIO(frame.color_bytes)) as image:
        image.load()
        array = np.asarray(image.convert('RGB'))
    except (OSError, SyntaxError, ValueError) as e:
      raise SensError(f'{what} could not be decoded ({e})') from e
    if array.shape[:2] != (h, w):
      raise SensError(f'{what} is {array.shape[1]}x{array.shape[0]}, the header says {w}x{h}')
    return array

  def depth(self, index: int, frame: Optional[SensFrame] = None) -> np.ndarray:
    """Decoded depth of frame `index`: [Hd, Wd] uint16 (depth_shift per metre, 0 = invalid)."""
    frame = frame or self.raw_frame(index)
    h, w = self.header.depth_size
    what = f'{self.path} frame {index} depth'
    data = frame.depth_bytes
    if self.header.depth_compression == 'zlib_ushort':
      try:
        data = zlib.decompress(data)
      except zlib.error as e:
        raise SensError(f'{what} could not be decompressed ({e})') from e
    if len(data) != h * w * 2:
      raise SensError(f'{what}: {len(data)} bytes, expected {h}x{w} uint16 = {h * w * 2}')
    return np.frombuffer(data, '<u2').reshape(h, w).copy()


def encode_color(image: np.ndarray, compression: str = 'jpeg', quality: int = 95) -> bytes:
  """Compresses an [H, W, 3] uint8 image as a `.sens` colour payload."""
  image = np.ascontiguousarray(image, np.uint8)
  if compression == 'raw':
    return image.tobytes()
  buffer = io.BytesIO()
  if compression == 'jpeg':
    Image.fromarray(image).save(buffer, format='JPEG', quality=quality)
  elif compression == 'png':
    Image.fromarray(image).save(buffer, format='PNG')
  else:
    raise ValueError(f'unsupported colour compression {compression!r}')
  return buffer.getvalue()


def encode_depth(depth: np.ndarray, compression: str = 'zlib_ushort') -> bytes:
  """Compresses an [H, W] uint16 depth map as a `.sens` depth payload."""
  data = np.ascontiguousarray(depth, '<u2').tobytes()
  if compression == 'zlib_ushort':
    return zlib.compress(data)
  if compression == 'raw_ushort':
    return data
  raise ValueError(f'unsupported depth compression {compression!r}')


def write_sens(path: str, header: SensHeader, frames: Iterable[SensFrame]) -> None:
  """Writes a `.sens` file as ScanNet's C++ writer does (an empty IMU block at the end).

  Written to `<path>.tmp` and renamed, so an interrupted write leaves no partial file.
  """
  color_c = {v: k for k, v in COLOR_COMPRESSION.items()}[header.color_compression]
  depth_c = {v: k for k, v in DEPTH_COMPRESSION.items()}[header.depth_compression]
  frames = list(frames)
  tmp = f'{path}.tmp'
  with open(tmp, 'wb') as f:
    f.write(struct.pack('<IQ', VERSION, len(header.sensor_name)) + header.sensor_name)
    for m in (header.intrinsic_color, header.extrinsic_color, header.intrinsic_depth,
              header.extrinsic_depth):  # fmt: skip
      f.write(np.asarray(m, '<f4').reshape(16).tobytes())
    (ch, cw), (dh, dw) = header.color_size, header.depth_size
    f.write(struct.pack('<2i4IfQ', color_c, depth_c, cw, ch, dw, dh, header.depth_shift,
                        len(frames)))  # fmt: skip
    for frame in frames:
      f.write(np.asarray(frame.camera_to_world, '<f4').reshape(16).tobytes())
      f.write(struct.pack('<4Q', frame.timestamp_color, frame.timestamp_depth,
                          len(frame.color_bytes), len(frame.depth_bytes)))  # fmt: skip
      f.write(frame.color_bytes)
      f.write(frame.depth_bytes)
    f.write(struct.pack('<Q', 0))  # No IMU frames.
  os.replace(tmp, path)


def format_matrix(matrix: np.ndarray) -> str:
  """A 4x4 matrix as the exported text files hold it: 4 rows of 4 numbers.

  '%.9g' round-trips float32 exactly (SensReader writes '%f', 6 decimals, which does not);
  both parse with `reader.read_matrix`.
  """
  return ''.join(' '.join(f'{float(v):.9g}' for v in row) + '\n' for row in np.asarray(matrix))


def export_sens(sens_path: str, out_dir: str, frame_skip: int = 1, progress: bool = False) -> int:
  """Exports a `.sens` file to SensReader's folder layout, without ScanNet's python 2 scripts.

  Writes `out_dir/color/<i>.jpg` (the stored JPEG bytes unchanged, so nothing is re-encoded;
  `.png` for png or raw colour), `depth/<i>.png` (16-bit PNG of the stored uint16 values),
  `pose/<i>.txt` and `intrinsic/{intrinsic,extrinsic}_{color,depth}.txt` (4x4 text,
  `format_matrix`), for every `frame_skip`-th frame i (numbered as in the `.sens` file). The
  export is written to `out_dir.incomplete` and renamed when complete.

  Returns:
    The number of frames exported.

  Raises:
    SensError: the `.sens` file is truncated or corrupt (names the file and frame).
    FileExistsError: out_dir exists.
  """
  if frame_skip < 1:
    raise ValueError(f'frame_skip must be >= 1, got {frame_skip}')
  if os.path.exists(out_dir):
    raise FileExistsError(f'{out_dir} exists; remove it or choose another output folder')
  sens = SensFile(sens_path)
  tmp = f'{os.path.normpath(out_dir)}.incomplete'
  shutil.rmtree(tmp, ignore_errors=True)
  for sub in ('color', 'depth', 'pose', 'intrinsic'):
    os.makedirs(os.path.join(tmp, sub))
  h = sens.header
  for name, m in (('intrinsic_color', h.intrinsic_color), ('extrinsic_color', h.extrinsic_color),
                  ('intrinsic_depth', h.intrinsic_depth), ('extrinsic_depth', h.extrinsic_depth)):  # fmt: skip
    with open(os.path.join(tmp, 'intrinsic', f'{name}.txt'), 'w') as f:
      f.write(format_matrix(m))
  indices: List[int] = list(range(0, len(sens), frame_skip))
  iterator = indices
  if progress:
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

    iterator = tqdm.tqdm(indices, desc=f'export {os.path.basename(sens_path)}', unit='frame')
  for i in iterator:
    frame = sens.raw_frame(i)
    if h.color_compression == 'jpeg':
      with open(os.path.join(tmp, 'color', f'{i}.jpg'), 'wb') as f:
        f.write(frame.color_bytes)
    else:
      Image.fromarray(sens.color(i, frame)).save(os.path.join(tmp, 'color', f'{i}.png'))
    Image.fromarray(sens.depth(i, frame)).save(os.path.join(tmp, 'depth', f'{i}.png'))
    with open(os.path.join(tmp, 'pose', f'{i}.txt'), 'w') as f:
      f.write(format_matrix(frame.camera_to_world))
  os.replace(tmp, out_dir)
  return len(indices)
