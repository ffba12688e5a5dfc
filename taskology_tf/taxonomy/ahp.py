"""Taskonomy's normalisation of transfer performance: win rates and AHP (Zamir et al. 2018, Sec. 3.3).

For one target, with M transfers (sources or sets of sources) scored per test image:
  W[i, j] = fraction of test images on which transfer i beats transfer j (ties count 1/2),
  clipped to [0.001, 0.999]; W' = W / W^T (element-wise), a reciprocal matrix
  (W'[j, i] = 1 / W'[i, j]); its principal eigenvector, normalised to sum 1, is the vector of
  normalised affinities of the transfers onto that target (the Analytic Hierarchy Process).
Gain and Quality are win rates against two references: a network trained from scratch on the
transfer data (Gain) and the fully supervised network (Quality).
"""

from typing import Sequence

import numpy as np

CLIP = (0.001, 0.999)


def win_rate(losses_a: np.ndarray, losses_b: np.ndarray) -> float:
  """Fraction of images where a's loss is lower than b's (ties 1/2). losses: [N] per image."""
  a, b = np.asarray(losses_a, np.float64), np.asarray(losses_b, np.float64)
  if a.shape != b.shape or a.ndim != 1 or a.size == 0:
    raise ValueError(
        f'win_rate: per-image losses must be two equal [N] arrays, got {a.shape}, {b.shape}'
    )
  return float(np.mean((a < b) + 0.5 * (a == b)))


def win_rate_matrix(losses: np.ndarray) -> np.ndarray:
  """W [M, M] from per-image losses [M, N]: W[i, j] = win rate of transfer i over transfer j."""
  losses = np.asarray(losses, np.float64)
  if losses.ndim != 2:
    raise ValueError(f'win_rate_matrix: losses must be [M transfers, N images], got {losses.shape}')
  a, b = losses[:, None, :], losses[None, :, :]
  return np.mean((a < b) + 0.5 * (a == b), axis=-1)


def reciprocal_matrix(w: np.ndarray) -> np.ndarray:
  """W' = W / W^T after clipping W to [0.001, 0.999]."""
  w = np.clip(np.asarray(w, np.float64), *CLIP)
  return w / w.T


def principal_eigenvector(matrix: np.ndarray) -> np.ndarray:
  """The positive principal eigenvector of a positive matrix, normalised to sum 1 (Perron)."""
  matrix = np.asarray(matrix, np.float64)
  if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
    raise ValueError(f'principal_eigenvector: need a square matrix, got {matrix.shape}')
  if np.any(matrix <= 0):
    raise ValueError('principal_eigenvector: AHP needs a positive matrix (clip W first)')
  values, vectors = np.linalg.eig(matrix)
  v = np.abs(np.real(vectors[:, int(np.argmax(np.real(values)))]))
  return v / v.sum()


def ahp_affinities(losses: np.ndarray) -> np.ndarray:
  """Normalised affinities [M] of M transfers onto one target from per-image losses [M, N]."""
  return principal_eigenvector(reciprocal_matrix(win_rate_matrix(losses)))


def gain_and_quality(
    transfer_losses: Sequence[float], scratch_losses: Sequence[float], full_losses: Sequence[float]
):
  """(Gain, Quality): win rates of a transfer over scratch training and over full supervision."""
  return win_rate(transfer_losses, scratch_losses), win_rate(transfer_losses, full_losses)
