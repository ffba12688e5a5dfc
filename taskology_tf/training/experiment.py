"""The experiment root: the one place (besides tools/) that reads gin.

A gin file imports this module (its import line is the registry), configures one `Experiment`
and, through it, every task's network, optimizer, data and hyperparameters, the consistency
relations with their weights, the mediator data and the loop. The library classes it wires
are registered here as external configurables, so library code stays free of gin.

Collective training (`Experiment.build_trainer()`) trains every task in this process;
distributed training (`Experiment.build_trainer(live=['depth'], peer_source=...)`) trains one
task and queries its peers through the injected peer source.
"""

import dataclasses
import os
from typing import Callable, List, Mapping, Optional, Sequence

import gin
import tensorflow as tf
import tf_keras as keras

from taskology_tf import files
from taskology_tf.consistency.depth_normals import DepthNormalsConsistency
from taskology_tf.consistency.depth_normals_anchored import AnchoredDepthNormalsConsistency
from taskology_tf.consistency.dfv import DfvConsistency
from taskology_tf.consistency.dfv import DfvDepthSmoothness
from taskology_tf.consistency.dfv import DfvMotionSmoothness
from taskology_tf.consistency.dfv_segmentation import DfvSegmentationWarpConsistency
from taskology_tf.consistency.photometric import PhotometricConsistency
from taskology_tf.consistency.segmentation_warp import SegmentationWarpConsistency
from taskology_tf.consistency.smoothness import DepthSmoothness
from taskology_tf.datasets import clips as video_clips
from taskology_tf.inputs import pipelines
from taskology_tf.mtl import methods as mtl_methods
from taskology_tf.mtl import nyuv2 as mtl_nyuv2
from taskology_tf.mtl.trainer import MTLExperiment
from taskology_tf.tasks.depth import DepthTask
from taskology_tf.tasks.dfv_depth import DfvDepthTask
from taskology_tf.tasks.dfv_motion import DfvMotionTask
from taskology_tf.tasks.dfv_normals import DfvNormalsTask
from taskology_tf.tasks.egomotion import EgomotionTask
from taskology_tf.tasks.normals import NormalsTask
from taskology_tf.tasks.segmentation import SegmentationTask
from taskology_tf.training import distributed  # noqa: F401  (registers DistributedConfig)
from taskology_tf.training import frozen as frozen_lib
from taskology_tf.training import peers as peers_lib
from taskology_tf.training.trainer import LoopConfig
from taskology_tf.training.trainer import TaskSetup
from taskology_tf.training.trainer import Trainer

ClipSource = pipelines.ClipSource
# Builds one input pipeline's dataset from its tf.distribute.InputContext (None: the only one).
DatasetFn = Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]

# Library classes made configurable from gin files. Registered here, explicitly, rather than by
# decorators scattered through the library.
for _cls, _module in (
    (DepthTask, 'taskology_tf.tasks'),
    (NormalsTask, 'taskology_tf.tasks'),
    (SegmentationTask, 'taskology_tf.tasks'),
    (EgomotionTask, 'taskology_tf.tasks'),
    (DepthNormalsConsistency, 'taskology_tf.consistency'),
    (AnchoredDepthNormalsConsistency, 'taskology_tf.consistency'),
    (PhotometricConsistency, 'taskology_tf.consistency'),
    (SegmentationWarpConsistency, 'taskology_tf.consistency'),
    (DepthSmoothness, 'taskology_tf.consistency'),
    (pipelines.MixingSchedule, 'taskology_tf.inputs'),
    (LoopConfig, 'taskology_tf.training'),
    (keras.optimizers.Adam, 'tf_keras.optimizers'),
    (keras.optimizers.SGD, 'tf_keras.optimizers'),
    (keras.optimizers.schedules.PiecewiseConstantDecay, 'tf_keras.optimizers.schedules'),
    (keras.optimizers.schedules.CosineDecay, 'tf_keras.optimizers.schedules'),
    (tf.distribute.OneDeviceStrategy, 'tf.distribute'),
    (tf.distribute.MirroredStrategy, 'tf.distribute'),
    (tf.distribute.MultiWorkerMirroredStrategy, 'tf.distribute'),
    (MTLExperiment, 'taskology_tf.mtl'),
    (mtl_methods.EW, 'taskology_tf.mtl'),
    (mtl_methods.MGDA, 'taskology_tf.mtl'),
    (mtl_methods.PCGrad, 'taskology_tf.mtl'),
    (mtl_methods.GradDrop, 'taskology_tf.mtl'),
    (mtl_methods.CAGrad, 'taskology_tf.mtl'),
    (mtl_methods.MCLGS, 'taskology_tf.mtl'),
    (mtl_nyuv2.nyuv2_clips, 'taskology_tf.mtl'),
    (video_clips.kitti_raw_clips, 'taskology_tf.datasets'),
    (video_clips.cityscapes_clips, 'taskology_tf.datasets'),
    (video_clips.coco_panoptic_clips, 'taskology_tf.datasets'),
    (video_clips.scannet_clips, 'taskology_tf.datasets'),
    (video_clips.scenenet_clips, 'taskology_tf.datasets'),
    (DfvDepthTask, 'taskology_tf.tasks'),
    (DfvMotionTask, 'taskology_tf.tasks'),
    (DfvNormalsTask, 'taskology_tf.tasks'),
    (DfvConsistency, 'taskology_tf.consistency'),
    (DfvDepthSmoothness, 'taskology_tf.consistency'),
    (DfvMotionSmoothness, 'taskology_tf.consistency'),
    (DfvSegmentationWarpConsistency, 'taskology_tf.consistency'),
):
  gin.external_configurable(_cls, module=_module)


@gin.configurable(module='taskology_tf.training')
def tpu_strategy(tpu: str = ''):
  """A TPUStrategy on the named Cloud TPU ('' = the local TPU / TPU VM)."""
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)


@gin.configurable(module='taskology_tf.datasets')
def synthetic_world_clips(
    domain: str = gin.REQUIRED,
    split: str = gin.REQUIRED,
    height: int = gin.REQUIRED,
    width: int = gin.REQUIRED,
    data_dir: str = 'data/tensorflow_datasets',
    input_context: Optional[tf.distribute.InputContext] = None,
) -> tf.data.Dataset:
  """Clips of the built-in synthetic world (see taskology_tf/datasets/synthetic_world).

  With an `input_context` of several input pipelines, returns only this pipeline's even share
  of `split` (TFDS reads only those records), so each worker decodes only what it trains on.
  """
  # Imported here so experiments that never touch it do not pay for importing TFDS.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from taskology_tf.datasets.loader import load_synthetic_world  # pylint: disable=g-import-not-at-top

  if input_context is not None and input_context.num_input_pipelines > 1:
    split = tfds.even_splits(split, input_context.num_input_pipelines)[
        input_context.input_pipeline_id
    ]
  return load_synthetic_world(
      domain=domain, split=split, data_dir=data_dir, height=height, width=width
  )


@gin.configurable(module='taskology_tf.training')
@dataclasses.dataclass
class TaskConfig:
  """One task's side of an experiment: its own network, optimizer and data.

  Attributes:
    task: the Task.
    optimizer: optimizer factory (e.g. `@depth/Adam`, unparenthesised so each trainer makes its
      own under its strategy scope); its learning_rate may be a schedule.
    dedicated_clips: clip source of this task's labelled data (None: self-supervised).
    batch_size: dedicated frames per batch (global, across replicas).
    label_fraction: fraction of dedicated clips whose labels are used.
    dedicated_frames: frame indices per clip used as dedicated frames (None: all).
    consistency_weight: c_i, this task's multiplier on relation losses (distributed semantics).
    strategy: tf.distribute strategy factory for this task's trainer (None: default).
    jit_compile: compile this task's training step with XLA. In collective mode the tasks share
      one joint step, so every live task must agree. Off by default: on CPU, XLA pays a long
      first-step compile for little gain at small sizes (BENCHMARKS.md); TPUs always compile.
    frozen_from: load this task from an earlier run and never train it (Table 1 C and D): a
      run directory, checkpoint directory or prefix, SavedModel directory or TF Serving base
      path (training/frozen.py). It then answers as a constant peer in this process, or is
      served by the model server in distributed mode (tools/launch.py). None: trained here.
  """

  task: object = gin.REQUIRED
  optimizer: Callable[[], keras.optimizers.Optimizer] = gin.REQUIRED
  dedicated_clips: Optional[ClipSource] = None
  batch_size: int = 8
  label_fraction: float = 1.0
  dedicated_frames: Optional[Sequence[int]] = None
  consistency_weight: float = 1.0
  strategy: Optional[Callable[[], tf.distribute.Strategy]] = None
  jit_compile: bool = False
  frozen_from: Optional[str] = None

  def __post_init__(self):
    name = getattr(self.task, 'name', '?')
    if self.batch_size < 1:
      raise ValueError(
          f'TaskConfig.batch_size of task {name!r} must be >= 1, got {self.batch_size}'
      )
    pipelines.check_label_fraction(
        self.label_fraction, f'TaskConfig.label_fraction of task {name!r}'
    )


@gin.configurable(module='taskology_tf.training')
class Experiment:
  """A multi-task experiment (Eq. 1): tasks, relations, mediator data, loop.

  Args:
    tasks: one TaskConfig per task.
    relations: consistency relations (empty: every task trains alone, the baseline).
    relation_weights: {relation name: w_r}.
    mediator_clips: clip source of the shared unlabelled mediator data.
    mediator_batch_size: clips per mediator batch.
    mediator_frames: frame indices kept per mediator clip (e.g. (1,) for single-frame
      relations, None for whole clips).
    evaluation_clips: clip source of labelled evaluation data (None: no evaluation).
    evaluation_frames: frames per evaluation clip to score (None: all).
    evaluation_max_clips: cap on evaluation clips.
    peer_gradients: collective semantics (True) or distributed semantics (False).
    peer_refresh_steps: in collective mode with peer_gradients False, peers are frozen copies
      refreshed every this many steps (0: live peers with stop-gradient), Fig. 5's staleness.
    peer_refresh_seconds: instead of peer_refresh_steps, refresh those copies every this many
      seconds of wall-clock time (> 0; None: by steps). Fig. 5's "every T minutes" in one process.
    schedule: dedicated/mediator mixing.
    loop: loop cadence.
    seed: seeds TF's global generator (initialisation) and the data pipelines.
    deterministic: also turn on TF's op determinism
      (tf.config.experimental.enable_op_determinism): with the same seed, build and machine type,
      two runs give bit-identical weights (README says what this does and does not cover). Ops
      without a deterministic kernel then raise instead of running.
  """

  def __init__(
      self,
      tasks: Sequence[TaskConfig] = gin.REQUIRED,
      relations: Sequence = (),
      relation_weights: Optional[Mapping[str, float]] = None,
      mediator_clips: Optional[ClipSource] = None,
      mediator_batch_size: int = 4,
      mediator_frames: Optional[Sequence[int]] = None,
      evaluation_clips: Optional[ClipSource] = None,
      evaluation_frames: Optional[Sequence[int]] = None,
      evaluation_max_clips: Optional[int] = None,
      peer_gradients: bool = True,
      peer_refresh_steps: int = 0,
      peer_refresh_seconds: Optional[float] = None,
      schedule: Optional[pipelines.MixingSchedule] = None,
      loop: Optional[LoopConfig] = None,
      seed: int = 0,
      deterministic: bool = False,
  ):
    self.tasks = list(tasks)
    self.relations = list(relations)
    self.relation_weights = dict(relation_weights or {})
    if self.relations and mediator_clips is None:
      raise ValueError(
          'Experiment: relations are configured but Experiment.mediator_clips is '
          'not; consistency needs a mediator dataset'
      )
    self.mediator_clips = mediator_clips
    self.mediator_batch_size = mediator_batch_size
    self.mediator_frames = mediator_frames
    self.evaluation_clips = evaluation_clips
    self.evaluation_frames = evaluation_frames
    self.evaluation_max_clips = evaluation_max_clips
    self.peer_gradients = peer_gradients
    self.peer_refresh_steps = peer_refresh_steps
    if peer_refresh_steps and peer_gradients:
      raise ValueError(
          'Experiment: peer_refresh_steps > 0 (stale peers) needs '
          'peer_gradients = False: stale copies cannot pass gradients'
      )
    self.peer_refresh_seconds = peer_refresh_seconds
    if peer_refresh_seconds is not None:
      if not peer_refresh_seconds > 0:
        raise ValueError(
            f'Experiment.peer_refresh_seconds must be > 0 (or None), got {peer_refresh_seconds!r}'
        )
      if peer_refresh_steps:
        raise ValueError(
            'Experiment: set Experiment.peer_refresh_steps or Experiment.peer_refresh_seconds, '
            f'not both (got {peer_refresh_steps} and {peer_refresh_seconds})'
        )
      if peer_gradients:
        raise ValueError(
            'Experiment: Experiment.peer_refresh_seconds (stale peers) needs '
            'peer_gradients = False: stale copies cannot pass gradients'
        )
    self.schedule = schedule or pipelines.MixingSchedule()
    if mediator_batch_size < 1:
      raise ValueError(f'Experiment.mediator_batch_size must be >= 1, got {mediator_batch_size}')
    self.loop = loop or LoopConfig()
    self.seed = seed
    self.deterministic = deterministic

  @property
  def task_names(self) -> List[str]:
    return [c.task.name for c in self.tasks]

  @property
  def frozen_task_names(self) -> List[str]:
    """Tasks loaded from an earlier run (TaskConfig.frozen_from) and never trained."""
    return [c.task.name for c in self.tasks if c.frozen_from]

  @property
  def mediator_label_keys(self) -> List[str]:
    """Label keys some relation asked to receive from the mediator data (sorted).

    The mediator stream carries no labels, except the keys a relation names in its
    `mediator_label_keys` (e.g. the synthetic world's `semantics` for a movable mask when the
    experiment has no segmenter); nothing else reaches a relation.
    """
    return sorted({k for r in self.relations for k in getattr(r, 'mediator_label_keys', ())})

  def config(self, name: str) -> TaskConfig:
    for c in self.tasks:
      if c.task.name == name:
        return c
    raise ValueError(f'unknown task {name!r}; this experiment has tasks {self.task_names}')

  def mediator_dataset_fn(self) -> Optional[DatasetFn]:
    """Builds one input pipeline's mediator stream from its InputContext (None: the only one)."""
    if not self.relations:
      return None

    def dataset_fn(input_context=None):
      return pipelines.mediator_dataset(
          pipelines.read_clips(self.mediator_clips, input_context),
          pipelines.per_replica_batch_size(
              self.mediator_batch_size, input_context, 'Experiment.mediator_batch_size'
          ),
          self.mediator_frames,
          seed=self.seed,
          label_keys=self.mediator_label_keys,
      )

    return dataset_fn

  def evaluation_dataset(self, batch_size: int = 16) -> Optional[tf.data.Dataset]:
    if self.evaluation_clips is None:
      return None
    return pipelines.evaluation_dataset(
        self.evaluation_clips(), batch_size, self.evaluation_frames, self.evaluation_max_clips
    )

  def dedicated_dataset_fn(self, index: int) -> Optional[DatasetFn]:
    """Builds one input pipeline's dedicated stream of task `index` from its InputContext."""
    c = self.tasks[index]
    if c.dedicated_clips is None:
      return None

    def dataset_fn(input_context=None):
      return pipelines.dedicated_dataset(
          pipelines.read_clips(c.dedicated_clips, input_context),
          pipelines.per_replica_batch_size(
              c.batch_size, input_context, f'TaskConfig.batch_size of task {c.task.name!r}'
          ),
          c.label_fraction,
          c.dedicated_frames,
          seed=self.seed * 1000 + index,
      )

    return dataset_fn

  def setups(self, live: Sequence[str]) -> List[TaskSetup]:
    out = []
    for i, c in enumerate(self.tasks):
      out.append(
          TaskSetup(
              task=c.task,
              optimizer=c.optimizer,
              dedicated=self.dedicated_dataset_fn(i) if c.task.name in live else None,
              consistency_weight=c.consistency_weight,
              strategy=c.strategy,
              jit_compile=c.jit_compile,
          )
      )
    return out

  def build_trainer(
      self,
      run_dir: str,
      live: Optional[Sequence[str]] = None,
      peer_source: Optional[peers_lib.PeerSource] = None,
      hooks: Sequence = (),
  ) -> Trainer:
    """Builds the trainer of `live` tasks (default: all, i.e. collective mode)."""
    if self.deterministic:
      tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(self.seed)
    frozen = self.frozen_task_names
    live = list(live) if live is not None else [n for n in self.task_names if n not in frozen]
    if not live:
      raise ValueError(
          f'Experiment: every task ({self.task_names}) has TaskConfig.frozen_from set; '
          'nothing to train'
      )
    for name in live:
      if self.config(name).frozen_from:
        raise ValueError(
            f'task {name!r} cannot be trained: its TaskConfig.frozen_from = '
            f'{self.config(name).frozen_from!r} freezes it'
        )
    relations = [r for r in self.relations if any(t in live for t in r.tasks)]
    frozen_needed = sorted({t for r in relations for t in r.tasks if t in frozen})
    factory = None
    if peer_source is not None:
      factory = lambda models: peer_source
    else:
      frozen_peers = None
      if frozen_needed:
        # Loaded now, so a wrong path or a mismatching network fails before training starts.
        frozen_peers = frozen_lib.FrozenPeers.load(
            [(self.config(n).task, self.config(n).frozen_from) for n in frozen_needed]
        )
      if self.peer_refresh_steps or self.peer_refresh_seconds is not None:
        tasks = [self.config(n).task for n in live]
        factory = lambda models: frozen_lib.CombinedPeers(
            [
                peers_lib.StaleCopyPeers(
                    tasks,
                    models,
                    refresh_steps=self.peer_refresh_steps or None,
                    refresh_seconds=self.peer_refresh_seconds,
                ),
                frozen_peers,
            ]
        )
      elif frozen_peers is not None:
        factory = lambda models: frozen_peers
    return Trainer(
        setups=self.setups(live),
        live=live,
        relations=relations,
        relation_weights={
            k: v for k, v in self.relation_weights.items() if k in {r.name for r in relations}
        },
        mediator=self.mediator_dataset_fn() if relations else None,
        peer_source_factory=factory,
        peer_gradients=self.peer_gradients,
        schedule=self.schedule,
        loop=self.loop,
        run_dir=run_dir,
        evaluation=self.evaluation_dataset(),
        hooks=hooks,
    )


def parse_gin(
    gin_files: Sequence[str], gin_bindings: Sequence[str] = (), search_dirs: Sequence[str] = ()
) -> None:
  """Parses gin files and bindings with errors that name the file or binding at fault.

  Args:
    gin_files: paths; relative paths are tried as given, then under each of `search_dirs`.
    gin_bindings: 'Configurable.param = value' strings, applied after the files.
    search_dirs: extra directories for relative gin paths (e.g. the repository root).

  Raises:
    FileNotFoundError: a gin file does not exist (its name and the places searched are given).
    ValueError: a file or binding does not parse or names an unknown configurable/parameter.
  """
  resolved = []
  for path in gin_files:
    candidates = [path] + [os.path.join(d, path) for d in search_dirs if not os.path.isabs(path)]
    found = next((c for c in candidates if tf.io.gfile.exists(c)), None)
    if found is None:
      raise FileNotFoundError(f'--gin_file: {path!r} not found (looked in: {candidates})')
    resolved.append(found)
  for d in search_dirs:
    gin.add_config_file_search_path(d)
  for path in resolved:
    try:
      gin.parse_config_file(path)
    except Exception as e:  # gin raises several types; re-raise naming the file.
      raise ValueError(f'--gin_file {path}: {type(e).__name__}: {e}') from e
  for binding in gin_bindings:
    try:
      gin.parse_config(binding)
    except Exception as e:
      raise ValueError(f'--gin_bindings {binding!r}: {type(e).__name__}: {e}') from e
  gin.finalize()


def write_operative_config(run_dir: str) -> str:
  """Writes the operative gin config (every value actually used) to <run_dir>/operative_config.gin."""
  path = os.path.join(run_dir, 'operative_config.gin')
  return files.write_text_atomic(path, gin.operative_config_str())


# Point-cloud tasks (Table 2). Registered after Experiment exists: PointCloudExperiment (a gin
# root like Experiment, decorated in its module) subclasses it, so its module is imported here
# rather than at the top, which would be circular.
from taskology_tf.consistency.box_flow import BoxFlowClassConsistency  # noqa: E402
from taskology_tf.consistency.box_flow import BoxFlowResidualConsistency  # noqa: E402
from taskology_tf.datasets.waymo import clips as waymo_clips  # noqa: E402
from taskology_tf.geometry.box_coder import AnchorConfig  # noqa: E402
from taskology_tf.geometry.pillars import PillarGrid  # noqa: E402
from taskology_tf.inputs import point_clouds  # noqa: E402
from taskology_tf.tasks.detection3d import BoxFlowTask  # noqa: E402
from taskology_tf.tasks.detection3d import Detection3DTask  # noqa: E402
from taskology_tf.training import point_cloud_experiment  # noqa: E402,F401  (gin root)

for _cls, _module in (
    (Detection3DTask, 'taskology_tf.tasks'),
    (BoxFlowTask, 'taskology_tf.tasks'),
    (BoxFlowClassConsistency, 'taskology_tf.consistency'),
    (BoxFlowResidualConsistency, 'taskology_tf.consistency'),
    (PillarGrid, 'taskology_tf.geometry'),
    (AnchorConfig, 'taskology_tf.geometry'),
    (point_clouds.PointCloudPipeline, 'taskology_tf.inputs'),
    (point_clouds.synthetic_point_cloud_clips, 'taskology_tf.datasets'),
    (waymo_clips.waymo_point_cloud_clips, 'taskology_tf.datasets'),
):
  gin.external_configurable(_cls, module=_module)
