"""Shared fixtures: a tiny synthetic world built once per test session."""

import os
import socket

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# XLA-compiled steps in tests (the gin smoke tests) compile several times faster without LLVM's
# backend optimisations and expensive passes; the computation is the same (the DfVitW step: 83 s
# -> 54 s with the second flag, at load 8). Set before any test imports TensorFlow.
os.environ.setdefault(
    'XLA_FLAGS', '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'
)

TINY_HEIGHT = 16
TINY_WIDTH = 24


@pytest.fixture(scope='session')
def tiny_world(tmp_path_factory):
  """Builds both domains at 16x24 (8 train / 2 validation / 2 test clips); returns data_dir."""
  from taskology_tf.datasets.synthetic_world import builder as sw_builder  # pylint: disable=g-import-not-at-top

  data_dir = str(tmp_path_factory.mktemp('tfds'))
  for domain in ('sim', 'real'):
    config = sw_builder.make_config(
        domain, TINY_HEIGHT, TINY_WIDTH, num_train=8, num_validation=2, num_test=2
    )
    sw_builder.SyntheticWorld(config=config, data_dir=data_dir).download_and_prepare()
  return data_dir


# The KITTI raw fixture's build size (tests/datasets/fixtures.py writes 24x78 raw frames).
KITTI_HEIGHT = 16
KITTI_WIDTH = 48


@pytest.fixture(scope='session')
def kitti_raw_tfds(tmp_path_factory):
  """The KITTI raw fixture in the raw layout, built once with the real builder; returns data_dir.

  Bind `kitti_raw_clips.data_dir` to it with `.height = KITTI_HEIGHT`, `.width = KITTI_WIDTH`.
  """
  from tests.datasets import fixtures  # pylint: disable=g-import-not-at-top

  data_dir, _, _, _ = fixtures.build_kitti_raw(
      str(tmp_path_factory.mktemp('kitti_raw')), KITTI_HEIGHT, KITTI_WIDTH
  )
  return data_dir


@pytest.fixture
def dead_port():
  """A loopback port that refuses connections for the whole test, and no one else can take.

  The socket is bound but never listens, so a client's connect is refused at once; holding it
  (instead of binding, closing and handing the number on) keeps another process from starting
  a server there mid-test. Servers in tests bind port 0 themselves and report the port they got.
  """
  sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  sock.bind(('127.0.0.1', 0))
  try:
    yield sock.getsockname()[1]
  finally:
    sock.close()


def run_tool(tool, args, timeout=300):
  """Runs tools/<tool>.py with `args` from the repo root; returns the CompletedProcess (text)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  return subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, 'tools', f'{tool}.py'), *args],
      capture_output=True,
      text=True,
      timeout=timeout,
      cwd=REPO_ROOT,
  )
