"""Fréchet distance between two sets of features (FID when the features are the FID Inception's).

FID fits a Gaussian to each set (mean μ, covariance Σ) and reports the Fréchet (2-Wasserstein) distance
between the two: ||μ1 − μ2||² + Tr(Σ1) + Tr(Σ2) − 2 Tr((Σ1 Σ2)^½).

* `frechet_distance` computes it from (μ, Σ) with scipy's `sqrtm`, as the reference implementations do, and
  with their safeguards: if the product of two (near-)singular covariances has no finite, essentially real
  square root, 1e-6 is added to both diagonals; the tiny imaginary parts left by round-off are dropped.
* `fid` works on `FeatureStats`, which accumulate features batch by batch, so memory does not grow with the
  number of frames. Both sets large: `frechet_distance`. A set with no more samples than dimensions keeps
  its samples X (centred: A, with Σ = AᵀA / (n − 1)), and then the trace is taken exactly from a small
  matrix instead: the non-zero eigenvalues of Σ Σ' are those of A Σ' Aᵀ / (n − 1), symmetric and n × n, so
  Tr((Σ Σ')^½) is the sum of their square roots. Same value (the sqrtm route agrees to round-off when it
  succeeds), no eps offset, and seconds instead of the ~20–40 s a 2048² `sqrtm` takes on one CPU core.

A covariance of n samples has rank at most n − 1, so with no more samples than feature dimensions (2048 for
Inception pool features) it cannot have full rank; FID is then biased upwards and not comparable with
numbers from larger sets, so `fid` warns.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg

Array = NDArray[np.float64]
EPS = 1e-6
MAX_IMAGINARY = 1e-3


class FewSamplesWarning(UserWarning):
    """A feature set has no more samples than dimensions: its covariance is rank-deficient."""


class FeatureStats:
    """Running mean and covariance of feature vectors, added in batches.

    Sums are taken around the first vector seen (the shifted-data algorithm), which keeps the covariance
    accurate when the features are far from zero. The vectors themselves are kept while there are at most
    `dim` of them (never more memory than the covariance sums), for the exact small-set trace in `fid`.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.n = 0
        self._origin: Array | None = None
        self._sum = np.zeros(dim)
        self._outer = np.zeros((dim, dim))
        self._kept: list[Array] | None = []

    def add(self, features: ArrayLike) -> None:
        """Add (N, dim) feature vectors."""
        x = np.asarray(features, dtype=np.float64).reshape(-1, self.dim)
        if not len(x):
            return
        if self._origin is None:
            self._origin = x[0].copy()
        d = x - self._origin
        self.n += len(x)
        self._sum += d.sum(axis=0)
        self._outer += d.T @ d
        if self._kept is not None and self.n <= self.dim:
            self._kept.append(x.copy())
        else:
            self._kept = None

    @property
    def mean(self) -> Array:
        """Mean vector (needs at least one sample)."""
        if self._origin is None:
            raise ValueError("no features added")
        return self._origin + self._sum / self.n

    @property
    def covariance(self) -> Array:
        """Unbiased (n − 1) covariance, as `np.cov(features, rowvar=False)` (needs at least two samples)."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.n}")
        centred = self._outer - np.outer(self._sum, self._sum) / self.n
        return (centred + centred.T) / (2 * (self.n - 1))

    @property
    def samples(self) -> Array | None:
        """The (n, dim) vectors added, if there are at most `dim` of them; otherwise None."""
        if self._kept is None or not self._kept:
            return None
        return np.concatenate(self._kept)

    @classmethod
    def of(cls, features: ArrayLike) -> FeatureStats:
        """Statistics of one (N, dim) array."""
        x = np.asarray(features, dtype=np.float64)
        stats = cls(x.shape[1])
        stats.add(x)
        return stats


def _sqrtm_product(sigma1: Array, sigma2: Array) -> Array | None:
    """Real (Σ1 Σ2)^½, or None if it is not finite or has a non-negligible imaginary diagonal."""
    root = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(root).all():
        return None
    if np.iscomplexobj(root):
        if np.abs(np.diagonal(root).imag).max() > MAX_IMAGINARY:
            return None
        root = root.real
    return np.asarray(root, dtype=np.float64)


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = EPS
) -> float:
    """Fréchet distance between the Gaussians N(μ1, Σ1) and N(μ2, Σ2), via `scipy.linalg.sqrtm`.

    If (Σ1 Σ2)^½ is not finite or clearly complex (singular covariances), it is recomputed with `eps` added
    to both diagonals; a ValueError is raised if even that fails.
    """
    m1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    m2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (m1.size, m1.size):
        raise ValueError(
            f"mismatched statistics: means {m1.shape}, {m2.shape}; covariances {s1.shape}, {s2.shape}"
        )
    root = _sqrtm_product(s1, s2)
    if root is None:
        offset = np.eye(m1.size) * eps
        root = _sqrtm_product(s1 + offset, s2 + offset)
        if root is None:
            raise ValueError(
                f"the covariance product has no real square root even with {eps:g} added to the diagonals"
            )
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


def trace_sqrt_product(samples: ArrayLike, sigma: ArrayLike) -> float:
    """Tr((Σx Σ)^½) exactly, with Σx the covariance of the (n, d) `samples`: from an n × n eigenproblem."""
    x = np.asarray(samples, dtype=np.float64)
    a = x - x.mean(axis=0)
    small = a @ np.asarray(sigma, dtype=np.float64) @ a.T / (len(x) - 1)
    eigenvalues = np.linalg.eigvalsh((small + small.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def fid(generated: FeatureStats, reference: FeatureStats, eps: float = EPS) -> float:
    """Fréchet distance of two feature sets; warns (`FewSamplesWarning`) if a set has <= dim samples."""
    if generated.dim != reference.dim:
        raise ValueError(f"feature sizes differ: {generated.dim} generated vs {reference.dim} reference")
    sets = {"generated": generated, "reference": reference}
    for name, stats in sets.items():
        if stats.n < 2:
            raise ValueError(f"FID needs at least 2 {name} samples, got {stats.n}")
    few = [f"{stats.n} {name}" for name, stats in sets.items() if stats.n <= stats.dim]
    if few:
        warnings.warn(
            f"only {' and '.join(few)} samples for {generated.dim}-d features: rank-deficient covariance, "
            f"so FID is biased upwards and not comparable with FID over more than {generated.dim} samples",
            FewSamplesWarning,
            stacklevel=2,
        )
    small = [s for s in (generated, reference) if s.samples is not None]
    if not small:
        return frechet_distance(
            generated.mean, generated.covariance, reference.mean, reference.covariance, eps
        )
    factor = min(small, key=lambda s: s.n)
    other = reference if factor is generated else generated
    diff = generated.mean - reference.mean
    samples = factor.samples
    assert samples is not None
    trace_root = trace_sqrt_product(samples, other.covariance)
    return float(
        diff @ diff + np.trace(generated.covariance) + np.trace(reference.covariance) - 2 * trace_root
    )
