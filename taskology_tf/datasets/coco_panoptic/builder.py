"""TFDS builder for COCO panoptic as semantic labels in the project class set.

Raw layout (`manual_dir`, as COCO 2017 unpacks: train2017.zip, val2017.zip and
panoptic_annotations_trainval2017.zip with its two inner zips unzipped in place):

  <manual_dir>/train2017/<image>.jpg                  val2017/<image>.jpg
  <manual_dir>/annotations/panoptic_train2017.json    annotations/panoptic_val2017.json
  <manual_dir>/annotations/panoptic_train2017/<image>.png   annotations/panoptic_val2017/...

A panoptic PNG stores each pixel's segment id in RGB, id = R + 256 G + 256^2 B (0 = void,
unlabelled); the JSON's `segments_info` gives each id its `category_id` (one of the 133
panoptic categories). Every segment, crowd regions included, is labelled with its category,
as panopticapi's `panoptic2semantic_segmentation` converter does; the category is then mapped
into the project class set (`class_set.COCO_PANOPTIC_MAPPING`; unmapped categories and void ->
255). The JSON's categories are checked against that mapping by id and name.

Each example is a one-frame clip in the format of the other datasets, so the project's
pipelines read it unchanged: `image` [1, H, W, 3] uint8 and `semantics` [1, H, W] uint8 at the
configured size, resized by `resize_mode`:
- 'crop' (default): the centred window of the output's aspect ratio, then resized (objects keep
  their shape, as the Cityscapes crops do);
- 'stretch': the whole image resized to H x W.
Images bilinearly, labels by nearest neighbour. COCO has no calibration: `intrinsics` is a
nominal pinhole (focal length = output width, principal point at the centre), there only for
the clip format. `scene_seed` is the COCO image id.

Errors name the file at fault: unreadable or malformed JSON, a category id the JSON does not
define or whose name contradicts the mapping, a missing or undecodable image or PNG, a PNG of
another size than its image, a PNG segment id absent from the JSON and a JSON segment id absent
from the PNG (as panopticapi's pq_compute checks). Images the JSON lists without a panoptic
annotation are counted as skipped.
"""

import dataclasses
import json
import os
from typing import Dict, List, Tuple

import numpy as np
import tensorflow_datasets as tfds

from taskology_tf.datasets import class_set
from taskology_tf.datasets import raw_io

SPLIT_DIRS = (('train', 'train2017'), ('validation', 'val2017'))
RESIZE_MODES = ('crop', 'stretch')
IGNORE = class_set.IGNORE_LABEL

_DESCRIPTION = """
COCO 2017 panoptic segmentation turned into semantic labels in the project class set
(Cityscapes' 19 classes), as one-frame clips resized to a fixed size.
"""


@dataclasses.dataclass(eq=False)
class CocoPanopticConfig(tfds.core.BuilderConfig):
  """Builder config.

  Attributes:
    height, width: output size.
    resize_mode: 'crop' (centred window of the output aspect, then resize) or 'stretch'.
  """

  height: int = 128
  width: int = 416
  resize_mode: str = 'crop'


def config_name(height: int, width: int, resize_mode: str = 'crop') -> str:
  """E.g. '128x416', '128x416_stretch'."""
  name = f'{int(height)}x{int(width)}'
  return name if resize_mode == 'crop' else f'{name}_{resize_mode}'


def make_config(height: int = 128, width: int = 416, resize_mode: str = 'crop'):
  """The config of an output size and resize mode.

  Raises:
    ValueError: a non-positive size or an unknown resize mode (names the flag).
  """
  if min(int(height), int(width)) <= 0:
    raise ValueError(f'--height/--width must be positive, got {height}x{width}')
  if resize_mode not in RESIZE_MODES:
    raise ValueError(f'--resize_mode={resize_mode!r}: expected one of {RESIZE_MODES}')
  return CocoPanopticConfig(
      name=config_name(height, width, resize_mode),
      description=f'{height}x{width}, {resize_mode}.',
      height=int(height),
      width=int(width),
      resize_mode=resize_mode,
  )


def rgb_to_segment_ids(png: np.ndarray) -> np.ndarray:
  """[H, W, 3] uint8 panoptic PNG -> [H, W] int64 segment ids, id = R + 256 G + 256^2 B."""
  png = np.asarray(png).astype(np.int64)
  return png[..., 0] + 256 * png[..., 1] + 256 * 256 * png[..., 2]


@dataclasses.dataclass(frozen=True)
class _Item:
  image_path: str
  png_path: str
  json_path: str
  image_id: int
  segments: Tuple[Tuple[int, int], ...]  # (segment id, category id)
  size: Tuple[int, int]  # (height, width) the JSON gives, or (0, 0)


def _fail(json_path: str, message: str):
  raise raw_io.RawDataError(f'panoptic JSON {json_path}: {message}')


def read_panoptic_json(json_path: str) -> dict:
  """Parses and checks a COCO panoptic JSON; returns it.

  Raises:
    raw_io.RawDataError: unreadable, malformed, or categories contradicting the class-set map.
  """
  if not os.path.isfile(json_path):
    raise raw_io.RawDataError(f'panoptic JSON {json_path} does not exist')
  try:
    with open(json_path, 'r') as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise raw_io.RawDataError(
        f'panoptic JSON {json_path} is not readable JSON ({e}); expected COCO panoptic '
        'annotations with "images", "annotations" and "categories"'
    ) from e
  if not isinstance(data, dict):
    _fail(json_path, f'expected an object at the top level, got {type(data).__name__}')
  for key in ('images', 'annotations', 'categories'):
    if not isinstance(data.get(key), list):
      _fail(json_path, f'expected a list at "{key}", got {type(data.get(key)).__name__}')
  for i, category in enumerate(data['categories']):
    if not isinstance(category, dict) or 'id' not in category or 'name' not in category:
      _fail(json_path, f'categories[{i}] needs "id" and "name", got {category!r}')
    mapped = class_set.COCO_PANOPTIC_MAPPING.get(category['id'])
    if mapped is not None and mapped[0] != category['name']:
      _fail(
          json_path,
          f'category {category["id"]} is {category["name"]!r}, but the class-set mapping '
          f'expects {mapped[0]!r} (datasets/class_set.py): not COCO panoptic categories?',
      )
  return data


def plan_split(
    root: str, split: str, split_dir: str, skips: raw_io.SkipCounter
) -> Tuple[List[_Item], Dict[int, str]]:
  """The annotated images of one split, and the JSON's {category id: name}.

  Raises:
    raw_io.RawDataError: the JSON is malformed (named).
  """
  json_path = os.path.join(root, 'annotations', f'panoptic_{split_dir}.json')
  if not os.path.isfile(json_path):
    skips.skip(split, 'split JSON missing', json_path)
    return [], {}
  data = read_panoptic_json(json_path)
  categories = {int(c['id']): str(c['name']) for c in data['categories']}
  images = {}
  for i, image in enumerate(data['images']):
    if not isinstance(image, dict) or 'id' not in image or 'file_name' not in image:
      _fail(json_path, f'images[{i}] needs "id" and "file_name", got {image!r}')
    images[int(image['id'])] = image
  png_dir = os.path.join(root, 'annotations', f'panoptic_{split_dir}')
  items, annotated = [], set()
  for i, ann in enumerate(data['annotations']):
    where = f'annotations[{i}]'
    if not isinstance(ann, dict) or not {'image_id', 'file_name', 'segments_info'} <= set(ann):
      _fail(json_path, f'{where} needs "image_id", "file_name" and "segments_info"')
    image = images.get(int(ann['image_id']))
    if image is None:
      _fail(json_path, f'{where}: image_id {ann["image_id"]} is not in "images"')
    segments = []
    for j, seg in enumerate(ann['segments_info']):
      if not isinstance(seg, dict) or 'id' not in seg or 'category_id' not in seg:
        _fail(json_path, f'{where}.segments_info[{j}] needs "id" and "category_id"')
      if int(seg['category_id']) not in categories:
        _fail(
            json_path,
            f'{where} ({ann["file_name"]}): segment {seg["id"]} has category_id '
            f'{seg["category_id"]}, which "categories" does not define',
        )
      segments.append((int(seg['id']), int(seg['category_id'])))
    ids = [s for s, _ in segments]
    if len(set(ids)) != len(ids):
      _fail(json_path, f'{where} ({ann["file_name"]}): repeated segment ids {sorted(ids)}')
    annotated.add(int(ann['image_id']))
    size = (int(image.get('height', 0)), int(image.get('width', 0)))
    items.append(
        _Item(
            image_path=os.path.join(root, split_dir, image['file_name']),
            png_path=os.path.join(png_dir, ann['file_name']),
            json_path=json_path,
            image_id=int(ann['image_id']),
            segments=tuple(segments),
            size=size,
        )
    )
  for image_id, image in sorted(images.items()):
    if image_id not in annotated:
      skips.skip(split, 'image without a panoptic annotation', image['file_name'])
  return items, categories


def semantic_labels(segment_ids: np.ndarray, segments, item_name: str = '') -> np.ndarray:
  """[H, W] segment ids + (segment id, category id) pairs -> [H, W] uint8 project classes.

  Raises:
    raw_io.RawDataError: a PNG id missing from the segments or a segment missing from the PNG.
  """
  uniq, inverse = np.unique(segment_ids, return_inverse=True)
  by_id = dict(segments)
  in_png = set(int(u) for u in uniq) - {0}
  unknown = sorted(in_png - set(by_id))
  if unknown:
    raise raw_io.RawDataError(
        f"{item_name}: segment ids {unknown[:5]} are in the PNG but not in the JSON's "
        'segments_info'
    )
  absent = sorted(set(by_id) - in_png)
  if absent:
    raise raw_io.RawDataError(
        f"{item_name}: segment ids {absent[:5]} of the JSON's segments_info are not in the PNG"
    )
  category = np.array([by_id.get(int(u), 0) for u in uniq], np.int64)
  classes = class_set.coco_panoptic_to_classes(category)
  classes[uniq == 0] = IGNORE  # Void.
  return classes[inverse.reshape(segment_ids.shape)]


def crop_window(size: Tuple[int, int], height: int, width: int) -> Tuple[int, int, int, int]:
  """(top, bottom, left, right): the centred window of aspect width / height in `size`."""
  rows, cols = size
  if cols * height > rows * width:  # Wider than the output: keep every row.
    crop_w = max(1, int(round(rows * width / height)))
    left = (cols - crop_w) // 2
    return 0, rows, left, left + crop_w
  crop_h = max(1, int(round(cols * height / width)))
  top = (rows - crop_h) // 2
  return top, top + crop_h, 0, cols


def nominal_intrinsics(height: int, width: int) -> np.ndarray:
  """A stand-in K (focal = width, principal point at the image centre (W - 1) / 2, (H - 1) / 2)."""
  return np.array(
      [[width, 0, (width - 1) / 2], [0, width, (height - 1) / 2], [0, 0, 1]], np.float32
  )


def make_example(item: _Item, config: CocoPanopticConfig) -> dict:
  """Decodes, maps and resizes one image with its labels.

  Raises:
    raw_io.RawDataError: a file at fault (named).
  """
  image = raw_io.read_image(item.image_path, 'RGB')
  png = raw_io.read_image(item.png_path, 'RGB')
  if png.shape[:2] != image.shape[:2]:
    raise raw_io.RawDataError(
        f'panoptic PNG {item.png_path} is {png.shape[1]}x{png.shape[0]}, its image '
        f'{item.image_path} {image.shape[1]}x{image.shape[0]}'
    )
  if item.size != (0, 0) and item.size != image.shape[:2]:
    raise raw_io.RawDataError(
        f'image {item.image_path} is {image.shape[1]}x{image.shape[0]}, {item.json_path} says '
        f'{item.size[1]}x{item.size[0]}'
    )
  labels = semantic_labels(
      rgb_to_segment_ids(png), item.segments, f'panoptic PNG {item.png_path} ({item.json_path})'
  )
  h, w = config.height, config.width
  if config.resize_mode == 'crop':
    top, bottom, left, right = crop_window(image.shape[:2], h, w)
    image, labels = image[top:bottom, left:right], labels[top:bottom, left:right]
  return {
      'image': raw_io.resize_image(np.ascontiguousarray(image), h, w)[None],
      'semantics': raw_io.resize_labels(labels, h, w)[None],
      'intrinsics': nominal_intrinsics(h, w),
      'image_id': item.image_id,
      'file_name': os.path.basename(item.image_path),
      'scene_seed': item.image_id,
  }


def _features(config: CocoPanopticConfig) -> tfds.features.FeaturesDict:
  h, w = config.height, config.width
  return tfds.features.FeaturesDict(
      {
          'image': tfds.features.Tensor(shape=(1, h, w, 3), dtype=np.uint8),
          'semantics': tfds.features.Tensor(
              shape=(1, h, w), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
          ),
          'intrinsics': tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
          'image_id': tfds.features.Scalar(dtype=np.int64),
          'file_name': tfds.features.Text(),
          'scene_seed': tfds.features.Scalar(dtype=np.int64),
      }
  )


_PREDEFINED = {'128x416': CocoPanopticConfig(name='128x416', description='128x416, crop.')}


class CocoPanoptic(raw_io.RawBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """COCO panoptic -> project-class semantic labels (manual download, see WORKSPACE.md)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = list(_PREDEFINED.values())
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  From https://cocodataset.org/#download download train2017.zip, val2017.zip and
  panoptic_annotations_trainval2017.zip; unzip them into one folder, then unzip
  annotations/panoptic_train2017.zip and annotations/panoptic_val2017.zip in place.
  """

  CONFIG_CLASS = CocoPanopticConfig
  DESCRIPTION = _DESCRIPTION
  HOMEPAGE = 'https://cocodataset.org/#panoptic-2020'
  # 'skipped': {'<split>: <reason>': count}; 'class_pixels': {split: {class: pixels}}.

  def _features(self):
    return _features(self.builder_config)

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    if not os.path.isdir(os.path.join(root, 'annotations')):
      raise raw_io.RawDataError(
          f'{os.path.join(root, "annotations")} does not exist: expected the unzipped '
          'panoptic_annotations_trainval2017.zip under manual_dir'
      )
    self.skips = raw_io.SkipCounter()
    self.info.metadata['class_pixels'] = {}
    generators = {}
    for split, split_dir in SPLIT_DIRS:
      items, _ = plan_split(root, split, split_dir, self.skips)
      if items:
        generators[split] = self._generate_examples(split, items)
    if not generators:
      raise raw_io.RawDataError(
          f'no panoptic_train2017.json or panoptic_val2017.json with annotations under '
          f'{os.path.join(root, "annotations")}'
      )
    self.info.metadata['skipped'] = self.skips.as_dict()
    return generators

  def _generate_examples(self, split: str, items: List[_Item]):
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

    counts = np.zeros([class_set.NUM_CLASSES + 1], np.int64)
    for item in tqdm.tqdm(items, desc=f'coco_panoptic {split}', unit='image'):
      example = make_example(item, self.builder_config)
      sem = example['semantics'].ravel()
      counts += np.bincount(np.minimum(sem, class_set.NUM_CLASSES), minlength=len(counts))
      yield item.image_id, example
    # Per-class pixels at the output size (ignored pixels under 'ignore'), for the summary.
    names = list(class_set.CLASS_NAMES) + ['ignore']
    self.info.metadata['class_pixels'][split] = {n: int(c) for n, c in zip(names, counts) if c > 0}
