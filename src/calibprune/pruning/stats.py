"""Per-layer input statistics, accumulated as fp32 running sums.

For a linear layer with input rows x (one per token, width d_in), the methods need:

* ``sq``   — s_j = sum_t x_tj^2       (Wanda's ||X_j||_2^2, DSnoT's variance)
* ``sum``  — u_j = sum_t x_tj         (DSnoT's mean)
* ``xxt``  — G = sum_t x_t x_t^T      (SparseGPT's Hessian H = 2 G / n)

Only these sums are kept, never the activations, so memory is independent of the
number of calibration tokens n. When ``xxt`` is kept, ``sq`` is its diagonal.
"""

from __future__ import annotations

import torch

KINDS = frozenset({"sq", "sum", "xxt"})


class InputStatistics:
    def __init__(self, width: int, needs: frozenset[str]):
        unknown = set(needs) - KINDS
        if unknown:
            raise ValueError(f"unknown statistics {sorted(unknown)}; known: {sorted(KINDS)}")
        self.width = width
        self.needs = frozenset(needs)
        self.n = 0
        self._xxt = torch.zeros(width, width, dtype=torch.float32) if "xxt" in needs else None
        self._sq = torch.zeros(width, dtype=torch.float32) if "sq" in needs and self._xxt is None else None
        self._sum = torch.zeros(width, dtype=torch.float32) if "sum" in needs else None

    def update(self, x: torch.Tensor) -> None:
        rows = x.reshape(-1, self.width).float()
        self.n += rows.shape[0]
        if self._xxt is not None:
            self._xxt.addmm_(rows.t(), rows)
        if self._sq is not None:
            self._sq += (rows * rows).sum(0)  # 7x faster than vector_norm(dim=0) on CPU
        if self._sum is not None:
            self._sum += rows.sum(0)

    # -- derived quantities ---------------------------------------------------------
    @property
    def sum_sq(self) -> torch.Tensor:
        return torch.diagonal(self._xxt).clone() if self._xxt is not None else self._sq

    @property
    def mean(self) -> torch.Tensor:
        return self._sum / max(self.n, 1)

    @property
    def mean_sq(self) -> torch.Tensor:
        return self.sum_sq / max(self.n, 1)

    @property
    def variance(self) -> torch.Tensor:
        """Population variance per input column, E[x^2] - E[x]^2, clamped at 0."""
        return (self.mean_sq - self.mean.square()).clamp_min(0)

    @property
    def col_norm(self) -> torch.Tensor:
        """||X_j||_2 / sqrt(n): Wanda's activation norm (the 1/sqrt(n) does not change ranks)."""
        return self.mean_sq.sqrt()

    @property
    def hessian(self) -> torch.Tensor:
        """H = 2 X X^T / n, as in SparseGPT."""
        return self._xxt * (2.0 / max(self.n, 1))


class StatisticsCollector:
    """``on_input`` callback for :meth:`BlockStep.observe`: one accumulator per leader."""

    def __init__(self, needs: frozenset[str]):
        self.needs = frozenset(needs)
        self.stats: dict[str, InputStatistics] = {}

    def __call__(self, leader: str, x: torch.Tensor) -> None:
        if leader not in self.stats:
            self.stats[leader] = InputStatistics(x.shape[-1], self.needs)
        self.stats[leader].update(x)
