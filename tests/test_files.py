"""taskology_tf/files.py: atomic writes leave the old file or the new one, never a part."""

import json
import os

import pytest

from taskology_tf import files


def test_json_round_trip_makes_parents_and_leaves_no_temporary(tmp_path):
  path = str(tmp_path / 'a' / 'b' / 'result.json')
  obj = {'z': 1, 'a': [1.5, 'x']}
  assert files.write_json_atomic(path, obj, sort_keys=True) == path
  with open(path) as f:
    text = f.read()
  assert json.loads(text) == obj
  assert text.index('"a"') < text.index('"z"')  # sort_keys honoured
  assert os.listdir(tmp_path / 'a' / 'b') == ['result.json']


def test_an_unencodable_object_leaves_the_old_file_untouched(tmp_path):
  path = str(tmp_path / 'result.json')
  files.write_json_atomic(path, {'old': True})
  with pytest.raises(TypeError):
    files.write_json_atomic(path, {'new': object()})
  with open(path) as f:
    assert json.load(f) == {'old': True}
  assert os.listdir(tmp_path) == ['result.json']


def test_text_overwrites_and_figure_is_a_png(tmp_path):
  path = str(tmp_path / 'note.md')
  files.write_text_atomic(path, 'first')
  files.write_text_atomic(path, 'second \u00b1')
  with open(path, encoding='utf-8') as f:
    assert f.read() == 'second \u00b1'
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots()
  ax.plot([0, 1], [1, 0])
  png = str(tmp_path / 'plot.png')
  files.save_figure_atomic(fig, png)
  plt.close(fig)
  with open(png, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert sorted(os.listdir(tmp_path)) == ['note.md', 'plot.png']
