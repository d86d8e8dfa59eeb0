"""calibprune: calibration-aware post-training pruning of large language models.

Python API (each CLI command has a twin that takes in-memory objects)::

    import calibprune as cp
    model = cp.load_model(cp.resolve_model("smollm2-135m"))
    tok = cp.load_tokenizer(cp.resolve_model("smollm2-135m"))
    calib = cp.build_calibration("wiki-en", tok, nsamples=32, seqlen=512, seed=0)
    report = cp.prune(model, calib, method="wanda", sparsity=0.5)
    cp.perplexity(model, tok, "wiki-en", seqlen=512)
"""

from .utils.lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


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
