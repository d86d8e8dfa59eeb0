"""Self-generation, perplexity filter, detection, calibration-set folders."""

import json

import pytest
import torch
from conftest import tiny_model

from calibprune.calibration import CalibrationSet, DetectOptions, GenerationOptions, build_detected, build_synthetic
from calibprune.calibration.filters import drop_above_percentile, keep_top_fraction
from calibprune.calibration.generation_progress import GenerationProgress
from calibprune.config import PruneConfig, SparsityTarget
from calibprune.corpora import get_corpus
from calibprune.errors import CalibpruneError
from calibprune.jobs.calibrate import CalibJob, run_calib
from calibprune.jobs.prune import run_prune
from calibprune.jobs.requests import CalibrationRequest
from calibprune.models.loading import tokenize

OPTIONS = GenerationOptions(
    prefix_tokens=3, temperature=0.7, max_new_tokens=12, batch_size=4, num_texts=10, filter_top=0.2
)


def test_perplexity_filter_is_the_papers_percentile_rule():
    # sample_ppl.py: keep ppl < np.percentile(ppl, 80) (linear interpolation)
    # 13 texts: the 80th percentile lies between the 10th and 11th smallest -> 10 kept (not 13 - floor(2.6) = 11)
    scores = [float(v) for v in [7, 3, 11, 1, 9, 13, 2, 5, 12, 4, 8, 6, 10]]
    keep = drop_above_percentile(scores, 0.2)
    assert sum(keep) == 10 and all(s <= 10 for s, k in zip(scores, keep, strict=True) if k)
    assert drop_above_percentile([1, 2, 3, 4, 5], 0.2) == [True, True, True, True, False]  # t = 4.2
    assert drop_above_percentile([5, 5, 5, 1], 0.5) == [False, False, False, True]  # t = 5: ties at t are dropped
    assert drop_above_percentile([float("nan"), 9, 1, 3], 0.34) == [False, False, True, True]  # NaN always dropped
    assert drop_above_percentile([3, 1, 2], 0.0) == [True, True, True]
    assert keep_top_fraction([0.1, 0.9, 0.5, float("nan")], 0.5) == [False, True, True, False]
    assert keep_top_fraction([1, 2, 3], 1.0) == [True, True, True]
    with pytest.raises(
        CalibpruneError, match=r"^generation.filter_top 1.0 must be in \[0, 1\)"
    ):  # Python: the keyword path
        drop_above_percentile([1.0], 1.0)
    with pytest.raises(CalibpruneError, match=r"^keep_top 0 must be in \(0, 1\]"):
        keep_top_fraction([1.0], 0)


def test_self_generation_keeps_prefixes_respects_length_and_records_parameters(tokenizer, text_corpus):
    model = tiny_model("llama")
    corpus = get_corpus(str(text_corpus))
    calib = build_synthetic(model, tokenizer, corpus, nsamples=2, seqlen=16, seed=0, options=OPTIONS, progress=False)
    sources = {d.id: d.text for d in corpus.documents("calib")}
    assert len(calib.texts) == 10
    for record in calib.texts:
        # the byte tokenizer adds no BOS: prompts start with its document separator (EOS)
        expected_prefix = [tokenizer.eos_token_id] + tokenize(tokenizer, sources[record["source_id"]])[:3]
        assert record["prefix_ids"] == expected_prefix
        assert record["text"].startswith(sources[record["source_id"]][:3])  # byte tokenizer: 3 tokens = 3 chars
        assert 0 <= record["generated_tokens"] <= 12
    params = calib.manifest["parameters"]
    assert params["temperature"] == 0.7 and params["prefix_tokens"] == 3 and params["max_new_tokens"] == 12
    assert params["top_p"] == 0.95 and params["top_k"] == 50 and params["repetition_penalty"] == 1.2
    kept = [t for t in calib.texts if t["keep"]]
    dropped = [t for t in calib.texts if not t["keep"]]
    # 10 texts: the 80th percentile lies between the 8th and 9th smallest -> 2 dropped
    assert len(dropped) == 2 and calib.manifest["filter"]["dropped"] == 2
    assert min(t["perplexity"] for t in dropped) >= max(t["perplexity"] for t in kept)
    assert calib.input_ids.shape == (2, 16) and calib.manifest["strategy"] == "synthetic"


def test_the_manifest_records_the_threshold_the_filter_used_and_the_highest_kept_apart(
    tokenizer, text_corpus, tmp_path, monkeypatch
):
    """Perplexities 10, 20, ..., 100 (by hand): the 80th percentile (linear) is at rank 0.8 x 9 = 7.2,
    80 + 0.2 x (90 - 80) = 82: texts below 82 are kept (10..80), 90 and 100 dropped. The rule's
    threshold is 82 (not the highest kept, 80, nor the smallest dropped, 90)."""
    import calibprune.calibration.synthetic as synthetic
    from calibprune.calibration.filters import percentile_threshold

    assert percentile_threshold([float(v) for v in range(10, 101, 10)], 0.2) == pytest.approx(82.0)
    assert percentile_threshold([3.0, 1.0], 0.0) is None and percentile_threshold([float("nan")], 0.2) is None
    values = iter(float(v) for v in [30, 100, 10, 50, 90, 20, 70, 40, 80, 60])
    monkeypatch.setattr(synthetic, "perplexity_of", lambda score: next(values))
    calib = build_synthetic(
        tiny_model("llama"), tokenizer, get_corpus(str(text_corpus)), 2, 16, 0, options=OPTIONS, progress=False
    )
    record = calib.manifest["filter"]
    assert record["perplexity_threshold"] == pytest.approx(82.0)
    assert record["kept_max_perplexity"] == 80.0 and (record["kept"], record["dropped"]) == (8, 2)
    assert "(1 - filter_top) percentile" in record["perplexity_rule"]
    assert sorted(t["perplexity"] for t in calib.texts if not t["keep"]) == [90.0, 100.0]
    # a set saved before the fix held the highest kept perplexity under perplexity_threshold: read so, it is moved
    calib.save(tmp_path / "old")
    manifest_path = tmp_path / "old" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["filter"] = {
        k: v for k, v in manifest["filter"].items() if k not in ("kept_max_perplexity", "perplexity_rule")
    }
    manifest["filter"]["perplexity_threshold"] = 80.0
    manifest_path.write_text(json.dumps(manifest))
    old = CalibrationSet.load(tmp_path / "old").manifest["filter"]
    assert old["kept_max_perplexity"] == 80.0 and old["perplexity_threshold"] == pytest.approx(82.0)
    assert "upgraded_from" in old


def test_default_temperature_is_the_official_codes_for_every_model():
    assert GenerationOptions().temperature == 0.6  # generate_data.py; the paper's 0.8 is a study setting
    resolved = GenerationOptions(filter_top=0.2).resolve(64)
    assert resolved.temperature == 0.6
    assert resolved.num_texts is None and resolved.max_new_tokens == 62
    # first round: 1.25 x 8 / 0.8 = 12.5 window-long texts, in whole batches
    assert GenerationOptions(filter_top=0.2, batch_size=4).first_round(8) == 16
    assert GenerationOptions(filter_top=0.2, batch_size=32).first_round(8) == 32
    assert GenerationOptions(num_texts=5, batch_size=4).first_round(8) == 5


def test_next_round_sizes_from_the_tokens_kept_so_far():
    from calibprune.calibration.synthetic import next_round

    options = GenerationOptions(filter_top=0.2, batch_size=4)
    # 8 texts, 6 kept holding 60 tokens (10 per kept text) of 200 needed: 140 / 10 / 0.8 x 1.1 = 19.25 -> 20 more
    assert next_round(8, 6, 60, 200, options) == 28
    with pytest.raises(
        CalibpruneError,
        match="hold no tokens.*raise generation.prefix_tokens or generation.max_new_tokens, or pass another",
    ):
        next_round(8, 6, 0, 200, options)


AUTO = GenerationOptions(prefix_tokens=3, temperature=0.7, max_new_tokens=6, batch_size=4, filter_top=0.2)


def test_default_count_generates_rounds_until_the_kept_texts_fill_the_windows(tokenizer, text_corpus):
    """Texts of <= 10 tokens cannot fill 4 x 32 tokens in the first round of 8: more
    rounds follow, and the result equals a run told the final count up front."""
    from calibprune.calibration.sampling import stream_tokens

    corpus = get_corpus(str(text_corpus))
    auto = build_synthetic(tiny_model("llama"), tokenizer, corpus, 4, 32, 0, AUTO, progress=False)
    count = len(auto.texts)
    assert auto.manifest["filter"]["rounds"] >= 2 and count > 8 and count % 4 == 0
    assert auto.manifest["parameters"]["num_texts"] == count
    assert auto.manifest["parameters"]["num_texts_rule"] == "rounds"
    kept = [t["text"] for t in auto.texts if t["keep"]]
    assert len(stream_tokens(kept, tokenizer)) >= 4 * 32
    fixed_options = GenerationOptions(**{**AUTO.__dict__, "num_texts": count})
    fixed = build_synthetic(tiny_model("llama"), tokenizer, corpus, 4, 32, 0, fixed_options, progress=False)
    assert [t["text"] for t in auto.texts] == [t["text"] for t in fixed.texts]
    assert [t["keep"] for t in auto.texts] == [t["keep"] for t in fixed.texts]
    assert torch.equal(auto.input_ids, fixed.input_ids)


def test_rounds_resume_without_regenerating_logged_batches(tokenizer, text_corpus, tmp_path, monkeypatch):
    corpus = get_corpus(str(text_corpus))
    reference = build_synthetic(tiny_model("llama"), tokenizer, corpus, 4, 64, 0, AUTO, progress=False)
    batches = len(reference.texts) // 4
    assert reference.manifest["filter"]["rounds"] == 2 and batches >= 4  # round 2 has >= 2 batches
    model = tiny_model("llama")
    real_generate, calls = model.generate, []

    def flaky_generate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # the second batch of the second round
            raise KeyboardInterrupt
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", flaky_generate)
    with pytest.raises(KeyboardInterrupt):
        build_synthetic(model, tokenizer, corpus, 4, 64, 0, AUTO, work_dir=tmp_path / "w", progress=False)
    resumed = build_synthetic(model, tokenizer, corpus, 4, 64, 0, AUTO, work_dir=tmp_path / "w", progress=False)
    assert len(calls) - 4 == batches - 3  # the 3 logged batches (2 of round 1, 1 of round 2) were kept
    assert [t["text"] for t in resumed.texts] == [t["text"] for t in reference.texts]
    assert torch.equal(resumed.input_ids, reference.input_ids)


def test_start_token_only_prompts():
    from conftest import byte_tokenizer

    from calibprune.calibration.synthetic import build_prompts

    tok = byte_tokenizer()
    corpus = type(
        "C",
        (),
        {"documents": lambda self, split: iter([type("D", (), {"id": "a", "text": "hello"})()] * 3), "name": "c"},
    )()
    prompts = build_prompts(corpus, tok, 2, 0, seed=0)
    assert [p["prefix_ids"] for p in prompts] == [[tok.eos_token_id]] * 2  # no BOS added: the separator


def test_interrupted_generation_resumes_to_the_same_set(tokenizer, text_corpus, tmp_path, monkeypatch):
    corpus = get_corpus(str(text_corpus))
    reference = build_synthetic(tiny_model("llama"), tokenizer, corpus, 2, 16, 0, OPTIONS, progress=False)

    model = tiny_model("llama")
    real_generate, calls = model.generate, []

    def flaky_generate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # dies during the second of three batches
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", flaky_generate)
    work = tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):
        build_synthetic(model, tokenizer, corpus, 2, 16, 0, OPTIONS, work_dir=work, progress=False)
    logged = [json.loads(line) for line in (work / "generations.jsonl").read_text().splitlines()]
    assert {r["batch"] for r in logged} == {0} and len(logged) == 4
    with (work / "generations.jsonl").open("a") as f:
        f.write('{"index": 4, "batch": 1, "te')  # a torn write from the crash

    resumed = build_synthetic(model, tokenizer, corpus, 2, 16, 0, OPTIONS, work_dir=work, progress=False)
    assert len(calls) == 4  # batches 1 and 2 only: batch 0 came from the log
    assert torch.equal(resumed.input_ids, reference.input_ids)
    assert [t["text"] for t in resumed.texts] == [t["text"] for t in reference.texts]
    with pytest.raises(CalibpruneError, match="other arguments.*pass overwrite=True to start again$"):
        build_synthetic(model, tokenizer, corpus, 2, 16, 1, OPTIONS, work_dir=work, progress=False)


def test_detection_keeps_the_highest_mink_plus_plus(tokenizer, text_corpus):
    model = tiny_model("llama")
    corpus = get_corpus(str(text_corpus))
    calib = build_detected(
        model, tokenizer, corpus, nsamples=3, seqlen=32, seed=0, keep_top=0.5, k=0.2, num_candidates=40, progress=False
    )
    assert len(calib.texts) == 40
    kept = [t for t in calib.texts if t["keep"]]
    dropped = [t for t in calib.texts if not t["keep"]]
    assert len(kept) == 20 and min(t["mink++"] for t in kept) >= max(t["mink++"] for t in dropped)
    stream = ",".join(map(str, tokenize(tokenizer, "\n\n".join(t["text"] for t in kept))))
    assert all(",".join(map(str, w)) in stream for w in calib.input_ids.tolist())
    assert calib.manifest["parameters"] == {"detector": "mink++", "k": 0.2, "keep_top": 0.5, "num_candidates": 40}


def test_set_folder_round_trip_and_prune_from_it(model_dir, tokenizer, text_corpus, tmp_path):
    job = CalibJob(
        source=str(text_corpus),
        nsamples=4,
        seqlen=32,
        seed=5,
        strategy="synthetic",
        options=GenerationOptions(prefix_tokens=2, max_new_tokens=40, batch_size=8, num_texts=8),
    )
    calib = run_calib(str(model_dir), job, tmp_path / "syn", progress=False)
    assert not (tmp_path / ".syn.generation").exists()  # the work folder goes once the set is saved
    loaded = CalibrationSet.load(tmp_path / "syn")
    assert torch.equal(loaded.input_ids, calib.input_ids)
    assert loaded.texts == json.loads(json.dumps(calib.texts)) and loaded.windows_text == calib.windows_text
    assert loaded.manifest["strategy"] == "synthetic" and loaded.manifest["seed"] == 5
    assert loaded.manifest["tokenizer"]["fingerprint"]
    config = PruneConfig(method="wanda", target=SparsityTarget.unstructured(0.5))
    report = run_prune(
        str(model_dir), config, CalibrationRequest(source=str(tmp_path / "syn")), tmp_path / "pruned", progress=False
    )
    assert report["calibration"]["fingerprint"] == calib.fingerprint
    assert report["calibration"]["strategy"] == "synthetic"


def test_set_made_with_another_tokenizer_is_refused(model_dir, tokenizer, text_corpus, tmp_path):
    calib = CalibrationSet(
        torch.zeros(2, 8, dtype=torch.long),
        manifest={"source": "x", "tokenizer": {"name": "other", "fingerprint": "0000"}},
    )
    calib.save(tmp_path / "foreign")
    with pytest.raises(
        CalibpruneError,
        match=r"tokenized with 'other'.*rebuild it with `calib\(model='MODEL'\)` \(MODEL: the model you prune\)$",
    ):
        run_prune(
            str(model_dir),
            PruneConfig(method="wanda", target=SparsityTarget.unstructured(0.5)),
            CalibrationRequest(source=str(tmp_path / "foreign")),
            tmp_path / "pruned",
            progress=False,
        )


@pytest.mark.parametrize(
    "job, message",
    [
        (lambda: CalibJob(source="wikipedia-en"), "unknown corpus 'wikipedia-en': known ones are wiki-en, wiki-fr"),
        (lambda: CalibJob(strategy="detect", options=DetectOptions(k=1.5)), r"^k 1.5 must be in \(0, 1\]"),
        (
            lambda: CalibJob(strategy="detect", options=DetectOptions(keep_top=0.0)),
            r"^keep_top 0.0 must be in \(0, 1\]",
        ),
        (lambda: CalibJob(nsamples=500, seqlen=64), "fewer than nsamples x seqlen"),
        (
            lambda: CalibJob(strategy="synthetic", nsamples=8, seqlen=64, options=GenerationOptions(num_texts=4)),
            "generation.num_texts=4 with generation.filter_top=0.2 keeps at most 192 tokens"
            ".*raise generation.num_texts",
        ),
        (lambda: CalibJob(nsamples=0), "nsamples 0 must be >= 1"),
        (lambda: CalibJob(strategy="detect", options=GenerationOptions()), "strategy='detect' takes DetectOptions"),
        (lambda: CalibJob(strategy="nope"), "strategy 'nope' is unknown: use one of sample, synthetic, detect"),
    ],
)
def test_bad_calib_input(job, message, model_dir, text_corpus, tmp_path, monkeypatch):
    from calibprune.jobs import calibrate

    monkeypatch.setattr(calibrate, "load_model", lambda *a, **k: pytest.fail("model loaded before validation"))
    with pytest.raises(CalibpruneError, match=message):  # when the job is made, or at the latest before any model
        made = job()
        if made.source == "wiki-en":
            made.source = str(text_corpus)
        run_calib(str(model_dir), made, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "build, python, cli",
    [
        (lambda: GenerationOptions(filter_top=1.0), r"filter_top 1.0 must be in \[0, 1\)", "--filter-top 1.0"),
        (lambda: GenerationOptions(filter_top=-0.1), r"filter_top -0.1 must be in \[0, 1\)", "--filter-top -0.1"),
        (lambda: GenerationOptions(top_p=0), r"top_p 0 must be in \(0, 1\]", "--top-p 0"),
        (lambda: GenerationOptions(temperature=0), "temperature 0 must be > 0", "--temperature 0"),
        (lambda: GenerationOptions(prefix_tokens=-1), "prefix_tokens -1 must be >= 0", "--prefix-tokens -1"),
        (lambda: GenerationOptions(batch_size=0), "batch_size 0 must be >= 1", "--gen-batch-size 0"),
    ],
)
def test_bad_generation_options(build, python, cli):
    """Python reads the keyword, the CLI its flag (the same declared check)."""
    from calibprune.cli.calib import calib_groups
    from calibprune.cli_options import flags_of
    from calibprune.options import OptionError

    with pytest.raises(OptionError, match=f"^{python}") as raised:
        build()
    assert raised.value.render(flags_of(calib_groups()).scoped("generation")).startswith(cli + " must be")


def _gpt2_style_tokenizer():
    """GPT-2's convention, offline: byte-level, bos = eos = '<|endoftext|>', no BOS added."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    end = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=end, eos_token=end, unk_token=end)


def _bos_adding_tokenizer():
    """A byte tokenizer that adds BOS to every text, as Llama's and Gemma's do."""
    from conftest import byte_tokenizer
    from tokenizers.processors import TemplateProcessing

    tok = byte_tokenizer()
    bos = tok.bos_token
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tok.bos_token_id)]
    )
    assert tok("ab")["input_ids"][0] == tok.bos_token_id
    return tok


def test_prompt_starts_with_the_document_separator_when_no_bos_is_added():
    from calibprune.calibration.synthetic import prompt_ids, start_token

    tok = _gpt2_style_tokenizer()
    start = start_token(tok)
    end = tok.convert_tokens_to_ids("<|endoftext|>")
    assert start["tokens"] == ["<|endoftext|>"] and start["rule"].startswith("document separator")
    assert prompt_ids(tok, "Hello", 2, start) == [end] + tok("He")["input_ids"]
    assert prompt_ids(tok, "Hello", 0, start) == [end]
    assert prompt_ids(tok, "Hi", 3, start) is None  # too short for the prefix


def test_prompt_is_the_tokenizers_own_encoding_where_it_adds_bos():
    from calibprune.calibration.synthetic import prompt_ids, start_token

    tok = _bos_adding_tokenizer()
    start = start_token(tok)
    assert start["ids"] == [tok.bos_token_id] and start["rule"] == "added by the tokenizer"
    assert prompt_ids(tok, "Hello", 1, start) == tok("Hello")["input_ids"][:2]  # generate_data.py: [:2]


def test_a_chat_marker_is_never_the_start_token():
    from calibprune.calibration.synthetic import start_token

    tok = _gpt2_style_tokenizer()
    tok.chat_template = "{% for m in messages %}<|endoftext|>{{ m['content'] }}{% endfor %}"
    tok.add_special_tokens({"additional_special_tokens": ["</s>"]})
    assert start_token(tok)["tokens"] == ["</s>"]  # <|endoftext|> is used by the chat template here


def test_detection_scores_texts_with_the_tokenizers_bos(text_corpus):
    tok = _bos_adding_tokenizer()
    corpus = get_corpus(str(text_corpus))
    calib = build_detected(tiny_model("llama"), tok, corpus, 2, 16, 0, keep_top=0.5, num_candidates=8, progress=False)
    lengths = {d.id: len(tokenize(tok, d.text)) for d in corpus.documents("calib")}
    for record in calib.texts:
        assert record["tokens_scored"] == min(lengths[record["source_id"]] + 1, 16)  # BOS + the text, cut
    assert calib.manifest["special_tokens"] == {"prefix": [tok.bos_token], "suffix": []}


@pytest.mark.integration
def test_smollm2_prompts_start_with_endoftext_not_the_chat_bos():
    from transformers import AutoTokenizer

    from calibprune.calibration.synthetic import prompt_ids, start_token
    from calibprune.models.presets import ensure_preset

    tok = AutoTokenizer.from_pretrained(ensure_preset("smollm2-135m"))
    assert tok.bos_token == "<|im_start|>"  # a chat-template marker
    start = start_token(tok)
    assert start["tokens"] == ["<|endoftext|>"] and start["ids"] == [0]
    assert prompt_ids(tok, "The city of Paris", 1, start) == [0, tok("The")["input_ids"][0]]


@pytest.mark.integration
def test_gemma3_prompts_are_its_own_bos_encoding():
    from transformers import AutoTokenizer

    from calibprune.calibration.synthetic import prompt_ids, start_token
    from calibprune.models.presets import ensure_preset

    tok = AutoTokenizer.from_pretrained(ensure_preset("gemma3-270m"))
    start = start_token(tok)
    assert start["tokens"] == [tok.bos_token] and start["rule"] == "added by the tokenizer"
    assert prompt_ids(tok, "The city of Paris", 1, start) == tok("The city of Paris")["input_ids"][:2]


class StepRecorder(GenerationProgress):
    """Records every progress call, in order."""

    def __init__(self):
        self.calls = []

    def start(self, batches, done, steps):
        self.calls.append(("start", batches, done, steps))

    def step(self, batch, step):
        self.calls.append(("step", batch, step))

    def batch_done(self, batch, texts, generated_tokens):
        self.calls.append(("batch_done", batch, texts))


def test_generation_reports_every_decoding_step_in_order(tokenizer, text_corpus):
    from calibprune.calibration.synthetic import build_prompts, generate_texts

    corpus = get_corpus(str(text_corpus))
    options = GenerationOptions(prefix_tokens=3, max_new_tokens=12, batch_size=4, num_texts=8)
    prompts = build_prompts(corpus, tokenizer, 8, 3, seed=0)
    recorder = StepRecorder()
    records = generate_texts(tiny_model("llama"), tokenizer, prompts, options, seed=0, progress=recorder)
    assert recorder.calls[0] == ("start", 2, 0, 12)
    steps = [c[1:] for c in recorder.calls if c[0] == "step"]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # (batch, step) strictly increasing
    for batch in (0, 1):
        in_batch = [s for b, s in steps if b == batch]
        assert len(in_batch) > 1 and in_batch[0] == 1 and in_batch[-1] <= 12
        done_at = recorder.calls.index(("batch_done", batch, 4))
        assert all(recorder.calls.index(("step", batch, s)) < done_at for s in in_batch)  # steps come first
    # reporting changes nothing: the same texts as a run without progress
    plain = generate_texts(tiny_model("llama"), tokenizer, prompts, options, seed=0, progress=False)
    assert [r["text"] for r in records] == [r["text"] for r in plain]
    # a resumed generation starts its count after the finished batches
    again = StepRecorder()
    generate_texts(tiny_model("llama"), tokenizer, prompts, options, seed=0, progress=again, previous=records[:4])
    assert again.calls[0] == ("start", 2, 1, 12) and {c[1] for c in again.calls if c[0] == "step"} == {1}


def test_step_bar_moves_within_a_batch_and_counts_finished_batches(capsys):
    from calibprune.calibration.generation_progress import StepBar

    bar = StepBar()
    bar.start(batches=3, done=1, steps=10)  # resumed: batch 0 is finished
    assert bar.bar.n == 10 and bar.bar.total == 30
    bar.step(1, 4)
    assert bar.bar.n == 14 and "batch 2/3, step 4/10" in str(bar.bar)
    bar.batch_done(1, texts=4, generated_tokens=20)  # stopped early at EOS: the bar jumps to the batch's end
    assert bar.bar.n == 20 and "batch 2/3 done" in str(bar.bar)
    bar.close()
    assert "20/30" in capsys.readouterr().err
