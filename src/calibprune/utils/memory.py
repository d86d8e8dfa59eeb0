"""The memory budget of a run's ``auto`` choices, in one place.

Two things may live on the device: the weights (``--offload``:
:func:`calibprune.models.offload.choose_offload`) and the calibration activations between
blocks (``--activation-store``: :func:`calibprune.models.runner.choose_activation_store`).
Each is put where it *fits*, ``needed <= share x free``, with a share that leaves room for
what the run adds on top:

* the weights take at most ``WEIGHTS_SHARE`` (60 %) of the free memory: the rest holds
  the activations, the layer statistics and SparseGPT's Hessians;
* the activations are sized when the weights are already in place (free memory measured
  then), and take at most ``ACTIVATIONS_SHARE`` (50 %) of it: the rest holds one block's
  forward pass, its statistics and a batch.
"""

from __future__ import annotations

WEIGHTS_SHARE = 0.6
ACTIVATIONS_SHARE = 0.5


def fits(needed: int, free: int, share: float) -> bool:
    """``needed`` bytes fit in ``free`` bytes with ``share`` of them usable."""
    return needed <= share * free
