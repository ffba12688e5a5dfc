r"""Serves task snapshots over TF Serving's gRPC API (a stand-in for tensorflow_model_server).

Flags follow tensorflow_model_server's names, so the same command line and models.config
work with either binary:

  # Every model in a TF Serving models.config (ModelServerConfig text proto):
  python tools/serve.py --port=8500 --model_config_file=runs/x/models.config

  # One model, like `tensorflow_model_server --model_name --model_base_path`:
  python tools/serve.py --port=8500 --model_name=depth \
      --model_base_path=runs/x/snapshots/depth

Runs until SIGINT or SIGTERM, then stops gracefully (in-flight requests get
--shutdown_grace_seconds to finish).

Flags of our own (tensorflow_model_server has no equivalent): --host (it binds 0.0.0.0;
we bind loopback unless told otherwise), --grpc_max_message_bytes (it allows 2 GiB and
takes overrides through --grpc_channel_arguments, which we honour too) and
--shutdown_grace_seconds.
"""

import signal
import sys
import threading

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from taskology_tf.serving import server as server_lib
import taskology_tf_tools  # noqa: F401  (quiet TF start-up)

flags.DEFINE_integer('port', 8500, 'Port to listen on for gRPC (0 picks a free port).')
flags.DEFINE_string(
    'host',
    '127.0.0.1',
    'Address to bind. tensorflow_model_server binds 0.0.0.0; pass '
    '--host=0.0.0.0 to serve peers on other machines.',
)
flags.DEFINE_string(
    'model_config_file',
    '',
    'If non-empty, read an ascii ModelServerConfig protobuf from this file '
    'and serve its models (then --model_name/--model_base_path are '
    'ignored).',
)
flags.DEFINE_integer(
    'model_config_file_poll_wait_seconds',
    0,
    'Seconds between re-reads of --model_config_file; 0 reads it once.',
)
flags.DEFINE_string(
    'model_name', 'default', 'Name of the model (ignored if --model_config_file is set).'
)
flags.DEFINE_string(
    'model_base_path',
    '',
    'Path holding the numeric version directories (ignored if '
    '--model_config_file is set, otherwise required).',
)
flags.DEFINE_float(
    'file_system_poll_wait_seconds',
    1,
    'Seconds between polls of the file system for new model versions; ' '0 polls once at start-up.',
)
flags.DEFINE_string(
    'ssl_config_file',
    '',
    'If non-empty, read an ascii SSLConfig protobuf (server_key, '
    'server_cert, custom_ca, client_verify; PEM contents) and serve TLS.',
)
flags.DEFINE_string(
    'grpc_channel_arguments',
    '',
    'Comma-separated key=value gRPC server arguments, e.g. ' 'grpc.max_connection_age_ms=2000.',
)
flags.DEFINE_integer('grpc_max_threads', 8, 'gRPC threads handling requests.')
flags.DEFINE_integer(
    'grpc_max_message_bytes', 64 << 20, 'Maximum gRPC message size, both directions.'
)
flags.DEFINE_float(
    'shutdown_grace_seconds', 5.0, 'Seconds in-flight requests get to finish at shutdown.'
)
FLAGS = flags.FLAGS


def _read_config():
  if FLAGS.model_config_file:
    return server_lib.load_model_config_file(FLAGS.model_config_file)
  if not FLAGS.model_base_path:
    raise app.UsageError('Either --model_config_file or --model_base_path is required.')
  return server_lib.single_model_config(FLAGS.model_name, FLAGS.model_base_path)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Unexpected arguments: %s' % ' '.join(argv[1:]))
  try:
    config = _read_config()
    credentials = None
    if FLAGS.ssl_config_file:
      credentials = server_lib.load_ssl_config_file(FLAGS.ssl_config_file)
  except (FileNotFoundError, ValueError) as e:
    # One line naming the file and the problem, not a traceback (the messages name the file).
    print(f'error: {e}'.replace('\n', ' '), file=sys.stderr)
    return 2
  server = server_lib.ModelServer(
      config,
      port=FLAGS.port,
      host=FLAGS.host,
      poll_wait_seconds=FLAGS.file_system_poll_wait_seconds,
      max_message_bytes=FLAGS.grpc_max_message_bytes,
      server_credentials=credentials,
      max_workers=FLAGS.grpc_max_threads,
      grpc_options=server_lib.parse_grpc_channel_arguments(FLAGS.grpc_channel_arguments),
  )

  stop = threading.Event()

  def request_stop(signum, frame):
    del frame
    logging.info('Received signal %d; shutting down.', signum)
    stop.set()

  signal.signal(signal.SIGINT, request_stop)
  signal.signal(signal.SIGTERM, request_stop)

  port = server.start()
  # One parseable line for launchers that start us with --port=0.
  print('Running ModelServer at %s:%d ...' % (FLAGS.host, port), flush=True)

  reread = FLAGS.model_config_file and FLAGS.model_config_file_poll_wait_seconds > 0
  last_text = None
  if reread:
    with tf.io.gfile.GFile(FLAGS.model_config_file, 'r') as f:
      last_text = f.read()
  while not stop.wait(FLAGS.model_config_file_poll_wait_seconds if reread else 1.0):
    if not reread:
      continue
    try:
      with tf.io.gfile.GFile(FLAGS.model_config_file, 'r') as f:
        text = f.read()
      if text != last_text:
        server.reload_config(server_lib.load_model_config_file(FLAGS.model_config_file))
        last_text = text
        logging.info('Reloaded %s.', FLAGS.model_config_file)
    except (ValueError, OSError, tf.errors.OpError) as e:
      logging.error('Not reloading %s: %s', FLAGS.model_config_file, e)
  server.stop(grace=FLAGS.shutdown_grace_seconds)
  return 0


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(lambda argv: sys.exit(main(argv)), __name__)


if __name__ == '__main__':
  run()
