"""lm-evaluation-harness on an in-memory model: an ``LM`` adapter plus the task runner.

:class:`InMemoryLM` implements lm-eval's ``TemplateLM`` over any causal LM object, so a
pruned model is evaluated without being saved and reloaded. Two scoring paths give the
same log-likelihoods (within float rounding) and the same ``is_greedy`` flags:

* ``shared-prefix`` (default, :mod:`.prefix`): every shared token prefix runs once —
  an MMLU subject's k-shot prefix once per subject, a question's context once for all
  its choices — and its KV cache is reused for what follows. Models whose forward takes
  no cache / position ids fall back to the plain path, and the report says so.
* ``plain`` (:mod:`calibprune.scoring`, the batched, padding-aware scorer used
  everywhere): continuations of one token that share a context are read from one
  forward over that context; longer ones are scored as ``context + continuation``.

Inputs longer than the model's window keep their last ``max_length`` tokens, as in
lm-eval's own HF backend, on both paths.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import subprocess
from collections import defaultdict

import torch
from tqdm.auto import tqdm

from ..errors import CalibpruneError, MissingAssetError
from ..models.loading import max_sequence_length, tokenize
from ..options import OptionError
from ..scoring.tokens import next_token_logprobs, score_sequences
from .prefix import SCORING_PATHS, PrefixStats, shared_prefix_loglikelihoods, supports_shared_prefix
from .tasks import PAPER_TASKS, describe, task_configs


def _template_lm():
    from lm_eval.api.model import TemplateLM

    return TemplateLM


class InMemoryLM(_template_lm()):
    backend = "causal"

    def __init__(
        self,
        model,
        tokenizer,
        batch_size: int = 8,
        max_length: int | None = None,
        progress: bool = True,
        scoring: str = "shared-prefix",
    ):
        super().__init__()
        if scoring not in SCORING_PATHS:
            raise CalibpruneError(f"unknown scoring path {scoring!r}: use one of {', '.join(SCORING_PATHS)}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # a model that cannot take a gathered KV cache is scored on the plain path, and the report says why
        self.fallback_reason = supports_shared_prefix(model) if scoring == "shared-prefix" else None
        self.scoring = "plain" if self.fallback_reason else scoring
        self.stats = PrefixStats()
        self.max_length = max_length or min(max_sequence_length(model.config) or 2048, 4096)
        self.progress = progress
        # Gemma models expect BOS at the start of every input (lm-eval's HF backend does the same)
        self.add_bos = str(getattr(model.config, "model_type", "")).startswith("gemma")

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.eot_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        ids = tokenize(self.tokenizer, string)
        if self.add_bos and add_special_tokens is not False and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id] + ids
        return ids

    def tok_decode(self, tokens, **kwargs) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        # lm-eval's tokenizing bar follows this flag only
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm or not self.progress)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        show = self.progress and not disable_tqdm
        # the same truncation on both paths: the last max_length + 1 tokens of context + continuation
        fulls = [
            ((context + continuation)[-(self.max_length + 1) :], len(continuation))
            for _, context, continuation in requests
        ]
        if self.scoring == "plain":
            return self._plain_loglikelihoods(fulls, show)
        shared = [i for i, (full, n) in enumerate(fulls) if n < len(full)]
        alone = [i for i, (full, n) in enumerate(fulls) if n >= len(full)]  # no context left after truncation
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        scores = shared_prefix_loglikelihoods(
            self.model,
            [(fulls[i][0][: -fulls[i][1]], fulls[i][0][-fulls[i][1] :]) for i in shared],
            max_batch_size=self.batch_size,
            progress=show,
            stats=self.stats,
        )
        for i, score in zip(
            shared + alone, scores + self._plain_loglikelihoods([fulls[i] for i in alone], show), strict=True
        ):
            results[i] = score
        self.stats.plain_fallback_requests += len(alone)
        return results  # type: ignore[return-value]

    def _plain_loglikelihoods(self, fulls: list[tuple[list[int], int]], show: bool) -> list[tuple[float, bool]]:
        """The plain path: one forward per distinct context for single-token continuations,
        one per ``context + continuation`` otherwise."""
        results: list[tuple[float, bool] | None] = [None] * len(fulls)
        single: dict[tuple[int, ...], list[tuple[int, int]]] = defaultdict(list)
        multi: list[tuple[int, list[int], int]] = []
        for i, (full, n) in enumerate(fulls):
            if n == 1:
                single[tuple(full[:-1])].append((i, full[-1]))
            else:
                multi.append((i, full, n))
        if single:
            contexts = list(single)
            logprobs = next_token_logprobs(
                self.model, [list(c) for c in contexts], max_batch_size=self.batch_size, progress=show
            )
            for row, context in enumerate(contexts):
                best = int(logprobs[row].argmax())
                for i, token in single[context]:
                    results[i] = (float(logprobs[row, token]), best == token)
        if multi:
            scores = score_sequences(
                self.model,
                [full for _, full, _ in multi],
                greedy=True,
                max_batch_size=self.batch_size,
                progress=show,
                desc="loglikelihood",
            )
            for (i, _, n), score in zip(multi, scores, strict=True):
                results[i] = (float(score.logprob[-n:].sum()), bool(score.greedy[-n:].all()))
        return results  # type: ignore[return-value]

    def report(self) -> dict:
        """Which scoring path ran, why (if it fell back) and what it computed."""
        out = {"path": self.scoring, "fallback_reason": self.fallback_reason}
        if self.scoring == "shared-prefix":
            out["stats"] = self.stats.to_dict()
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        totals = []
        for request in requests:
            windows = [
                make_disjoint_window(w)
                for w in get_rolling_token_windows(
                    self.tok_encode(request.args[0]), self.prefix_token_id, self.max_length, 1
                )
            ]
            scores = self._loglikelihood_tokens([(None, ctx, cont) for ctx, cont in windows], disable_tqdm=True)
            totals.append(sum(s for s, _ in scores))
        return totals

    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        outputs = []
        for request in tqdm(requests, desc="generate_until", disable=disable_tqdm or not self.progress):
            context, kwargs = request.args
            until = kwargs.get("until") or [self.tok_decode([self.eot_token_id])]
            until = [until] if isinstance(until, str) else until
            ids = torch.tensor([self.tok_encode(context)[-self.max_length :]], device=self.model.device)
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=int(kwargs.get("max_gen_toks", 256)),
                pad_token_id=self.eot_token_id,
            )
            text = self.tok_decode(out[0, ids.shape[1] :].tolist())
            for stop in until:
                text = text.split(stop)[0]
            outputs.append(text)
        return outputs


def _docs_in(config: dict) -> int:
    """Number of evaluated documents of an offline task (rows of its evaluation split)."""
    import pyarrow as pa

    split = config.get("test_split") or config.get("validation_split")
    with pa.memory_map(config["dataset_kwargs"]["data_files"][split]) as source:
        return pa.ipc.open_stream(source).read_all().num_rows


def resolve_tasks(names: list[str], mmlu_shots: int) -> tuple[dict[str, list], list[str]]:
    """Offline configs for the paper's tasks; other names go to lm-eval's own registry."""
    if not names:
        raise OptionError("tasks.names", f"no task given: pass {{tasks.names}}, e.g. {','.join(PAPER_TASKS)}")
    if mmlu_shots < 0:
        raise OptionError(
            "mmlu_shots", f"{{mmlu_shots}} {mmlu_shots} must be >= 0 (5 as in the paper's text, 0 as in its code)"
        )
    offline, hub = {}, []
    for name in names:
        if name in PAPER_TASKS:
            offline[name] = task_configs(name, mmlu_shots)  # raises MissingAssetError with the install command
        else:
            hub.append(name)
    if hub:
        from lm_eval.tasks import TaskManager

        known = set(TaskManager().all_tasks)
        unknown = [n for n in hub if n not in known]
        if unknown:
            raise CalibpruneError(
                f"unknown task(s) {', '.join(unknown)}: offline tasks are {', '.join(PAPER_TASKS)}; "
                "other lm-eval task names work with network access"
            )
    return offline, hub


def documents_per_task(names: list[str], limit: int | None, mmlu_shots: int) -> dict[str, int | None]:
    """Documents each task evaluates (``--limit`` applied per subject); None for a task
    from lm-eval's registry, whose data is not read before it runs."""
    offline, hub = resolve_tasks(names, mmlu_shots)
    counts: dict[str, int | None] = {
        name: sum(min(_docs_in(c), limit) if limit is not None else _docs_in(c) for c in group)
        for name, group in offline.items()
    }
    return counts | dict.fromkeys(hub)


def _seeded_subset(task: str, n: int, limit: int, seed: int) -> list[int]:
    return sorted(random.Random(f"{seed}:{task}").sample(range(n), min(limit, n)))


def seeded_samples(configs: list[dict], limit: int, seed: int) -> dict[str, list[int]]:
    """``--limit``: a fixed, seeded subset of at most ``limit`` documents per task config."""
    return {c["task"]: _seeded_subset(c["task"], _docs_in(c), limit, seed) for c in configs}


def evaluate_tasks(
    model,
    tokenizer,
    names: list[str],
    limit: int | None = None,
    seed: int = 0,
    mmlu_shots: int = 5,
    batch_size: int = 8,
    progress: bool = True,
    scoring: str = "shared-prefix",
    batching: dict | None = None,
) -> dict:
    """Run lm-eval on ``model`` in memory; returns per-task metrics and the paper's average.

    The arguments are a :class:`~calibprune.jobs.requests.TaskRequest`'s, checked by its
    declarations; ``batch_size``: rows per forward (``"auto"`` is resolved by the job, once
    for tasks and perplexity: :func:`calibprune.jobs.evaluate.resolve_batch_sizes`, which
    passes what it chose as ``batching``, recorded). ``scoring``: ``shared-prefix`` (each
    shared context computed once, :mod:`.prefix`) or ``plain`` (each context + continuation
    on its own)."""
    offline, hub = resolve_tasks(names, mmlu_shots)
    configs = [c for group in offline.values() for c in group]
    samples = seeded_samples(configs, limit, seed) if limit is not None else None
    batching = batching or {"requested": batch_size}
    lm = InMemoryLM(model, tokenizer, batch_size=batch_size, progress=progress, scoring=scoring)
    with _lm_eval_quietly(progress):
        raw = run_lm_eval(lm, configs + hub, samples=samples, limit=limit if hub else None, seed=seed)
    tasks = {}
    for name, group in offline.items():
        tasks[name] = _summarize([_metrics(raw, c["task"]) for c in group], group, name)
    for name in hub:
        tasks[name] = {**_metrics(raw, name), "source": "lm-eval registry (hub data)"}
    accs = [t["acc"] for t in tasks.values() if t.get("acc") is not None]
    import lm_eval

    return {
        "tasks": tasks,
        "average": {
            "acc": sum(accs) / len(accs) if accs else None,
            "over": list(tasks),
            "note": "mean of per-task acc, as the paper reports",
        },
        "limit": limit,
        "seed": seed,
        "mmlu_shots": mmlu_shots,
        "scoring": lm.report(),
        "batch_size": batching | {"used": batch_size},
        "lm_eval_version": lm_eval.__version__,
    }


def _git_hash_quietly() -> str | None:
    """lm-eval's ``get_git_commit_hash`` without git's stderr ('fatal: not a git repository'
    when run outside a repository, which is where users evaluate)."""
    try:
        done = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _silent_tqdm(*args, **kwargs):
    """A disabled bar, whatever ``disable=`` the caller passes."""
    return tqdm(*args, **{**kwargs, "disable": True})


@contextlib.contextmanager
def _lm_eval_quietly(progress: bool):
    """Silence what lm-eval prints on its own during ``simple_evaluate``: its git probe,
    and (``progress=False``) its request-building progress bars. lm-eval offers no switch
    for either, so its module-level names are swapped for the call and restored after."""
    import lm_eval.api.model as lm_model
    import lm_eval.api.task as lm_task
    import lm_eval.evaluator as lm_evaluator

    patches = [(lm_evaluator, "get_git_commit_hash", _git_hash_quietly)]
    if not progress:
        patches += [(module, "tqdm", _silent_tqdm) for module in (lm_task, lm_model)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()  # lm-eval's dataset loading ("Generating test split")
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        if not progress and bars_were_on:
            datasets.enable_progress_bars()


@functools.cache
def _configs_only_manager():
    """A TaskManager that indexes no task folder: enough for tasks given as full configs.

    lm-eval's default manager indexes its ~15k shipped task files on every
    ``simple_evaluate`` call (~10-20 s on 2 CPU cores), which configs never need."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False)


def run_lm_eval(lm, tasks: list, samples: dict | None = None, limit: int | None = None, seed: int = 0) -> dict:
    """lm-eval's ``simple_evaluate`` on ``lm`` with every seed set to ``seed`` (raw results).

    Tasks given as configs (dicts) are built without indexing lm-eval's task folders;
    a task given by name needs that index, and gets lm-eval's default manager."""
    from lm_eval import simple_evaluate

    configs_only = all(isinstance(t, dict) for t in tasks)
    return simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=_configs_only_manager() if configs_only else None,
        samples=samples,
        limit=limit,
        log_samples=False,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        verbosity="ERROR",
    )


def _metrics(raw: dict, task: str) -> dict:
    values = raw["results"][task]
    n = raw["n-samples"][task]["effective"]
    out = {"n": n, "num_fewshot": raw["n-shot"].get(task)}
    for metric in ("acc", "acc_norm"):
        if f"{metric},none" in values:
            out[metric] = values[f"{metric},none"]
            stderr = values.get(f"{metric}_stderr,none")
            out[f"{metric}_stderr"] = stderr if isinstance(stderr, (int, float)) else None
    return out


def _summarize(parts: list[dict], configs: list[dict], name: str) -> dict:
    """One task's metrics; MMLU's subjects are pooled, weighted by their sizes (lm-eval's
    ``weight_by_size``), with stderr sqrt(sum n_i^2 se_i^2) / N."""
    total = sum(p["n"] for p in parts)
    out = {"n": total, "num_fewshot": parts[0]["num_fewshot"]}
    for metric in ("acc", "acc_norm"):
        if all(metric in p for p in parts):
            out[metric] = sum(p[metric] * p["n"] for p in parts) / total
            if all(p.get(f"{metric}_stderr") is not None for p in parts):
                out[f"{metric}_stderr"] = math.sqrt(sum((p["n"] * p[f"{metric}_stderr"]) ** 2 for p in parts)) / total
    if len(parts) > 1:
        out["subtasks"] = {c["task"]: p for c, p in zip(configs, parts, strict=True)}
    out["definition"] = (
        describe(configs[0])
        if len(configs) == 1
        else {
            "template": describe(
                {k: v for k, v in configs[0].items() if k not in ("task", "dataset_kwargs", "description")}
            ),
            "subjects": [c["task"] for c in configs],
        }
    )
    return out


__all__ = ["InMemoryLM", "MissingAssetError", "evaluate_tasks", "resolve_tasks"]
