r"""Benchmarks peer serving: Predict round trip vs in-process call, and server throughput.

  python tools/benchmark_serving.py                      # the numbers in BENCHMARKS.md (Serving)
  python tools/benchmark_serving.py --batch_sizes=1 --throughput_seconds=2   # quicker

(c) Latency: a small conv net (3x Conv2D over uint8 [B, H, W, 3] images -> [B, H, W, 1]
    float32) is exported with export_snapshot and timed two ways, interleaved call by
    call so both see the same machine load: an in-process call of the loaded SavedModel
    signature (numpy in, numpy out) and a Predict round trip through PeerClient to a
    server in a separate process (tools/serve.py, as deployed). The ratio of medians is
    the cost of going over gRPC: serialization, copies and the loopback hop.
(d) Throughput: N client threads, each with its own PeerClient (own channel), call
    Predict back to back for a fixed time; requests/s summed over clients.

Everything runs on 127.0.0.1; loops are bounded by count and time.
"""

import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras as keras

from taskology_tf.serving import client as client_lib
from taskology_tf.serving import export as export_lib
import taskology_tf_tools  # noqa: F401  (quiet TF start-up)

flags.DEFINE_list('batch_sizes', ['1', '4', '16'], 'Batch sizes for the latency test.')
flags.DEFINE_integer('height', 128, 'Image height in pixels.')
flags.DEFINE_integer('width', 416, 'Image width in pixels.')
flags.DEFINE_integer('latency_calls', 20, 'Timed calls per batch size (each way).')
flags.DEFINE_list('clients', ['1', '2', '4'], 'Concurrent clients for the throughput test.')
flags.DEFINE_integer('throughput_batch', 1, 'Batch size of throughput requests.')
flags.DEFINE_float('throughput_seconds', 5.0, 'Duration of each throughput measurement.')
flags.DEFINE_integer('server_threads', 8, 'gRPC threads of the server.')
FLAGS = flags.FLAGS

_MODEL = 'convnet'


def build_convnet(height, width):
  """A small fully convolutional net: uint8 [B, H, W, 3] -> [B, H, W, 1] float32."""
  inputs = keras.Input([height, width, 3], dtype=tf.float32)
  x = keras.layers.Conv2D(16, 3, padding='same', activation='relu')(inputs)
  x = keras.layers.Conv2D(16, 3, padding='same', activation='relu')(x)
  outputs = keras.layers.Conv2D(1, 3, padding='same')(x)
  model = keras.Model(inputs, outputs)

  @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8, name='image')])
  def serve(image):
    # Images enter networks as float32 in [0, 1]; the wire format is uint8.
    return {'depth': model(tf.cast(image, tf.float32) / 255.0, training=False)}

  return model, serve


def start_server(model_base_path, threads):
  """Starts tools/serve.py on a free loopback port; returns (process, port)."""
  process = subprocess.Popen(
      [
          sys.executable,
          '-m',
          'taskology_tf_tools.serve',
          '--port=0',
          '--model_name=%s' % _MODEL,
          '--model_base_path=%s' % model_base_path,
          '--grpc_max_threads=%d' % threads,
          '--file_system_poll_wait_seconds=0',
      ],
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,
      text=True,
  )
  lines = queue.Queue()
  threading.Thread(target=lambda: [lines.put(l) for l in process.stdout], daemon=True).start()
  deadline = time.monotonic() + 120
  while time.monotonic() < deadline:
    try:
      line = lines.get(timeout=1)
    except queue.Empty:
      if process.poll() is not None:
        raise RuntimeError('serve.py exited with %d' % process.returncode)
      continue
    match = re.match(r'Running ModelServer at [^ ]+:(\d+)', line)
    if match:
      return process, int(match.group(1))
  process.kill()
  raise RuntimeError('serve.py did not start within 120 s')


def latency(signature, target, batch, calls, height, width):
  """Interleaved in-process vs Predict timings; returns a dict of medians (seconds)."""
  rng = np.random.default_rng(batch)
  images = rng.integers(0, 256, [batch, height, width, 3], dtype=np.uint8)
  client = client_lib.PeerClient(target, _MODEL, timeout_seconds=60)
  local_times, rpc_times = [], []
  result = None
  for i in range(calls + 2):  # Two warm-up rounds.
    start = time.perf_counter()
    local = {k: v.numpy() for k, v in signature(image=tf.constant(images)).items()}
    local_time = time.perf_counter() - start
    start = time.perf_counter()
    result = client.predict({'image': images})
    rpc_time = time.perf_counter() - start
    if i >= 2:
      local_times.append(local_time)
      rpc_times.append(rpc_time)
  np.testing.assert_allclose(result.outputs['depth'], local['depth'], rtol=1e-5, atol=1e-5)
  client.close()
  return {
      'local': statistics.median(local_times),
      'rpc': statistics.median(rpc_times),
      'request_bytes': result.request_bytes,
      'response_bytes': result.response_bytes,
  }


def throughput(target, num_clients, batch, seconds, height, width):
  """Requests/s of `num_clients` threads calling Predict back to back."""
  images = np.zeros([batch, height, width, 3], np.uint8)
  clients = [client_lib.PeerClient(target, _MODEL, timeout_seconds=60) for _ in range(num_clients)]
  for client in clients:  # Connect and warm up outside the timed window.
    client.predict({'image': images})
  counts = [0] * num_clients
  barrier = threading.Barrier(num_clients + 1)
  stop_at = [0.0]

  def run(i):
    barrier.wait()
    while time.perf_counter() < stop_at[0] and counts[i] < 100000:
      clients[i].predict({'image': images})
      counts[i] += 1

  threads = [threading.Thread(target=run, args=(i,)) for i in range(num_clients)]
  for t in threads:
    t.start()
  start = time.perf_counter()
  stop_at[0] = start + seconds
  barrier.wait()
  for t in threads:
    t.join()
  elapsed = time.perf_counter() - start
  for client in clients:
    client.close()
  return sum(counts) / elapsed


def main(argv):
  del argv
  height, width = FLAGS.height, FLAGS.width
  print(
      '# benchmark_serving: %d cores, load average %s, TF %s'
      % (os.cpu_count(), ' '.join('%.2f' % l for l in os.getloadavg()), tf.__version__)
  )
  with tempfile.TemporaryDirectory() as root:
    model, serve = build_convnet(height, width)
    path = export_lib.export_snapshot(model, serve, root, _MODEL, 1)
    signature = tf.saved_model.load(path).signatures['serving_default']
    process, port = start_server(os.path.join(root, _MODEL), FLAGS.server_threads)
    target = '127.0.0.1:%d' % port
    try:
      print(
          '\n(c) latency, uint8 %dx%dx3 images, median of %d interleaved calls'
          % (height, width, FLAGS.latency_calls)
      )
      print('| batch | in-process ms | Predict ms | ratio | request MB | response MB |')
      print('|---|---|---|---|---|---|')
      for batch in [int(b) for b in FLAGS.batch_sizes]:
        r = latency(signature, target, batch, FLAGS.latency_calls, height, width)
        print(
            '| %d | %.1f | %.1f | %.2f | %.2f | %.2f |'
            % (
                batch,
                1e3 * r['local'],
                1e3 * r['rpc'],
                r['rpc'] / r['local'],
                r['request_bytes'] / 1e6,
                r['response_bytes'] / 1e6,
            ),
            flush=True,
        )

      print(
          '\n(d) throughput, batch %d, %.0f s per row'
          % (FLAGS.throughput_batch, FLAGS.throughput_seconds)
      )
      print('| clients | requests/s | images/s |')
      print('|---|---|---|')
      for num_clients in [int(c) for c in FLAGS.clients]:
        rate = throughput(
            target, num_clients, FLAGS.throughput_batch, FLAGS.throughput_seconds, height, width
        )
        print(
            '| %d | %.1f | %.1f |' % (num_clients, rate, rate * FLAGS.throughput_batch), flush=True
        )
    finally:
      process.send_signal(signal.SIGTERM)
      try:
        process.wait(timeout=30)
      except subprocess.TimeoutExpired:
        process.kill()


def run():
  """Console-script entry point."""
  taskology_tf_tools.run_app(main, __name__)


if __name__ == '__main__':
  run()
