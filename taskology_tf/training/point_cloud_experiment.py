"""The experiment root of the point-cloud tasks (Table 2): Experiment with pillar pipelines.

`Experiment` builds its dedicated, mediator and evaluation streams with inputs/pipelines.py,
which carry images and intrinsics only. `PointCloudExperiment` is the same experiment whose
three streams go through `inputs.point_clouds.PointCloudPipeline` instead; everything else
(tasks, relations, weights, schedule, loop, distributed mode) is `Experiment`'s. A gin file binds
the shared parameters as `Experiment.*` and the pipeline as `PointCloudExperiment.pipeline`.
"""

from typing import Optional

import gin
import tensorflow as tf

from taskology_tf.inputs import pipelines
from taskology_tf.inputs import point_clouds
from taskology_tf.training import experiment as experiment_lib


@gin.configurable(module='taskology_tf.training')
class PointCloudExperiment(experiment_lib.Experiment):
  """An Experiment over point-cloud sequences.

  Args:
    pipeline: pillarisation and anchor assignment (must use the tasks' grid and anchors).
    evaluation_batch_size: sequences per evaluation batch.
  """

  def __init__(
      self,
      pipeline: point_clouds.PointCloudPipeline = gin.REQUIRED,
      evaluation_batch_size: int = 4,
  ):
    super().__init__()  # The `Experiment.*` gin bindings configure the shared parameters.
    self.pipeline = pipeline
    self.evaluation_batch_size = evaluation_batch_size
    for c in self.tasks:
      grid = getattr(c.task, 'grid', None)
      if grid is not None and grid != pipeline.grid:
        raise ValueError(
            f'PointCloudExperiment.pipeline.grid {pipeline.grid} differs from the grid of task '
            f'{c.task.name!r} ({grid}); bind both to the same PillarGrid'
        )

  def mediator_dataset_fn(self):
    if not self.relations:
      return None

    def dataset_fn(input_context=None):
      return self.pipeline.mediator_dataset(
          pipelines.read_clips(self.mediator_clips, input_context),
          pipelines.per_replica_batch_size(
              self.mediator_batch_size, input_context, 'Experiment.mediator_batch_size'
          ),
          seed=self.seed,
      )

    return dataset_fn

  def dedicated_dataset_fn(self, index: int):
    c = self.tasks[index]
    if c.dedicated_clips is None:
      return None

    def dataset_fn(input_context=None):
      return self.pipeline.dedicated_dataset(
          pipelines.read_clips(c.dedicated_clips, input_context),
          pipelines.per_replica_batch_size(
              c.batch_size, input_context, f'TaskConfig.batch_size of task {c.task.name!r}'
          ),
          c.label_fraction,
          seed=self.seed * 1000 + index,
      )

    return dataset_fn

  def evaluation_dataset(self, batch_size: Optional[int] = None) -> Optional[tf.data.Dataset]:
    if self.evaluation_clips is None:
      return None
    return self.pipeline.evaluation_dataset(
        self.evaluation_clips(),
        batch_size or self.evaluation_batch_size,
        self.evaluation_max_clips,
    )


def experiment_from_gin() -> experiment_lib.Experiment:
  """The experiment root the parsed gin config asks for: a PointCloudExperiment when it binds
  `PointCloudExperiment.pipeline` (the Table 2 files), else an Experiment. tools/train.py and
  tools/launch.py build their experiment with this, so one command runs either kind."""
  try:
    gin.query_parameter('PointCloudExperiment.pipeline')
  except ValueError:
    return experiment_lib.Experiment()
  return PointCloudExperiment()
