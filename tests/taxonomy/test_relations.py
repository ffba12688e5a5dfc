"""Relation proposals from affinities: ranking by hand and a fragment that gin accepts."""

import gin
import pytest

from taskology_tf.taxonomy import relations

# Per target, 4 candidates (2 first-order sources, their pair, full): uniform = 0.25, so a
# first-order affinity a counts as 4a relative to uniform.
AFF = {
    'depth': {'normals': 0.30, 'segmentation': 0.10, 'normals+segmentation': 0.25, 'full': 0.35},
    'normals': {'depth': 0.35, 'segmentation': 0.15, 'depth+segmentation': 0.2, 'full': 0.3},
    'segmentation': {'depth': 0.2, 'normals': 0.2, 'depth+normals': 0.2, 'full': 0.4},
}


def test_pair_scores_by_hand():
  # depth<->normals: (4 * 0.35 + 4 * 0.30) / 2 = 1.3; depth<->segmentation: (4 * 0.2 + 4 * 0.1) / 2
  # = 0.6; normals<->segmentation: (4 * 0.2 + 4 * 0.15) / 2 = 0.7.
  scores = dict(relations.pair_scores(AFF))
  assert scores[('depth', 'normals')] == pytest.approx(1.3)
  assert scores[('depth', 'segmentation')] == pytest.approx(0.6)
  assert scores[('normals', 'segmentation')] == pytest.approx(0.7)
  assert relations.pair_scores(AFF)[0][0] == ('depth', 'normals')


def test_proposal_wires_depth_normals_and_parses():
  text = relations.propose(AFF, threshold=1.0)
  assert "Experiment.relation_weights = {'depth_normals': 1.000}" in text
  assert 'SegmentationWarpConsistency: skipped' in text  # needs egomotion
  from taskology_tf.training import experiment  # noqa: F401  (registers the relations with gin)

  gin.clear_config()
  try:
    gin.parse_config(text)
    assert gin.query_parameter('DepthNormalsConsistency.normals_task') == 'normals'
  finally:
    gin.clear_config()
  # A threshold above every score proposes no relation.
  assert 'No relation passes' in relations.propose(AFF, threshold=2.0)
