"""From transfer affinities to a collective experiment: which relations and peer pairs to wire.

Taskology ties separate networks with consistency relations; Taskonomy measures how well one
task's representation serves another. Two tasks whose representations transfer well to each
other are related, so a relation between them is likely to carry signal. The score of a task
pair is the mean of its two first-order AHP affinities, each relative to the uniform affinity of
its target (1 / number of candidate transfers onto it), so 1 means "as useful as an average
source". A relation is scored by the mean over the ordered pairs of its tasks, and the proposal
wires the relations whose score passes a threshold, with weights proportional to their scores.
"""

import dataclasses
import itertools
from typing import Dict, List, Mapping, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class RelationSpec:
  """A relation of the library, as a gin file wires it.

  Attributes:
    configurable: its gin name (registered in training/experiment.py).
    name: its `name` (the key of Experiment.relation_weights).
    tasks: the task names it ties, by constructor argument: ((arg, task), ...).
    mediator_frames: mediator frames it needs ((1,): single frames; None: whole clips).
  """

  configurable: str
  name: str
  tasks: Tuple[Tuple[str, str], ...]
  mediator_frames: object = (1,)


CATALOGUE: Tuple[RelationSpec, ...] = (
    RelationSpec(
        'DepthNormalsConsistency',
        'depth_normals',
        (('depth_task', 'depth'), ('normals_task', 'normals')),
    ),
    RelationSpec(
        'PhotometricConsistency',
        'photometric',
        (('depth_task', 'depth'), ('motion_task', 'egomotion')),
        None,
    ),
    RelationSpec(
        'SegmentationWarpConsistency',
        'segmentation_warp',
        (
            ('segmentation_task', 'segmentation'),
            ('depth_task', 'depth'),
            ('motion_task', 'egomotion'),
        ),
        None,
    ),
)


def relative_affinities(
    affinities: Mapping[str, Mapping[str, float]],
) -> Dict[str, Dict[str, float]]:
  """{target: {source: affinity * M_target}} for first-order sources (1 = uniform)."""
  out = {}
  for target, aff in affinities.items():
    m = len(aff)
    out[target] = {s: a * m for s, a in aff.items() if '+' not in s and s != 'full'}
  return out


def pair_scores(
    affinities: Mapping[str, Mapping[str, float]],
) -> List[Tuple[Tuple[str, str], float]]:
  """Task pairs ranked by their mean relative affinity in both directions (best first)."""
  rel = relative_affinities(affinities)
  scores = []
  for a, b in itertools.combinations(sorted(rel), 2):
    if a in rel[b] and b in rel[a]:
      scores.append(((a, b), 0.5 * (rel[b][a] + rel[a][b])))
  return sorted(scores, key=lambda x: -x[1])


def relation_score(spec: RelationSpec, affinities) -> float:
  """Mean relative affinity over the ordered pairs of the relation's tasks (KeyError if unknown)."""
  rel = relative_affinities(affinities)
  tasks = [t for _, t in spec.tasks]
  vals = [rel[j][i] for i, j in itertools.permutations(tasks, 2)]
  return sum(vals) / len(vals)


def propose(
    affinities: Mapping[str, Mapping[str, float]],
    threshold: float = 1.0,
    catalogue: Sequence[RelationSpec] = CATALOGUE,
) -> str:
  """A gin fragment wiring the relations worth wiring (append to a collective experiment)."""
  tasks = set(affinities)
  lines = [
      '# Proposed by tools/propose_relations.py from first-order AHP affinities',
      '# (relative to uniform: 1 = an average source). Task pairs, best first:',
  ]
  for (a, b), s in pair_scores(affinities):
    lines.append(f'#   {a} <-> {b}: {s:.3f}')
  chosen = []
  for spec in catalogue:
    missing = sorted({t for _, t in spec.tasks} - tasks)
    if missing:
      lines.append(f'# {spec.configurable}: skipped, needs tasks {missing} that have no affinities')
      continue
    score = relation_score(spec, affinities)
    verdict = 'wired' if score >= threshold else f'not wired (below threshold {threshold})'
    lines.append(f'# {spec.configurable}: score {score:.3f}, {verdict}')
    if score >= threshold:
      chosen.append((spec, score))
  if not chosen:
    lines.append('# No relation passes the threshold: keep the tasks separate (STL).')
    return '\n'.join(lines) + '\n'
  best = max(s for _, s in chosen)
  for spec, _ in chosen:
    for arg, task in spec.tasks:
      lines.append(f"{spec.configurable}.{arg} = '{task}'")
  lines.append(
      'Experiment.relations = [' + ', '.join(f'@{s.configurable}()' for s, _ in chosen) + ']'
  )
  weights = ', '.join(f"'{s.name}': {score / best:.3f}" for s, score in chosen)
  lines.append(f'Experiment.relation_weights = {{{weights}}}')
  if all(s.mediator_frames == (1,) for s, _ in chosen):
    lines.append('Experiment.mediator_frames = (1,)')
  return '\n'.join(lines) + '\n'
