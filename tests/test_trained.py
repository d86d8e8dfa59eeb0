"""The tiny-known model's trainer (calibprune.models.trained): deterministic, resumable,
a plain Hugging Face folder, and trained on exactly the documented calibration pools."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from calibprune.corpora import Corpus, Document
from calibprune.corpora.base import document_split
from calibprune.errors import CalibpruneError, MissingAssetError
from calibprune.models import trained

WORDS = (
    "the of and to in is was for on that with as by at from his her an which were are this be it had or not but "
    "def return self import class if else for while none true false print value list dict key item"
).split()


class Synthetic(Corpus):
    """Seeded pseudo-text, enough for a 300-token BPE and a few dozen windows."""

    def __init__(self, name: str, docs: int = 40):
        self.name, self.docs = name, docs

    def _all_documents(self):
        rng = random.Random(self.name)
        for i in range(self.docs):
            yield Document(id=f"{self.name}-{i}", text=" ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 80))))

    def version(self):
        return f"synthetic:{self.name}:{self.docs}"


CORPORA = {"a": Synthetic("a"), "b": Synthetic("b"), "held": Synthetic("held")}


def _config(**overrides):
    return trained.tiny_config(mix=(("a", None), ("b", 1500)), eval_corpora=("held",), **overrides)


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _same(left, right):
    assert left.keys() == right.keys()
    return all(torch.equal(left[k], right[k]) for k in left)


def test_two_runs_with_one_seed_give_bit_identical_weights_and_another_seed_does_not(tmp_path):
    first = trained.train(tmp_path / "one", _config(), corpora=CORPORA)
    second = trained.train(tmp_path / "two", _config(), corpora=CORPORA)
    other = trained.train(tmp_path / "three", _config(seed=1), corpora=CORPORA)
    assert _same(_weights(first), _weights(second))
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    assert not _same(_weights(first), _weights(other))
    one, two = (json.loads((f / trained.MANIFEST).read_text()) for f in (first, second))
    assert one["loss_curve"] == two["loss_curve"] and len(one["loss_curve"]) == 6


def test_a_killed_run_resumes_from_its_checkpoint_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    whole = trained.train(tmp_path / "whole", _config(), corpora=CORPORA)

    save = trained._save_checkpoint

    def killed_at_step_4(work, model, optimizer, state):
        if state["step"] == 4:
            raise KeyboardInterrupt  # killed while writing the step-4 checkpoint: step 2's is the last one
        save(work, model, optimizer, state)

    monkeypatch.setattr(trained, "_save_checkpoint", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        trained.train(tmp_path / "resumed", _config(), corpora=CORPORA)
    partial = trained.partial_folder(tmp_path / "resumed")
    assert json.loads((partial / "checkpoint" / "state.json").read_text())["step"] == 2
    assert not (tmp_path / "resumed").exists()
    monkeypatch.setattr(trained, "_save_checkpoint", save)

    assert trained.train(tmp_path / "resumed", _config(), corpora=CORPORA, stop_after=1) is None  # steps 3, stop
    resumed = trained.train(tmp_path / "resumed", _config(), corpora=CORPORA)  # steps 4-6
    assert _same(_weights(whole), _weights(resumed))
    manifests = [json.loads((f / trained.MANIFEST).read_text()) for f in (whole, resumed)]
    assert manifests[0]["loss_curve"] == manifests[1]["loss_curve"]
    assert not partial.exists()


def test_a_partial_run_of_other_settings_and_an_existing_output_are_refused(tmp_path):
    assert trained.train(tmp_path / "m", _config(), corpora=CORPORA, stop_after=2) is None
    with pytest.raises(CalibpruneError, match="partial run of other settings"):
        trained.train(tmp_path / "m", _config(seed=3), corpora=CORPORA)
    (tmp_path / "other").mkdir()
    with pytest.raises(CalibpruneError, match="already exists"):
        trained.train(tmp_path / "other", _config(), corpora=CORPORA)


def test_the_folder_loads_with_plain_transformers_and_its_manifest_names_the_mix(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from calibprune.models.loading import resolve_model

    folder = trained.train(tmp_path / "m", _config(), corpora=CORPORA)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 2
    ids = tokenizer("the value of", return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape[-1] == len(tokenizer)
    assert tokenizer.eos_token == trained.EOT and tokenizer("a b")["input_ids"] == tokenizer.encode(
        "a b", add_special_tokens=False
    )
    assert resolve_model(str(folder)) == str(folder)

    manifest = json.loads((folder / trained.MANIFEST).read_text())
    assert [m["corpus"] for m in manifest["mix"]] == ["a", "b"] and manifest["not_trained_on"] == ["held"]
    assert {m["pool"] for m in manifest["mix"]} == {"calib"}
    assert manifest["platform"]["torch_threads"] == 1 and manifest["platform"]["packages"]["torch"]
    assert set(manifest["heldout_perplexity"]) == {"a", "b", "held"}
    documents = json.loads((folder / trained.DOCUMENTS).read_text())
    calib_a = {d.id for d in CORPORA["a"].documents("calib")}
    assert set(documents["a"]) == calib_a  # quota None: the whole calibration pool
    assert set(documents["b"]) <= {d.id for d in CORPORA["b"].documents("calib")}
    assert manifest["mix"][0]["documents"] == len(calib_a)


def test_the_preset_is_refused_with_the_training_command_until_trained(tmp_path, monkeypatch):
    from calibprune.models.loading import resolve_model
    from calibprune.models.presets import PRESETS

    monkeypatch.setenv("CALIBPRUNE_CACHE", str(tmp_path))
    assert not PRESETS["tiny-known"].installed()
    with pytest.raises(MissingAssetError, match="run `calibprune train-reference`"):
        resolve_model("tiny-known")


def _installed(*names):
    from calibprune.corpora import get_corpus
    from calibprune.corpora.stats import availability

    return all(availability(get_corpus(n)) == "ready" for n in names)


@pytest.mark.skipif(
    not _installed("wiki-en", "pycode", "gcide", *trained.UNLIKE),
    reason="needs the offline corpora (calibprune corpora --install)",
)
def test_the_full_mix_is_exactly_the_documented_calibration_pools():
    from calibprune.corpora import get_corpus

    documents = trained.select_documents(trained.FULL)
    assert list(documents) == ["wiki-en", "pycode", "gcide"]
    assert not set(documents) & set(trained.UNLIKE)
    for name, docs in documents.items():
        assert all(document_split(name, d.id) == "calib" for d in docs), name
    assert {d.id for d in documents["wiki-en"]} == {d.id for d in get_corpus("wiki-en").documents("calib")}
    for name, quota in trained.FULL.mix[1:]:
        chars = sum(len(d.text) for d in documents[name])
        assert quota <= chars < quota + max(len(d.text) for d in documents[name])
    texts = {d.text for docs in documents.values() for d in docs}
    for name in trained.UNLIKE:
        assert not texts & set(get_corpus(name).texts("all")), name
    shared = trained.shared_ngram_documents(documents, ("jargon", "fortunes"))
    assert shared == {"jargon": 0, "fortunes": 0}  # the evaluation corpora share no 10-word run with the training text
