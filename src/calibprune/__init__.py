"""calibprune: calibration-aware post-training pruning of large language models.

Python API (each CLI command has a twin that takes in-memory objects)::

    import calibprune as cp
    model = cp.load_model(cp.resolve_model("smollm2-135m"))
    tok = cp.load_tokenizer(cp.resolve_model("smollm2-135m"))
    calib = cp.build_calibration("wiki-en", tok, nsamples=32, seqlen=512, seed=0)
    report = cp.prune(model, calib, method="wanda", sparsity=0.5)
    cp.perplexity(model, tok, "wiki-en", seqlen=512)
"""

import importlib

# Exported names -> their module. Imported on first use (PEP 562), so that `import
# calibprune` -- and with it `calibprune --help` -- does not pay for torch and transformers.
_EXPORTS = {
    "CalibrationSet": ".calibration",
    "build_calibration": ".calibration",
    "PruneConfig": ".config",
    "RunnerOptions": ".config",
    "SparseGPTOptions": ".config",
    "SparsityTarget": ".config",
    "CalibpruneError": ".errors",
    "perplexity": ".evaluation",
    "load_model": ".models.loading",
    "load_tokenizer": ".models.loading",
    "resolve_model": ".models.loading",
    "prune": ".api",
    "save_pruned": ".api",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'calibprune' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


__version__ = "0.1.0"

__all__ = [
    "CalibpruneError",
    "CalibrationSet",
    "PruneConfig",
    "RunnerOptions",
    "SparseGPTOptions",
    "SparsityTarget",
    "build_calibration",
    "load_model",
    "load_tokenizer",
    "perplexity",
    "prune",
    "resolve_model",
    "save_pruned",
]
