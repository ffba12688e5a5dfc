"""Peer serving: SavedModel snapshots, a TF-Serving-compatible server, a peer client.

Distributed Taskology trainers export their task network every N steps (`SnapshotWriter`;
`export_snapshot` for a single export), a `ModelServer` (or a stock tensorflow_model_server
reading the same models.config) serves the newest snapshot of each task, and peers query it
through `PeerClient` / `PrefetchingPeerClient` over TF Serving's gRPC API.
"""

from taskology_tf.serving.client import from_tensor_proto
from taskology_tf.serving.client import PeerClient
from taskology_tf.serving.client import PeerError
from taskology_tf.serving.client import PeerRequestError
from taskology_tf.serving.client import PeerResult
from taskology_tf.serving.client import PeerUnavailableError
from taskology_tf.serving.client import PrefetchingPeerClient
from taskology_tf.serving.client import to_tensor_proto
from taskology_tf.serving.export import export_snapshot
from taskology_tf.serving.export import list_versions
from taskology_tf.serving.export import SnapshotWriter
from taskology_tf.serving.server import load_model_config_file
from taskology_tf.serving.server import ModelServer
from taskology_tf.serving.server import single_model_config
