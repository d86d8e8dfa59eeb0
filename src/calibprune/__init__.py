"""calibprune: calibration-aware post-training pruning of large language models.

Python API (each CLI command has a twin that takes in-memory objects)::

    import calibprune as cp
    model = cp.load_model(cp.resolve_model("smollm2-135m"))
    tok = cp.load_tokenizer(cp.resolve_model("smollm2-135m"))
    calib = cp.build_calibration("wiki-en", tok, nsamples=32, seqlen=512, seed=0)
    report = cp.prune(model, calib, method="wanda", sparsity=0.5)
    cp.perplexity(model, tok, "wiki-en", seqlen=512)
"""

from .calibration import CalibrationSet, build_calibration
from .config import PruneConfig, RunnerOptions, SparseGPTOptions, SparsityTarget
from .errors import CalibpruneError
from .evaluation import perplexity
from .models.loading import load_model, load_tokenizer, resolve_model
from .pipeline import prune

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
]
