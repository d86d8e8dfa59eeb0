"""Self-generated calibration data (the paper's main proposal).

1. **Prompts.** Source documents are visited in a seeded random order; each gives a
   prompt of a start token + its first ``prefix_tokens`` tokens (``prefix_tokens=0``:
   the start token alone). Where the tokenizer adds a BOS, the prompt is the
   tokenizer's own encoding of the text cut to 1 + ``prefix_tokens`` tokens, exactly the
   paper's ``generate_data.py`` (its default "2 tokens including BOS" is
   ``prefix_tokens=1``). Where it adds none, the start token is the document separator
   of the model's pretraining (``<|endoftext|>``, else EOS), never a chat-template
   marker: SmolLM2-Instruct's ``bos_token`` is ``<|im_start|>``, a chat token.
2. **Generation.** Prompts go in batches (left padded) through ``model.generate`` with
   top-p / top-k / temperature (0.6, the official code's default) / repetition-penalty
   sampling, up to the window length, each sequence stopping at the model's EOS (its
   generation config's, as ``generate`` does by default). Batch b is sampled under seed
   ``hash(seed, b)``, so a batch's texts depend only on the arguments, never on what
   ran before.
3. **Resume.** Every finished batch is appended to ``generations.jsonl`` in a work
   folder, next to a ``run.json`` holding the signature of all arguments. A rerun with
   the same arguments keeps the complete batches and continues after them, and so
   produces exactly the texts an uninterrupted run would.
4. **Filter.** Each decoded text's perplexity under the same model, the text encoded
   as the tokenizer does by default, and the texts at or above the (1 - ``filter_top``)
   percentile dropped (paper: 20%), as ``sample_ppl.py`` does.
5. **How many texts.** ``num_texts`` fixes the count. By default generation goes in
   rounds of whole batches until the kept texts hold ``nsamples x seqlen`` tokens:
   texts that stop early at EOS are common, so no count fixed in advance fits every
   model. The first round is sized as if every text filled a window; each further
   round from the tokens a kept text has held so far (+10%). Prompts come from one
   seeded order and batch b is always sampled under the same seed, so adding rounds
   never changes earlier texts, and the rounds (hence the set) depend only on the
   arguments.
6. **Windows.** The kept texts are joined and windowed (stream mode, the paper's
   synthetic loader), without overlapping windows by default (see sampling.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from ..corpora import Corpus
from ..models.loading import encode, special_tokens_added, tokenize
from ..options import OptionError, literal
from ..scoring import perplexity_of, score_sequences
from .calibset import CalibrationSet, tokenizer_info
from .filters import PERCENTILE_RULE, drop_above_percentile, percentile_threshold
from .generation_progress import GenerationProgress, StepReporter, as_progress
from .job import check_windows
from .sampling import set_from_pool, source_fields, stream_tokens
from .strategies.synthetic import GenerationOptions, whole_batches

SEPARATOR_TOKENS = ("<|endoftext|>", "</s>")

# Bump a revision in the commit that changes this algorithm's output for some input (keys of
# cached results include it: calibprune.experiments.revisions; tests/golden/revisions.json checks it).
REVISIONS = {"calib/synthetic": 1}  # prompts, generation, perplexity filter
USES = {"calib/synthetic": ("calib/sample", "scoring")}


def next_round(count: int, kept_texts: int, kept_tokens: int, needed: int, options: GenerationOptions) -> int:
    """Texts to generate in all after a round of ``count`` texts that kept ``kept_texts``
    texts holding ``kept_tokens`` of the ``needed`` tokens: the missing tokens at the
    rate seen so far per kept text, divided by the filter's keep rate, +10%."""
    if kept_tokens == 0:
        raise OptionError(
            "generation.prefix_tokens",
            f"the {count} generated texts kept after filtering hold no tokens (the model stops at once?): "
            "raise {generation.prefix_tokens} or {generation.max_new_tokens}, or pass another {generation.temperature}",
        )
    missing_texts = (needed - kept_tokens) / (kept_tokens / kept_texts) / (1.0 - options.filter_top)
    return count + whole_batches(1.1 * missing_texts, options.batch_size)


def start_token(tokenizer) -> dict:
    """The token(s) every prompt starts with, and why: what the tokenizer adds before
    every text (its BOS), or else the pretraining document separator (the first of
    ``<|endoftext|>``, ``</s>``, EOS, BOS that the vocabulary has and the chat template
    does not use)."""
    added = special_tokens_added(tokenizer)["prefix"]
    if added:
        return {"tokens": added, "ids": tokenizer.convert_tokens_to_ids(added), "rule": "added by the tokenizer"}
    vocab = tokenizer.get_vocab()
    chat = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    for token in (*SEPARATOR_TOKENS, tokenizer.eos_token, tokenizer.bos_token):
        if token and token in vocab and token not in chat:
            return {"tokens": [token], "ids": [vocab[token]], "rule": "document separator (the tokenizer adds no BOS)"}
    return {"tokens": [], "ids": [], "rule": "none (the tokenizer adds no BOS and has no document separator)"}


def prompt_ids(tokenizer, text: str, prefix_tokens: int, start: dict) -> list[int] | None:
    """Start token(s) + the first ``prefix_tokens`` tokens of ``text`` (None: too short).
    Where the tokenizer adds the start itself, its own encoding is cut (the reference)."""
    if start["rule"] == "added by the tokenizer":
        ids = encode(tokenizer, text)
    else:
        ids = start["ids"] + tokenize(tokenizer, text)
    length = len(start["ids"]) + prefix_tokens
    return ids[:length] if len(ids) >= length else None


def build_prompts(corpus: Corpus, tokenizer, count: int, prefix_tokens: int, seed: int) -> list[dict]:
    """``count`` prompts (start token + first ``prefix_tokens`` tokens) from seeded-random source documents."""
    start = start_token(tokenizer)
    if not start["ids"] and prefix_tokens == 0:
        raise OptionError(
            "generation.prefix_tokens",
            "the model's tokenizer adds no BOS and has no document-separator token, so "
            "{generation.prefix_tokens=0} leaves an empty prompt: use >= 1",
        )
    docs = list(corpus.documents("calib"))
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    prompts = []
    for index in order:
        ids = prompt_ids(tokenizer, docs[index].text, prefix_tokens, start)
        if ids is None:
            continue
        prompts.append({"source_id": docs[index].id, "prefix_ids": ids})
        if len(prompts) == count:
            return prompts
    raise OptionError(
        "generation.num_texts",
        f"corpus {literal(repr(corpus.name))} has only {len(prompts)} documents with >= {prefix_tokens} tokens, fewer "
        f"than the {count} texts to generate: lower {{generation.num_texts}} or {{generation.prefix_tokens}}, or use "
        "a larger source",
    )


def _batch_seed(seed: int, batch: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{batch}".encode()).digest()[:8], "big") % (2**63)


class GenerationLog:
    """Append-only record of finished batches, tied to one set of arguments."""

    def __init__(self, folder: Path, signature: str, overwrite: bool = False):
        self.folder = folder
        self.file = folder / "generations.jsonl"
        state = folder / "run.json"
        if state.exists():
            previous = json.loads(state.read_text()).get("signature")
            if previous != signature and not overwrite:
                raise OptionError(
                    "overwrite",
                    f"{literal(folder)} holds an unfinished generation made with other arguments: rerun with the same "
                    "arguments to resume it, or pass {overwrite=true} to start again",
                )
            if previous != signature:
                self.file.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"signature": signature}))

    def finished(self, batch_size: int, total: int) -> dict[int, list[dict]]:
        """The batches on disk that are complete for ``total`` texts.

        The file is rewritten without a torn tail (an interrupted write) and without
        batches cut short; full batches beyond ``total`` stay for a later, larger round."""
        if not self.file.exists():
            return {}
        batches: dict[int, list[dict]] = {}
        with open(self.file, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break
                batches.setdefault(record["batch"], []).append(record)

        def expected(b: int) -> int:
            return min(batch_size, total - b * batch_size) if b * batch_size < total else batch_size

        kept = {b: rs for b, rs in batches.items() if len(rs) == expected(b)}
        with open(self.file, "w", encoding="utf-8") as f:
            for b in sorted(kept):
                f.writelines(json.dumps(r) + "\n" for r in kept[b])
        return {b: rs for b, rs in kept.items() if b * batch_size < total}

    def append(self, records: list[dict]) -> None:
        with open(self.file, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())


def stop_tokens(model, tokenizer) -> list[int]:
    """The ids that end a generated text: the model's generation config's EOS (what
    ``generate`` stops at by default, possibly several), else the tokenizer's."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


def _left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


@torch.no_grad()
def generate_texts(
    model,
    tokenizer,
    prompts: list[dict],
    options: GenerationOptions,
    seed: int,
    log: GenerationLog | None = None,
    progress: bool | GenerationProgress = True,
    previous: list[dict] = (),
) -> list[dict]:
    """One record per prompt: prefix, generated continuation, token ids, EOS flag.

    Batches already finished (in ``log``, or the complete batches of ``previous``
    records from an earlier round over the same prompt order) are not generated again.
    ``progress``: a bar over decoding steps (True), none (False), or a
    :class:`GenerationProgress` that receives every step and every finished batch."""
    eos = stop_tokens(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    size = options.batch_size
    batches = [prompts[i : i + size] for i in range(0, len(prompts), size)]
    done: dict[int, list[dict]] = {}
    for record in previous:
        done.setdefault(record["batch"], []).append(record)
    if log:
        done.update(log.finished(size, len(prompts)))
    records = [r for b in sorted(done) for r in done[b]]
    reporter = as_progress(progress)
    reporter.start(len(batches), sum(b in done for b in range(len(batches))), options.max_new_tokens)
    device = next(model.parameters()).device
    for b, batch in enumerate(batches):
        if b in done:
            continue
        torch.manual_seed(_batch_seed(seed, b))
        ids, mask = _left_pad([p["prefix_ids"] for p in batch], pad)
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            **options.sampling(),
            max_new_tokens=options.max_new_tokens,
            eos_token_id=eos,
            pad_token_id=pad,
            stopping_criteria=[StepReporter(reporter, b, ids.shape[1])],
        ).cpu()
        new_records = []
        for row, prompt in enumerate(batch):
            continuation = out[row, ids.shape[1] :].tolist()
            stop = next((i for i, token in enumerate(continuation) if token in eos), None)
            hit_eos = stop is not None
            if hit_eos:
                continuation = continuation[:stop]
            text_ids = prompt["prefix_ids"] + continuation
            new_records.append(
                {
                    "index": b * size + row,
                    "batch": b,
                    "source_id": prompt["source_id"],
                    "prefix_ids": prompt["prefix_ids"],
                    "prefix": tokenizer.decode(prompt["prefix_ids"], skip_special_tokens=True),
                    "text": tokenizer.decode(text_ids, skip_special_tokens=True),
                    "token_ids": text_ids,
                    "generated_tokens": len(continuation),
                    "stopped_at_eos": hit_eos,
                }
            )
        if log:
            log.append(new_records)
        records.extend(new_records)
        reporter.batch_done(b, len(batch), sum(r["generated_tokens"] for r in new_records))
    reporter.close()
    return sorted(records, key=lambda r: r["index"])


def signature(model, tokenizer, source: str, prompts: list[dict], options: GenerationOptions, seed: int) -> str:
    """Everything that decides the generated texts of each batch. Not the number of
    texts (batch b's texts do not depend on it) nor the filter (applied afterwards);
    the first batch's prompts stand for the seeded prompt order."""
    parts = {
        "model": hashlib.sha256(model.config.to_json_string(use_diff=False).encode()).hexdigest(),
        "weights": float(sum(p.detach().double().sum() for p in list(model.parameters())[:4])),
        "tokenizer": tokenizer_info(tokenizer)["fingerprint"],
        "source": source,
        "seed": seed,
        "prompts": hashlib.sha256(
            json.dumps([p["prefix_ids"] for p in prompts[: options.batch_size]]).encode()
        ).hexdigest(),
        "options": {k: v for k, v in asdict(options).items() if k not in ("filter_top", "num_texts")},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def filter_record(texts: list[dict], filter_top: float) -> dict:
    """What the perplexity filter at ``filter_top`` did to ``texts`` (records with
    ``perplexity``, ``keep``, ``generated_tokens``, ``stopped_at_eos``): the manifest's ``filter``."""
    perplexities = [t["perplexity"] for t in texts]
    kept_ppl = [t["perplexity"] for t in texts if t["keep"]]
    kept = sum(t["keep"] for t in texts)
    return {
        "texts": len(texts),
        "kept": kept,
        "dropped": len(texts) - kept,
        "perplexity_rule": PERCENTILE_RULE,
        "perplexity_threshold": percentile_threshold(perplexities, filter_top),  # the rule's t
        "kept_max_perplexity": max(kept_ppl) if kept_ppl else None,
        "generated_tokens": sum(t["generated_tokens"] for t in texts),
        "stopped_at_eos": sum(t["stopped_at_eos"] for t in texts),
    }


def refilter(pool: CalibrationSet, filter_top: float) -> tuple[list[dict], dict]:
    """The texts of a generated ``pool`` (every text it generated, with its perplexity) kept
    by the filter at ``filter_top`` instead of the pool's own rate, and the manifest of a set
    cut from them: how every arm of a filter study filters the same generated texts. A pool
    generated for its highest rate holds enough for every lower one (a lower rate keeps a
    superset: the percentile threshold only rises)."""
    keep = drop_above_percentile([t["perplexity"] for t in pool.texts], filter_top)
    texts = [{**t, "keep": k} for t, k in zip(pool.texts, keep, strict=True)]
    manifest = {k: v for k, v in pool.manifest.items() if k not in ("seed", "sampling", "pool_tokens", "tokenizer")}
    pool_filter = manifest.get("filter", {})
    manifest["parameters"] = {**manifest.get("parameters", {}), "filter_top": filter_top}
    manifest["filter"] = {"rounds": pool_filter.get("rounds"), **filter_record(texts, filter_top)}
    manifest["pool_seed"] = pool.manifest.get("seed")
    manifest["pool_filter_top"] = pool.manifest.get("parameters", {}).get("filter_top")
    manifest["pool_fingerprint"] = pool.fingerprint
    return texts, manifest


def build_synthetic(
    model,
    tokenizer,
    corpus: Corpus,
    nsamples: int,
    seqlen: int,
    seed: int,
    options: GenerationOptions = GenerationOptions(),
    work_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool | GenerationProgress = True,
    windows: str = "disjoint",
) -> CalibrationSet:
    """Generate, filter by perplexity, window. ``work_dir`` makes generation resumable;
    ``progress`` as :func:`generate_texts` (the filter's bar shows when it is truthy)."""
    check_windows(nsamples, seqlen)
    options = options.resolve(seqlen)
    needed = nsamples * seqlen
    count = options.first_round(nsamples)
    log, records, perplexities, rounds = None, [], [], 0
    while True:
        prompts = build_prompts(corpus, tokenizer, count, options.prefix_tokens, seed)
        if log is None and work_dir is not None:
            log = GenerationLog(
                Path(work_dir), signature(model, tokenizer, corpus.name, prompts, options, seed), overwrite
            )
        records = generate_texts(model, tokenizer, prompts, options, seed, log, progress, previous=records)
        new = [encode(tokenizer, r["text"]) for r in records[len(perplexities) :]]
        scores = score_sequences(model, new, progress=bool(progress), desc="perplexity filter")
        perplexities += [perplexity_of(s) for s in scores]
        keep = drop_above_percentile(perplexities, options.filter_top)
        rounds += 1
        if options.num_texts is not None:
            break
        kept_texts = [r["text"] for r, k in zip(records, keep, strict=True) if k]
        kept_tokens = len(stream_tokens(kept_texts, tokenizer))
        if kept_tokens >= needed:
            break
        count = next_round(count, len(kept_texts), kept_tokens, needed, options)
    texts = []
    for record, ppl, kept in zip(records, perplexities, keep, strict=True):
        record = {k: v for k, v in record.items() if k not in ("token_ids", "batch")}
        texts.append({**record, "perplexity": ppl, "keep": kept})
    manifest = {
        **source_fields(corpus),
        "strategy": "synthetic",
        "parameters": {
            **asdict(options),
            "num_texts": len(records),
            "num_texts_rule": "fixed" if options.num_texts else "rounds",
        },
        "model": getattr(model, "name_or_path", None) or model.config.name_or_path,
        "prompt_start": start_token(tokenizer),
        "filter": {"rounds": rounds, **filter_record(texts, options.filter_top)},
    }
    return set_from_pool(
        texts,
        tokenizer,
        nsamples,
        seqlen,
        seed,
        "stream",
        manifest=manifest,
        what="the {n} generated texts kept after filtering (raise {generation.num_texts})",
        windows=windows,
    )
