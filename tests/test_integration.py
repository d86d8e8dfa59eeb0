"""The real bundled model, kept short: two blocks, two short samples."""

import json

import pytest
from conftest import run_cli

pytestmark = pytest.mark.integration


def _cli(*args):
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_sparsegpt_24_on_two_blocks_of_smollm2_then_eval(tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sgpt24"
    _cli(
        "prune",
        "--model",
        "smollm2-135m",
        "--method",
        "sparsegpt",
        "--pattern",
        "2:4",
        "--nsamples",
        "2",
        "--seqlen",
        "64",
        "--targets",
        "model.layers.0.*,model.layers.1.*",
        "--ppl",
        "wiki-en",
        "--ppl-seqlen",
        "64",
        "--ppl-max-windows",
        "3",
        "--output",
        str(out),
        "--quiet",
    )
    report = json.loads((out / "prune_report.json").read_text())
    assert report["model"]["architecture"] == "LlamaForCausalLM"
    assert report["summary"]["layers_pruned"] == 14  # 7 linear layers x 2 blocks
    assert report["summary"]["nm_conformance_min"] == 1.0
    dense_ppl = report["perplexity"]["dense"]["wiki-en"]["ppl"]
    pruned_ppl = report["perplexity"]["pruned"]["wiki-en"]["ppl"]
    assert 1 < dense_ppl < pruned_ppl < 10 * dense_ppl

    model = AutoModelForCausalLM.from_pretrained(out)
    q = model.model.layers[1].self_attn.q_proj.weight
    assert (q.view(q.shape[0], -1, 4) == 0).sum(-1).min() >= 2
    assert (model.model.layers[2].self_attn.q_proj.weight != 0).float().mean() > 0.95  # untouched block

    _cli(
        "eval",
        "--model",
        str(out),
        "--ppl",
        "wiki-en",
        "--ppl-seqlen",
        "64",
        "--ppl-max-windows",
        "3",
        "--output",
        str(tmp_path / "eval.json"),
        "--quiet",
    )
    evaluated = json.loads((tmp_path / "eval.json").read_text())["perplexity"]["wiki-en"]
    assert evaluated["ppl"] == pytest.approx(pruned_ppl, rel=1e-4)
    assert evaluated["protocol"] == "concat-windows" and evaluated["seqlen"] == 64


def test_models_command_lists_presets():
    done = _cli("models", "--json")
    rows = {row["preset"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {"smollm2-135m", "gemma3-270m", "tiny-known"}
    assert rows["smollm2-135m"]["installed"] is True
    assert rows["tiny-known"]["trained_here"] is True and "calibprune train-reference" in rows["tiny-known"]["install"]


def test_synthetic_and_detected_sets_on_smollm2_then_prune_from_a_set(tmp_path):
    syn, det = tmp_path / "syn", tmp_path / "det"
    _cli(
        "calib",
        "--synthetic",
        "--source",
        "wiki-en",
        "--prefix-tokens",
        "2",
        "--temperature",
        "0.6",
        "--filter-top",
        "0.2",
        "--nsamples",
        "2",
        "--seqlen",
        "32",
        "--num-texts",
        "5",
        "--gen-batch-size",
        "5",
        "--model",
        "smollm2-135m",
        "--output",
        str(syn),
        "--quiet",
    )
    manifest = json.loads((syn / "manifest.json").read_text())
    assert manifest["strategy"] == "synthetic" and manifest["filter"] == {**manifest["filter"], "texts": 5, "kept": 4}
    assert manifest["parameters"]["temperature"] == 0.6 and manifest["parameters"]["prefix_tokens"] == 2
    _cli(
        "calib",
        "--detect",
        "mink++",
        "--source",
        "wiki-en",
        "--keep-top",
        "0.5",
        "--num-candidates",
        "20",
        "--nsamples",
        "2",
        "--seqlen",
        "32",
        "--model",
        "smollm2-135m",
        "--output",
        str(det),
        "--quiet",
    )
    assert json.loads((det / "manifest.json").read_text())["filter"]["kept"] == 10
    _cli(
        "prune",
        "--model",
        "smollm2-135m",
        "--calib",
        str(syn),
        "--method",
        "wanda",
        "--sparsity",
        "0.6",
        "--targets",
        "model.layers.0.*",
        "--output",
        str(tmp_path / "x"),
        "--quiet",
    )
    report = json.loads((tmp_path / "x" / "prune_report.json").read_text())
    assert report["calibration"]["strategy"] == "synthetic" and report["calibration"]["nsamples"] == 2


# Fingerprints of the windows these arguments gave before the token-stream cache
# (computed with the code of main at d41494e, which tokenized the pool on every run).
WINDOWS_BEFORE_THE_CACHE = {
    (32, 512, 0, "disjoint"): "f8d35a3a410c2f0c",
    (8, 128, 3, "random"): "e3d67e74a7c1ca56",
}


def test_sampled_windows_are_bit_identical_to_those_before_the_token_cache(tmp_path, monkeypatch):
    from calibprune.calibration import build_calibration
    from calibprune.corpora import tokens
    from calibprune.models.loading import load_tokenizer, resolve_model

    monkeypatch.setattr(tokens, "_folder", lambda: tmp_path)
    tokenizer = load_tokenizer(resolve_model("smollm2-135m"))
    for attempt in ("cold", "warm"):  # tokenized and written, then read back
        for (nsamples, seqlen, seed, windows), fingerprint in WINDOWS_BEFORE_THE_CACHE.items():
            calib = build_calibration("wiki-en", tokenizer, nsamples, seqlen, seed, windows=windows)
            assert calib.fingerprint == fingerprint, (attempt, nsamples, seqlen, seed, windows)
        assert len(list(tmp_path.glob("wiki-en-*.calib.*.npy"))) == 1
