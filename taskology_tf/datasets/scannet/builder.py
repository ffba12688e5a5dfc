"""TFDS builder for ScanNet RGB-D frame triplets with poses, depth and normals from depth.

Raw layout (`manual_dir`): one folder per scan, `<manual_dir>/<scene>/` (or under
`<manual_dir>/scans/` and `scans_test/`, as ScanNet's download script writes them), each
holding either the scan's `<scene>.sens` file or SensReader's exported folders (color/,
depth/, pose/, intrinsic/; see reader.py). A folder with both is read from its `.sens` file.
`tools/export_scannet.py` (sens.export_sens) writes the exported layout from a `.sens` file
without ScanNet's python 2 scripts.

Examples. One example is a triplet of frames (s, s + f, s + 2f) of one scan, f =
`frame_stride` (default 10: ScanNet records at 30 fps and hand-held consecutive frames barely
move, so a triplet spans 2/3 s), with a triplet starting every `clip_stride` frames (default
30, one per second, so triplets share no frames). It holds:

- 'image': the colour frames resized (bilinear, antialiased) to the output size;
- 'depth_mm': the depth maps (uint16 millimetres, 0 = invalid) resized by nearest sample
  (raw_io.resize_labels: output pixel r takes input pixel floor((r + 0.5) * Hin / Hout)), so
  depth is never averaged across an edge or with invalid pixels. At an even ratio this is a
  quarter output pixel off the output pixel's centre (640 -> 320: input 2r + 1 for the centre
  2r + 0.5), an approximation of the same order as the colour registration below; the
  loader returns it as 'depth' in float32 metres;
- 'intrinsics': the *depth* camera's K (intrinsic_depth) scaled to the output size (the
  pixel-centre convention of raw_io.scale_intrinsics): the output camera is the depth camera;
- 'color_intrinsics': intrinsic_color scaled the same way, for reference.

Colour-to-depth registration. ScanNet's exported colour and depth frames share one pose
(camera_to_world), but the colour camera has its own intrinsics (1296x968, fx ~ 1170) and the
depth camera its own (640x480, fx ~ 578), with a small baseline between the two sensors.
As is usual practice for ScanNet depth and normals work, the colour image is simply resized
to the output (depth-camera) size and treated as seen by the depth camera. This is an
approximation: the two fields of view agree to within about 1% (fx / width = 0.903 vs 0.902
for scene0000_00), the principal points differ by a few output pixels, and the baseline
(a few cm) gives parallax at close range; `color_intrinsics` says by how much for a scan.

Egomotion and pose. 'pose' [3, 4, 4] is each frame's camera_to_world as the scan gives it;
'egomotion' [2, 4, 4] is cam_{i+1}_from_cam_i = (world_from_cam_{i+1})^-1 world_from_cam_i,
so pose[i + 1] @ egomotion[i] = pose[i].

Normals ground truth ('normals', stored as float16 unit vectors, < 0.1 degree from the
float32 ones, returned as float32 by the loader; camera frame, facing the camera; all-zero =
invalid). Method: at the output size, the depth's invalid pixels are
filled with the value of the nearest valid pixel (Euclidean distance transform, so holes
take the depth of their nearest rim), then geometry/normals.py `depth_to_normals` (central
differences of the unprojected points, crossed) runs on the filled depth, and every pixel
whose original depth is invalid gets the zero (invalid) normal. Known failure modes:
- depth edges: across an occlusion boundary the central difference joins two surfaces and
  gives a grazing, meaningless normal on the one-pixel rims of every depth discontinuity;
  the sensor's own edge noise (flying pixels between surfaces) widens this;
- holes: next to a filled hole the difference uses a copied (constant) depth, so the rim
  normals of a hole are half one-sided and biased toward the camera axis;
- quantisation and noise at range: depth is stored in whole millimetres and the structured-
  light sensor's noise grows roughly with the square of depth, while the spacing between
  neighbouring pixels' points grows only linearly, so beyond 3-4 m the normals of flat
  surfaces become noisy (ripples of several degrees);
- colour registration: normals are in the depth camera's frame, the colour image is only
  approximately registered to it (above).

Splits are scene-level, ScanNet's official v2 lists (splits/scannetv2_{train,val,test}.txt,
from ScanNet/ScanNet Tasks/Benchmark; see splits/SOURCES.md): train, validation and test.

Validation. Errors name the file: a truncated `.sens` file (and the frame), a missing
intrinsics file, a malformed pose file, a scene whose colour, depth and pose frame sets
differ (names the scene folder). Counted skips (`ScanNet.skips`, printed by
tools/build_dataset.py): frames with an invalid pose ('invalid pose': -inf/NaN, last row
not 0 0 0 1, or a rotation with |R^T R - I| or |det R - 1| above reader.POSE_TOLERANCE);
triplets whose span [s, s + 2f] contains a frame with an invalid pose (a tracking failure
between a triplet's frames makes its relative poses unreliable, so triplets are never formed
across a skipped frame); triplets with a frame absent from an exported folder; listed scenes
absent from manual_dir; scenes in no split list. Scenes without depth are not built (an error
naming the scene folder): every example needs depth and its normals.

Cost at 240 x 320 (measured on this 2-core CPU, loaded, with a full-size synthetic scan:
1296x968 JPEG colour, 640x480 depth): 0.25-0.45 s per triplet (half of it the normals), about
1.6 MB per triplet on disk (images 0.7, float16 normals 0.74 after zlib, depth 0.2). ScanNet
v2's 1513 scans hold 2.5 M frames (Dai et al., 2017), its 1201 train scans about 2 M, so the
default sampling gives about 65 k train triplets: about 100 GB and 5-8 hours on 2 cores; a
larger clip_stride shrinks both.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Tuple
import zlib

import numpy as np
import tensorflow_datasets as tfds

from taskology_tf.datasets import raw_io
from taskology_tf.datasets.scannet import reader

NUM_FRAMES = 3
SPLITS_DIR = os.path.join(os.path.dirname(__file__), 'splits')
DEFAULT_SPLIT_FILES = (
    ('test', os.path.join(SPLITS_DIR, 'scannetv2_test.txt')),
    ('train', os.path.join(SPLITS_DIR, 'scannetv2_train.txt')),
    ('validation', os.path.join(SPLITS_DIR, 'scannetv2_val.txt')),
)
DEFAULT_FRAME_STRIDE = 10
DEFAULT_CLIP_STRIDE = 30
INVALID_POSE = 'invalid pose'

_DESCRIPTION = """
ScanNet v2 frame triplets (every 10th frame by default) with colour resized to the depth
camera's output size, depth (millimetres), normals from hole-filled depth, camera-to-world
poses and relative egomotion, on the official scene-level splits.
"""


@dataclasses.dataclass(eq=False)
class ScanNetConfig(tfds.core.BuilderConfig):
  """Builder config.

  Attributes:
    height, width: output size (the full-scale Table 3 size is 240 x 320).
    frame_stride: frames between a triplet's frames (30 fps scans).
    clip_stride: frames between the first frames of successive triplets of a scan.
    split_files: ((split, scene list file), ...).
  """

  height: int = 240
  width: int = 320
  frame_stride: int = DEFAULT_FRAME_STRIDE
  clip_stride: int = DEFAULT_CLIP_STRIDE
  split_files: Tuple[Tuple[str, str], ...] = DEFAULT_SPLIT_FILES


def config_name(height: int, width: int, frame_stride: int, clip_stride: int) -> str:
  """'240x320', with '_f<frame_stride>_c<clip_stride>' appended when they are not the defaults.

  Split lists are not part of the name (they pick scenes, not what a clip looks like).
  """
  name = f'{int(height)}x{int(width)}'
  if (frame_stride, clip_stride) != (DEFAULT_FRAME_STRIDE, DEFAULT_CLIP_STRIDE):
    name += f'_f{int(frame_stride)}_c{int(clip_stride)}'
  return name


def make_config(
    height: int = 240,
    width: int = 320,
    frame_stride: int = DEFAULT_FRAME_STRIDE,
    clip_stride: int = DEFAULT_CLIP_STRIDE,
    split_files: Optional[Dict[str, str]] = None,
) -> ScanNetConfig:
  """The config of an output size and frame sampling (tests: other split lists).

  Raises:
    ValueError: a non-positive size or stride, or a split list that does not exist.
  """
  if int(height) <= 0 or int(width) <= 0:
    raise ValueError(f'image size must be positive, got {height}x{width}')
  if int(frame_stride) < 1 or int(clip_stride) < 1:
    raise ValueError(f'frame_stride and clip_stride must be >= 1, got {frame_stride}, '
                     f'{clip_stride}')  # fmt: skip
  files = tuple(sorted(split_files.items())) if split_files is not None else DEFAULT_SPLIT_FILES
  for split, path in files:
    if not os.path.isfile(path):
      raise ValueError(f'scene list for {split!r} does not exist: {path}')
  return ScanNetConfig(
      name=config_name(height, width, frame_stride, clip_stride),
      description=f'{height}x{width} triplets, frames {frame_stride} apart.',
      height=int(height),
      width=int(width),
      frame_stride=int(frame_stride),
      clip_stride=int(clip_stride),
      split_files=files,
  )


def read_scene_list(path: str) -> List[str]:
  """Scene ids of a list file (one `sceneNNNN_NN` a line), in file order.

  Raises:
    ValueError: a line that is not a scene id (names the file and line).
  """
  scenes = []
  with open(path) as f:
    for line_no, line in enumerate(f, 1):
      name = line.strip()
      if not name:
        continue
      if not (name.startswith('scene') and len(name) == 12 and name[9] == '_'):
        raise ValueError(f'{path}:{line_no}: expected a scene id like scene0191_00, got {name!r}')
      scenes.append(name)
  return scenes


def clip_key(scene: str, start: int) -> int:
  """A stable int64 id of a clip (the pipelines' per-example key)."""
  return zlib.crc32(f'{scene} {start}'.encode()) | (int(start) << 32)


def fill_holes(depth: np.ndarray) -> np.ndarray:
  """Each invalid (0) pixel takes the value of its nearest valid pixel (Euclidean).

  Args:
    depth: [H, W] float (any units), 0 = invalid.

  Returns:
    [H, W], the same where valid; all zeros when nothing is valid.
  """
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  invalid = depth <= 0
  if not invalid.any() or invalid.all():
    return depth.copy()
  # The distance transform of the invalid mask measures, at each invalid pixel, the distance
  # to the nearest valid (zero-mask) pixel; return_indices gives that pixel.
  rows, cols = ndimage.distance_transform_edt(invalid, return_distances=False, return_indices=True)
  return depth[rows, cols]


def normals_from_depth(depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
  """Normals ground truth from depth (module docstring: method and failure modes).

  Args:
    depth: [T, H, W] float32 metres (z), 0 = invalid.
    intrinsics: [3, 3] float, pixels, of the H x W depth.

  Returns:
    [T, H, W, 3] float32 unit normals, camera frame, facing the camera; zero where depth is
    invalid.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from taskology_tf.geometry import normals as normals_lib  # pylint: disable=g-import-not-at-top

  filled = np.stack([fill_holes(d) for d in depth]).astype(np.float32)
  t = depth.shape[0]
  k = np.broadcast_to(np.asarray(intrinsics, np.float32), (t, 3, 3))
  normals = normals_lib.depth_to_normals(tf.constant(filled[..., None]), tf.constant(k)).numpy()
  valid = (depth > 0)[..., None]
  return np.where(valid, normals, 0.0).astype(np.float32)


def feature_spec(config: ScanNetConfig) -> dict:
  """Name -> (shape, numpy dtype) of every tensor feature as stored."""
  t, h, w = NUM_FRAMES, config.height, config.width
  return {
      'image': ((t, h, w, 3), np.uint8),
      'depth_mm': ((t, h, w, 1), np.uint16),
      'normals': ((t, h, w, 3), np.float16),
      'intrinsics': ((3, 3), np.float32),
      'color_intrinsics': ((3, 3), np.float32),
      'egomotion': ((t - 1, 4, 4), np.float32),
      'pose': ((t, 4, 4), np.float32),
      'frame_indices': ((t,), np.int32),
      'color_size': ((2,), np.int32),
      'depth_size': ((2,), np.int32),
  }


def _features(config: ScanNetConfig) -> tfds.features.FeaturesDict:
  features = {}
  for name, (shape, dtype) in feature_spec(config).items():
    encoding = (
        tfds.features.Encoding.ZLIB if name in ('depth_mm', 'normals')
        else tfds.features.Encoding.BYTES
    )  # fmt: skip
    features[name] = tfds.features.Tensor(shape=shape, dtype=dtype, encoding=encoding)
  features['scene'] = tfds.features.Text()
  features['scene_seed'] = tfds.features.Scalar(dtype=np.int64)
  return tfds.features.FeaturesDict(features)


@dataclasses.dataclass(frozen=True)
class _Item:
  folder: str
  scene: str
  frames: Tuple[int, ...]


def plan_scene(
    scene: reader.Scene, folder: str, config: ScanNetConfig, split: str, skips
) -> List[_Item]:
  """The triplets of one scan; invalid poses and unformable triplets are counted in `skips`.

  A triplet starts at every `clip_stride`-th frame number from the scan's first frame; it
  needs its three frames present and every frame of the scan within its span with a valid
  pose. Checks both intrinsics files now, so a missing one fails before any example is made.
  """
  scene.intrinsics('depth')
  scene.intrinsics('color')
  present = set(scene.frames)
  invalid = set()
  for frame in scene.frames:
    problem = reader.pose_problem(scene.pose(frame))
    if problem is not None:
      invalid.add(frame)
      skips.skip(split, INVALID_POSE, f'{scene.pose_source(frame)}: {problem}')
  sorted_invalid = np.array(sorted(invalid), np.int64)
  items = []
  f = config.frame_stride
  first, last = scene.frames[0], scene.frames[-1]
  for start in range(first, last - 2 * f + 1, config.clip_stride):
    frames = (start, start + f, start + 2 * f)
    if not all(x in present for x in frames):
      # E.g. an export made with --frame_skip k: frame_stride and clip_stride must be
      # multiples of k.
      skips.skip(split, 'triplet frame missing from the scene', f'{folder} {frames}')
      continue
    lo = np.searchsorted(sorted_invalid, start)
    if lo < len(sorted_invalid) and sorted_invalid[lo] <= frames[-1]:
      skips.skip(split, 'triplet spans an invalid pose', f'{folder} {frames}')
      continue
    items.append(_Item(folder, scene.name, frames))
  return items


def make_example(scene: reader.Scene, item: _Item, config: ScanNetConfig) -> dict:
  """Decodes, resizes and computes normals and egomotion for one triplet.

  Raises:
    raw_io.RawDataError: a file at fault, named (undecodable image, frames of another size).
  """
  h, w = config.height, config.width
  images, depths, poses = [], [], []
  color_size = depth_size = None
  for frame in item.frames:
    color = scene.color(frame)
    depth = scene.depth(frame)
    if color_size is None:
      color_size, depth_size = color.shape[:2], depth.shape
    if color.shape[:2] != color_size or depth.shape != depth_size:
      raise raw_io.RawDataError(
          f'{scene.source}: frame {frame} is colour {color.shape[:2]} / depth {depth.shape}, '
          f'frame {item.frames[0]} colour {color_size} / depth {depth_size}'
      )
    images.append(raw_io.resize_image(color, h, w))
    depth = raw_io.resize_labels(depth, h, w)
    if scene.depth_shift != 1000.0:  # Stored in millimetres.
      depth = np.round(depth.astype(np.float64) * (1000.0 / scene.depth_shift))
    depths.append(np.clip(depth, 0, 65535).astype(np.uint16))
    poses.append(scene.pose(frame))
  k_depth = raw_io.scale_intrinsics(scene.intrinsics('depth'), w / depth_size[1], h / depth_size[0])
  k_color = raw_io.scale_intrinsics(scene.intrinsics('color'), w / color_size[1], h / color_size[0])
  depth_mm = np.stack(depths)
  normals = normals_from_depth(depth_mm.astype(np.float32) / 1000.0, k_depth)
  egomotion = np.stack(
      [reader.relative_pose(poses[i], poses[i + 1]) for i in range(NUM_FRAMES - 1)]
  )
  return {
      'image': np.stack(images),
      'depth_mm': depth_mm[..., None],
      'normals': normals.astype(np.float16),
      'intrinsics': k_depth.astype(np.float32),
      'color_intrinsics': k_color.astype(np.float32),
      'egomotion': egomotion.astype(np.float32),
      'pose': np.stack(poses).astype(np.float32),
      'frame_indices': np.array(item.frames, np.int32),
      'color_size': np.array(color_size, np.int32),
      'depth_size': np.array(depth_size, np.int32),
      'scene': item.scene,
      'scene_seed': clip_key(item.scene, item.frames[0]),
  }


_PREDEFINED = {'240x320': ScanNetConfig(name='240x320', description='240x320, every 10th frame.')}


class ScanNet(raw_io.RawBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """ScanNet v2 frame triplets (manual download, see WORKSPACE.md)."""

  name = 'scannet'  # Not TFDS's default 'scan_net'.
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = list(_PREDEFINED.values())
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Obtain ScanNet v2 (http://www.scan-net.org/, terms of use) and download the .sens files
  (download-scannet.py --type .sens), giving <manual_dir>/scans/<scene>/<scene>.sens, or put
  SensReader-exported scene folders (color/, depth/, pose/, intrinsic/) in <manual_dir>.
  """

  CONFIG_CLASS = ScanNetConfig
  DESCRIPTION = _DESCRIPTION
  HOMEPAGE = 'http://www.scan-net.org/'

  def _features(self):
    return _features(self.builder_config)

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    if not os.path.isdir(root):
      raise raw_io.RawDataError(f'manual_dir {root} does not exist (expected ScanNet scenes)')
    self.skips = raw_io.SkipCounter()
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

    found = reader.find_scenes(root)
    listed = set()
    generators = {}
    for split, path in self.builder_config.split_files:
      items = []
      names = read_scene_list(path)
      listed.update(names)
      for name in names:
        if name not in found:
          self.skips.skip(split, 'scene not in manual_dir', name)
      present = [name for name in names if name in found]
      # Planning reads every frame's pose (a .sens file's frame headers, or one text file per
      # frame): minutes for all of ScanNet, so it shows progress too.
      for name in tqdm.tqdm(present, desc=f'scannet {split}: poses', unit='scene'):
        scene = reader.open_scene(found[name])
        try:
          items.extend(plan_scene(scene, found[name], self.builder_config, split, self.skips))
        finally:
          scene.close()
      if items:
        generators[split] = self._generate_examples(split, items)
      else:
        self.skips.skip(split, 'split empty: no triplet of a listed scene')
    for name in sorted(set(found) - listed):
      self.skips.skip('unlisted', 'scene in no split list', found[name])
    if not generators:
      raise raw_io.RawDataError(
          f'no triplet of any listed scene was found under {root}; expected '
          '<scene>/<scene>.sens or <scene>/{color,depth,pose,intrinsic}/ (see WORKSPACE.md)'
      )
    # Every skip is decided while planning (a bad file raises while generating).
    self.info.metadata['skipped'] = self.skips.as_dict()
    return generators

  def _generate_examples(self, split: str, items: List[_Item]):
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

    scene, folder = None, None
    for item in tqdm.tqdm(items, desc=f'scannet {split}', unit='clip'):
      if item.folder != folder:
        scene, folder = reader.open_scene(item.folder), item.folder
      yield f'{item.scene}/{item.frames[0]:06d}', make_example(scene, item, self.builder_config)
