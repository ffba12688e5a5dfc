"""The SceneNet RGB-D trajectory protobuf module, generated from `scenenet.proto` on first use.

The published dataset ships its trajectories as serialized `scenenet.Trajectories` messages
(`scenenet_rgbd_train_<k>.pb`, `scenenet_rgbd_val.pb`) and the schema as a `.proto` file whose
Python module each user generates with protoc. This package does the same at run time with the
protoc that PyPI's grpcio-tools ships (`python -m grpc_tools.protoc`), so no generated code is
checked in and the module always matches the installed protobuf runtime.

The module is generated once into a cache directory keyed by the schema's and the generator's
hash: `<cache>/scenenet_proto/<key>/scenenet_pb2.py`, where <cache> is $TASKOLOGY_CACHE_DIR, or
$XDG_CACHE_HOME/taskology_tf, or ~/.cache/taskology_tf. It is written into a temporary
directory next to its final place and renamed, so a crash or a concurrent build never leaves a
half-written module that a later run would import.
"""

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Optional

PROTO_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'scenenet.proto')
MODULE_NAME = 'taskology_tf.datasets.scenenet.scenenet_pb2'

_MODULE = None


class ProtoGenerationError(RuntimeError):
  """protoc could not generate the Python module of a .proto file."""


def default_cache_dir() -> str:
  """$TASKOLOGY_CACHE_DIR, else $XDG_CACHE_HOME/taskology_tf, else ~/.cache/taskology_tf."""
  if os.environ.get('TASKOLOGY_CACHE_DIR'):
    return os.environ['TASKOLOGY_CACHE_DIR']
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'taskology_tf')


def _generator_version() -> str:
  try:
    from grpc_tools import grpc_version  # pylint: disable=g-import-not-at-top

    return grpc_version.VERSION
  except ImportError:
    return 'missing'


def cache_key(proto_path: str) -> str:
  """sha256 of the schema's bytes and the grpcio-tools version (first 16 hex digits)."""
  with open(proto_path, 'rb') as f:
    digest = hashlib.sha256(f.read())
  digest.update(_generator_version().encode())
  return digest.hexdigest()[:16]


def generate(proto_path: str, cache_dir: Optional[str] = None) -> str:
  """Generates `<name>_pb2.py` of a .proto file (once) and returns its path.

  Args:
    proto_path: the .proto file; its folder is protoc's include path (so the file registers
      under its base name, e.g. 'scenenet.proto').
    cache_dir: the cache root (None: `default_cache_dir()`).

  Returns:
    The path of the generated module, `<cache>/<stem>_proto/<key>/<stem>_pb2.py`.

  Raises:
    FileNotFoundError: the .proto file does not exist.
    ProtoGenerationError: grpcio-tools is not installed, or protoc failed (the message names
      the .proto file and gives protoc's stderr).
  """
  proto_path = os.path.abspath(proto_path)
  if not os.path.isfile(proto_path):
    raise FileNotFoundError(f'protobuf schema {proto_path} does not exist')
  stem = os.path.splitext(os.path.basename(proto_path))[0]
  final_dir = os.path.join(cache_dir or default_cache_dir(), f'{stem}_proto', cache_key(proto_path))
  module_path = os.path.join(final_dir, f'{stem}_pb2.py')
  if os.path.isfile(module_path):
    return module_path
  if importlib.util.find_spec('grpc_tools') is None:
    raise ProtoGenerationError(
        f'cannot generate the Python module of {proto_path}: grpcio-tools is not installed '
        '(pip install -r requirements.lock, or pip install grpcio-tools)'
    )
  os.makedirs(os.path.dirname(final_dir), exist_ok=True)
  tmp_dir = tempfile.mkdtemp(
      prefix=f'.{os.path.basename(final_dir)}.', dir=os.path.dirname(final_dir)
  )
  try:
    # A subprocess, so protoc's diagnostics (written by C++ to fd 2) can be captured.
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'grpc_tools.protoc',
            f'--proto_path={os.path.dirname(proto_path)}',
            f'--python_out={tmp_dir}',
            proto_path,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    generated = os.path.join(tmp_dir, f'{stem}_pb2.py')
    if result.returncode != 0 or not os.path.isfile(generated):
      raise ProtoGenerationError(
          f'protoc (grpc_tools.protoc) failed on {proto_path} with exit code '
          f'{result.returncode}:\n{result.stderr.strip() or "(no stderr)"}'
      )
    try:
      os.rename(tmp_dir, final_dir)
    except OSError:
      if not os.path.isfile(module_path):  # Not a concurrent generation that won the race.
        raise
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  return module_path


def load_module(cache_dir: Optional[str] = None):
  """The generated `scenenet_pb2` module of the shipped schema (generated on first use).

  Loaded once per process: the module registers 'scenenet.proto' in protobuf's default
  descriptor pool, which takes each file once.

  Raises:
    ProtoGenerationError: generation failed (names the .proto file, with protoc's stderr).
  """
  global _MODULE
  if _MODULE is None:
    path = generate(PROTO_PATH, cache_dir)
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[MODULE_NAME] = module
    _MODULE = module
  return _MODULE
