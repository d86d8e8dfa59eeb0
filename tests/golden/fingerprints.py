"""A fingerprint of every algorithm's output on tiny deterministic fixtures, and the check
that an output never moves without a revision bump (see calibprune.experiments.revisions).

A fingerprint is a small JSON tree: exact values where the output is discrete (a mask,
token windows, keep flags: hashed), floats where it is continuous (weights, scores,
perplexities: a few sums and fixed random projections, compared with a relative
tolerance of :data:`REL_TOL`). Float noise moves no discrete value and far less than the
tolerance; a real change (another score rule, another window, another update) moves a
hash or a projection far beyond it.

``FINGERPRINTS`` maps each algorithm name to the function that computes its fingerprint;
a new algorithm needs one here (the test says so), then ``python tests/golden/update.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "revisions.json"
REL_TOL = 1e-5
ABS_TOL = 1e-7
UPDATE = "python tests/golden/update.py"

sys.path.insert(0, str(HERE.parent))  # conftest's tiny models and byte tokenizer
from conftest import byte_tokenizer, tiny_model  # noqa: E402

# --- fixtures ---------------------------------------------------------------------------


def _words(i: int) -> str:
    animals = ["fox", "dog", "cat", "owl", "eel", "yak", "bee"]
    return " ".join(f"{animals[(i * j) % 7]}{(i + j) % 10}" for j in range(1, 6 + i % 9))


class GoldenCorpus:
    """80 fixed documents of 40-110 bytes, in memory (a local file's split would depend on its path)."""

    @staticmethod
    def make(sampling: str = "stream"):
        from calibprune.corpora.base import Corpus, Document

        class _Corpus(Corpus):
            name = "golden"

            def _all_documents(self):
                for i in range(80):
                    yield Document(str(i), f"Document {i}: {_words(i)}. The end of {i}.")

        corpus = _Corpus()
        corpus.sampling = sampling
        return corpus


def _calibration():
    from calibprune.calibration import CalibrationSet

    ids = torch.randint(0, 256, (8, 16), generator=torch.Generator().manual_seed(1))
    return CalibrationSet(input_ids=ids, manifest={"source": "golden"})


def _quiet_threads():
    torch.set_num_threads(1)


# --- summaries --------------------------------------------------------------------------


def _sig(x: float) -> float:
    return float(f"{x:.10g}")


def digest_of(obj) -> str:
    """sha256 of exact data: a bool/int tensor's bytes, or JSON."""
    if isinstance(obj, torch.Tensor):
        data = obj.detach().cpu().contiguous().numpy().tobytes() + str(tuple(obj.shape)).encode()
    else:
        data = json.dumps(obj, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def projections(t: torch.Tensor, k: int = 3) -> list[float]:
    """sum |t| and ``k`` fixed random projections of a float tensor: moved by any real change."""
    t = t.detach().double().cpu().reshape(-1)
    out = [_sig(float(t.abs().sum()))]
    for i in range(k):
        r = torch.randn(t.numel(), generator=torch.Generator().manual_seed(1000 + i), dtype=torch.float64)
        out.append(_sig(float((t * r).sum())))
    return out


def floats(values) -> list[float | None]:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else _sig(float(v)) for v in values]


# --- pruning ----------------------------------------------------------------------------


def _pruned(config, calibrated: bool = True) -> dict:
    from calibprune.models.layers import LayerSelection, all_block_layers, weight_matrix
    from calibprune.pruning.engine import prune_model

    _quiet_threads()
    model = tiny_model("llama")
    report = prune_model(model, _calibration() if calibrated else None, config, progress=False)
    layers = all_block_layers(model, LayerSelection(config.targets, config.ignore))
    weights = [weight_matrix(layers[n]).detach() for n in sorted(layers)]
    masks = torch.cat([(w == 0).reshape(-1) for w in weights])
    return {
        "mask": digest_of(masks),
        "pruned": int(masks.sum()),
        "weights": projections(torch.cat([w.reshape(-1) for w in weights])),
        "sparsity": _sig(report["summary"]["sparsity_pruned_layers"]),
    }


def _config(method: str, pattern: str, **kw):
    from calibprune.config import PruneConfig, RunnerOptions, SparsityTarget

    target = SparsityTarget.nm(*map(int, pattern.split(":"))) if ":" in pattern else SparsityTarget.unstructured(0.5)
    return PruneConfig(method, target, runner=RunnerOptions(batch_size=2, activation_store="memory"), **kw)


def method_fingerprint(name: str) -> Callable[[], dict]:
    def compute() -> dict:
        from calibprune.pruning.catalog import needs_calibration

        out = {}
        for pattern in ("50%", "2:4"):
            config = _config(name, pattern)
            out[pattern] = _pruned(config, needs_calibration(config))
        return out

    return compute


def dsnot() -> dict:
    return {pattern: _pruned(_config("wanda", pattern, refine="dsnot")) for pattern in ("50%", "4:8")}


def _allocation(name: str, **options) -> dict:
    from calibprune.config import OWLOptions
    from calibprune.pruning.allocation import get_allocation

    _quiet_threads()
    out = {}
    for pattern, owl in (("50%", OWLOptions(lam=0.08)), ("4:8", OWLOptions(mixed_nm=True))):
        if name == "uniform" and pattern == "4:8":
            owl = OWLOptions()
        config = _config("wanda", pattern, allocation=name, owl=owl)
        targets, info = get_allocation(name).allocate(tiny_model("llama"), _calibration(), config, progress=False)
        out[pattern] = {
            "targets": {str(i): t.describe() for i, t in sorted(targets.items())},
            "ratios": [_sig(t.ratio) for _, t in sorted(targets.items())],
            "outlier_ratios": floats((info.get("outlier_ratios") or {}).values()),
        }
    return out


# --- calibration ------------------------------------------------------------------------


def _set_summary(calib) -> dict:
    out = {"windows": digest_of(calib.input_ids), "shape": list(calib.input_ids.shape)}
    for key in ("pool_tokens", "duplicated_token_share"):
        if key in calib.manifest:
            out[key] = calib.manifest[key] if isinstance(calib.manifest[key], int) else _sig(calib.manifest[key])
    return out


def sample() -> dict:
    from calibprune.calibration import sample_windows

    tokenizer = byte_tokenizer()
    out = {}
    for mode, windows in (("stream", "disjoint"), ("stream", "random"), ("document", "disjoint")):
        calib = sample_windows(GoldenCorpus.make(), tokenizer, 4, 24, 3, mode=mode, windows=windows)
        out[f"{mode}/{windows}"] = _set_summary(calib)
    return out


def synthetic() -> dict:
    from calibprune.calibration import GenerationOptions, build_synthetic

    _quiet_threads()
    options = GenerationOptions(
        prefix_tokens=3, temperature=0.7, max_new_tokens=12, batch_size=4, num_texts=10, filter_top=0.2
    )
    calib = build_synthetic(
        tiny_model("llama"), byte_tokenizer(), GoldenCorpus.make(), 2, 16, 0, options, progress=False
    )
    texts = calib.texts
    return {
        "set": _set_summary(calib),
        "texts": digest_of([t["text"] for t in texts]),
        "keep": digest_of([bool(t["keep"]) for t in texts]),
        "perplexity": floats(t["perplexity"] for t in texts),
    }


def detect() -> dict:
    from calibprune.calibration import build_detected

    _quiet_threads()
    calib = build_detected(
        tiny_model("llama"), byte_tokenizer(), GoldenCorpus.make(), 2, 16, 0, 0.5, 0.2, 20, progress=False
    )
    return {
        "set": _set_summary(calib),
        "candidates": digest_of([t["source_id"] for t in calib.texts]),
        "keep": digest_of([bool(t["keep"]) for t in calib.texts]),
        "scores": floats(t["mink++"] for t in calib.texts),
    }


# --- scoring, evaluation, analysis ------------------------------------------------------


def _sequences() -> list[list[int]]:
    g = torch.Generator().manual_seed(7)
    return [torch.randint(0, 256, (n,), generator=g).tolist() for n in (1, 2, 5, 17, 40)]


def scoring() -> dict:
    from calibprune.scoring import score_text

    _quiet_threads()
    scores = score_text(tiny_model("llama"), _sequences(), ("ppl", "mink", "mink++"), k=0.2, max_batch_size=2)
    return {kind: floats(values) for kind, values in sorted(scores.items())}


def perplexity_fingerprint(protocol: str) -> Callable[[], dict]:
    def compute() -> dict:
        from calibprune.evaluation.perplexity import perplexity

        _quiet_threads()
        result = perplexity(
            tiny_model("llama"), byte_tokenizer(), GoldenCorpus.make(), 24, 5, 2, "all", protocol, progress=False
        )
        return {k: _sig(v) if isinstance(v, float) else v for k, v in sorted(result.items())}

    return compute


def tasks() -> dict:
    from calibprune.evaluation.harness import InMemoryLM, evaluate_tasks

    _quiet_threads()
    model, tokenizer = tiny_model("llama"), byte_tokenizer()

    class _Request:
        def __init__(self, args):
            self.args = args

    pairs = [("The sky is", " blue"), ("The sky is", " green"), ("Two plus two is", " four"), ("A", " b")]
    out = {}
    for path in ("shared-prefix", "plain"):
        lm = InMemoryLM(model, tokenizer, progress=False, scoring=path)
        out[path] = floats(value for value, _ in lm.loglikelihood([_Request(p) for p in pairs], disable_tqdm=True))
    result = evaluate_tasks(model, tokenizer, ["boolq", "piqa", "hellaswag", "arc_easy"], limit=3, progress=False)
    out["tasks"] = {
        name: {m: _sig(row[m]) for m in ("acc", "acc_norm") if row.get(m) is not None}
        for name, row in sorted(result["tasks"].items())
    }
    return out


def _text_sets():
    from calibprune.analysis.sets import TextSet

    corpus = GoldenCorpus.make()
    texts = corpus.texts("all")
    return (
        TextSet("a", texts[:10]),
        TextSet("b", [t.upper() for t in texts[40:50]] + texts[5:8]),
        TextSet("ref", texts[:30]),
    )


def similarity() -> dict:
    from calibprune.analysis.similarity import similarity_report

    a, b, ref = _text_sets()
    report = similarity_report([a, b], ref, n=2, num_perm=64, seed=0)
    return {
        "matrix": [floats(row) for row in report["matrix"]],
        "ngrams": report["ngrams"],
        "containment": {
            k: {m: v if isinstance(v, int) else _sig(v) for m, v in sorted(c.items()) if m != "per_text"}
            for k, c in sorted(report["containment"].items())
        },
        "near_duplicates": {k: _sig(v) for k, v in sorted(report["lsh_near_duplicate_share"].items())},
    }


def membership() -> dict:
    from calibprune.analysis.membership import membership_scores, summarize

    _quiet_threads()
    a, b, _ = _text_sets()
    scores = membership_scores(tiny_model("llama"), byte_tokenizer(), [a, b], k=0.2, max_tokens=24, progress=False)
    return {
        name: {
            kind: {k: _sig(v) if isinstance(v, float) else v for k, v in summarize(values).items()}
            for kind, values in sorted(per.items())
        }
        for name, per in sorted(scores.items())
    }


FINGERPRINTS: dict[str, Callable[[], dict]] = {
    **{f"method/{m}": method_fingerprint(m) for m in ("magnitude", "wanda", "ria", "sparsegpt", "admm")},
    "refine/dsnot": dsnot,
    "allocation/uniform": lambda: _allocation("uniform"),
    "allocation/owl": lambda: _allocation("owl"),
    "calib/sample": sample,
    "calib/synthetic": synthetic,
    "calib/detect": detect,
    "scoring": scoring,
    "ppl/concat-windows": perplexity_fingerprint("concat-windows"),
    "ppl/per-example": perplexity_fingerprint("per-example"),
    "tasks": tasks,
    "analysis/similarity": similarity,
    "analysis/membership": membership,
}


# --- the check --------------------------------------------------------------------------


def environment() -> dict:
    import transformers

    return {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}


def _is_float(x) -> bool:
    return isinstance(x, float) and not isinstance(x, bool)


def same(a, b, scale: float = 0.0) -> bool:
    """Equal trees, floats within REL_TOL (ints, strings, hashes exact).

    A list of floats is a vector (a tensor's projections, per-layer ratios): its entries are
    compared at the vector's scale, |a_i - b_i| <= REL_TOL * max(|a_i|, max_j |a_j|). An
    entry that happens to be near zero (a projection of -0.107 beside a sum of 5055) carries
    the absolute float noise of the whole sum, which an entry-wise relative tolerance would
    read as a change: it did, between two CPUs, on SparseGPT's 2:4 weights.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        vector = max((abs(x) for x in a if _is_float(x)), default=0.0)
        return len(a) == len(b) and all(same(x, y, vector) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
            return a == b
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=max(ABS_TOL, REL_TOL * scale))
    return a == b


def compute(names=None) -> dict[str, dict]:
    return {name: FINGERPRINTS[name]() for name in (names or FINGERPRINTS)}


def load_golden() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {"algorithms": {}}


def problems(golden: dict, fingerprints: dict[str, dict], known=None) -> list[str]:
    """What is wrong between the golden file, today's revisions and today's fingerprints
    (only the algorithms in ``fingerprints`` are compared); empty when all agree."""
    from calibprune.experiments.revisions import algorithms, closure

    known = known or algorithms()
    recorded = golden.get("algorithms", {})
    out = []
    for name in sorted(set(known) - set(FINGERPRINTS)):
        out.append(f"algorithm {name} has no fingerprint: add one to tests/golden/fingerprints.py, then run `{UPDATE}`")
    for name in sorted(set(recorded) - set(known)):
        out.append(f"tests/golden/revisions.json records {name}, which no longer exists: run `{UPDATE}`")
    for name in sorted(fingerprints):
        if name not in known:
            continue
        algo = known[name]
        entry = recorded.get(name)
        if entry is None:
            out.append(f"algorithm {name} is not in tests/golden/revisions.json: run `{UPDATE}`")
            continue
        if entry["revision"] != algo.revision:
            out.append(
                f"algorithm {name}'s revision is {algo.revision} in {algo.file} but tests/golden/revisions.json "
                f"records {entry['revision']}: run `{UPDATE}`"
            )
            continue
        if not same(entry["fingerprint"], fingerprints[name]):
            used = sorted(closure(algo.uses, known))
            if any(u in recorded and recorded[u]["revision"] != known[u].revision for u in used):
                continue  # it calls an algorithm whose bump is not recorded yet: that one's message says so
            also = f" (or, if the change is in what it uses, that one's: {', '.join(used)})" if used else ""
            out.append(
                f"algorithm {name}'s output changed: bump its revision in {algo.file}{also} and update "
                f"tests/golden/revisions.json (run `{UPDATE}`)"
            )
    if out and golden.get("environment") and golden["environment"] != environment():
        out.append(
            f"(the golden file was made with {golden['environment']}, this is {environment()}: if every "
            f"fingerprint moved at once, the fixture did, not the algorithms: `{UPDATE} --fixture-changed`)"
        )
    return out
