"""A small Llama trained here, on a documented mix of the offline corpora: a model whose
training data is known, so that "calibrate on the training data vs on unlike data"
(the paper's C3 and C8, DCLM-7B with DCLM) is a real comparison at small scale.

What it is trained on (:data:`MIX`): the *calibration* pools of three offline corpora
(never their held-out pools, never another corpus):

* ``wiki-en`` -- the whole calibration pool (~9k Wikipedia lead sections);
* ``pycode`` -- 3.0 M characters of the CPython standard library's calibration pool;
* ``gcide``  -- 3.0 M characters of Webster 1913's calibration pool.

A quota takes whole documents in a seeded order of the pool until it holds the quota's
characters; the ids taken are written to ``training_documents.json`` beside the weights.
``kjv``, ``wiki-fr``, ``pydocs``, ``jargon`` and ``fortunes`` (:data:`UNLIKE`) and ``wiki-es`` stay
out: they are the "unlike the training data" sources and the evaluation corpora.

The steps, in order, each deterministic for a fixed :class:`TrainConfig`:

1. select the documents (above);
2. train a byte-level BPE tokenizer of :attr:`TrainConfig.vocab_size` tokens on them.
   SmolLM2's 49,152-token vocabulary would make the output layer ~75 % of the compute:
   measured on this machine's 2 cores, 4 x 256 trains at ~200 tokens/s with it and
   ~770 tokens/s with 8,192 tokens, i.e. ~4x the data in the same hour;
3. tokenize each corpus's documents (each followed by ``<|endoftext|>``), cut the stream
   into windows of ``seqlen`` tokens, and order all windows by a seeded permutation per
   epoch (step ``s`` reads windows ``[s*batch, (s+1)*batch)`` of that order);
4. train ``LlamaForCausalLM`` from ``torch.manual_seed(seed)`` with AdamW, linear warm-up
   and cosine decay, on ``threads`` torch threads with deterministic algorithms;
   a checkpoint (safetensors + JSON, no pickle) every ``checkpoint_every`` steps, so a
   killed run resumes from its last checkpoint to the same weights as an uninterrupted one;
5. measure held-out perplexity of the model and of a unigram model (the training
   tokens' add-one frequencies) on each training corpus and each unlike corpus;
6. write a plain ``save_pretrained`` folder (safetensors + tokenizer) and ``training.json``:
   the mix, documents and tokens per corpus, seed, steps, loss curve, thread count, CPU
   and library versions, the held-out perplexities and the wall time.

Work in progress lives in a hidden sibling ``.<output>.partial``; the finished folder
appears by a rename. Bit-identical results need the same thread count, CPU kernels and
library versions (all recorded).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..errors import CalibpruneError
from ..utils.io import publish_directory, temporary_sibling, write_json

FORMAT = "calibprune.trained/1"
EOT = "<|endoftext|>"
MANIFEST = "training.json"
DOCUMENTS = "training_documents.json"

# (corpus, characters taken from its calibration pool; None: the whole pool)
MIX: tuple[tuple[str, int | None], ...] = (("wiki-en", None), ("pycode", 3_000_000), ("gcide", 3_000_000))
MIX_RULE = (
    "the calibration pool of each corpus (never its held-out pool) in a seeded document order "
    "(random.Random(f'{seed}:{corpus}').shuffle of the pool sorted by id); whole documents are taken until "
    "the quota's characters are reached (no quota: the whole pool); each document is followed by <|endoftext|>"
)
# corpora the model never sees: the "unlike" sources and the evaluation corpora
UNLIKE = ("kjv", "wiki-fr", "pydocs", "jargon", "fortunes")


@dataclass(frozen=True)
class TrainConfig:
    """Everything the weights depend on (with the corpora's content and the libraries)."""

    mix: tuple[tuple[str, int | None], ...] = MIX
    vocab_size: int = 8192
    hidden_size: int = 256
    intermediate_size: int = 1024
    num_layers: int = 4
    num_heads: int = 4
    seqlen: int = 256
    batch_size: int = 8
    steps: int | None = None  # None: one epoch of the windows
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 50
    eval_windows: int = 16  # held-out windows of seqlen tokens per corpus for the manifest
    eval_corpora: tuple[str, ...] = field(default=UNLIKE)

    def key(self, corpora_versions: Mapping[str, str | None]) -> str:
        """A digest of what the weights depend on; a partial run resumes only under the same key."""
        record = {
            k: v for k, v in asdict(self).items() if k not in ("checkpoint_every", "eval_windows", "eval_corpora")
        }
        text = json.dumps([FORMAT, record, dict(sorted(corpora_versions.items()))], sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


FULL = TrainConfig()  # the ``tiny-known`` preset


# ---------------------------------------------------------------- data


def select_documents(config: TrainConfig, corpora: Mapping | None = None) -> dict[str, list]:
    """Per mix corpus, the calibration-pool documents trained on, in training order.

    ``corpora``: name -> :class:`~calibprune.corpora.Corpus` (tests pass small ones);
    by default the registered corpora. The pool is put in a seeded order (by
    ``random.Random(f"{seed}:{name}")``), then whole documents are taken until the quota's
    characters are reached.
    """
    chosen = {}
    for name, quota in config.mix:
        corpus = _corpus(name, corpora)
        docs = sorted(corpus.documents("calib"), key=lambda d: d.id)
        random.Random(f"{config.seed}:{name}").shuffle(docs)
        if quota is not None:
            taken, chars = [], 0
            for doc in docs:
                if chars >= quota:
                    break
                taken.append(doc)
                chars += len(doc.text)
            if chars < quota:
                raise CalibpruneError(
                    f"corpus {name!r}: its calibration pool holds {chars:,} characters, fewer than the mix's "
                    f"quota of {quota:,}: lower the quota or pass None (the whole pool)"
                )
            docs = taken
        if not docs:
            raise CalibpruneError(f"corpus {name!r}: its calibration pool is empty; install it (`calibprune corpora`)")
        chosen[name] = docs
    return chosen


def _corpus(name: str, corpora: Mapping | None):
    if corpora is not None:
        return corpora[name]
    from ..corpora import get_corpus  # corpora sit beside models: imported when used

    return get_corpus(name)


def _corpus_version(name: str, corpora: Mapping | None) -> str | None:
    return _corpus(name, corpora).version()


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (GPT-2 style: every byte representable, no unknown
    token) trained on ``texts``; ``<|endoftext|>`` is its one special token, the document
    separator, BOS, EOS and padding alike (it adds no special tokens to an encoding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=EOT, eos_token=EOT, unk_token=EOT, pad_token=EOT, model_max_length=1 << 30
    )


def build_windows(documents: dict[str, list], tokenizer, seqlen: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Windows ``[n, seqlen]`` (int32) cut from each corpus's stream (documents each
    followed by ``<|endoftext|>``; the remainder under one window is dropped), the index of
    each window's corpus in the mix, and the token counts per corpus."""
    eot = tokenizer.convert_tokens_to_ids(EOT)
    windows, owners, counts = [], [], {}
    for i, (name, docs) in enumerate(documents.items()):
        encoded = tokenizer([d.text for d in docs], add_special_tokens=False, return_attention_mask=False)["input_ids"]
        stream = [t for ids in encoded for t in (*ids, eot)]
        n = len(stream) // seqlen
        counts[name] = {"documents": len(docs), "characters": sum(len(d.text) for d in docs), "tokens": len(stream)}
        counts[name]["tokens_in_windows"] = n * seqlen
        if n == 0:
            raise CalibpruneError(f"corpus {name!r}: {len(stream)} tokens do not fill one window of {seqlen}")
        windows.append(torch.tensor(stream[: n * seqlen], dtype=torch.int32).view(n, seqlen))
        owners.append(torch.full((n,), i, dtype=torch.int8))
    return torch.cat(windows), torch.cat(owners), counts


def window_order(n_windows: int, epoch: int, seed: int) -> torch.Tensor:
    """The order windows are read in during ``epoch`` (a seeded permutation per epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_windows, generator=generator)


def batch_indices(step: int, n_windows: int, batch_size: int, seed: int) -> torch.Tensor:
    """Window indices of ``step`` (0-based): the step's slice of the epoch orders, end to end."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n_windows)
        order = window_order(n_windows, epoch, seed)
        out += order[offset : offset + batch_size - len(out)].tolist()
    return torch.tensor(out)


# ---------------------------------------------------------------- model and schedule


def llama_config(config: TrainConfig, tokenizer):
    from transformers import LlamaConfig

    eot = tokenizer.convert_tokens_to_ids(EOT)
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=max(config.seqlen, 2048),  # RoPE: longer inputs run, untrained beyond seqlen
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        use_cache=True,
    )


def learning_rate(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``total``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(model, config: TrainConfig):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), eps=1e-8, foreach=False)


@contextlib.contextmanager
def deterministic(threads: int):
    """``threads`` torch threads and deterministic algorithms, restored afterwards."""
    before_threads, before_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(before_threads)
        torch.use_deterministic_algorithms(before_det)


# ---------------------------------------------------------------- checkpoints


def _save_checkpoint(work: Path, model, optimizer, state: dict) -> None:
    """Parameters and AdamW moments as safetensors, the rest as JSON; replaced atomically."""
    from safetensors.torch import save_file

    final = work / "checkpoint"
    tmp = temporary_sibling(final)
    tmp.mkdir()
    params = dict(model.named_parameters())  # tied weights once
    save_file({k: v.detach().contiguous() for k, v in params.items()}, str(tmp / "model.safetensors"))
    moments = {}
    for name, p in params.items():
        for key, value in optimizer.state.get(p, {}).items():
            moments[f"{name}::{key}"] = value.detach().reshape(value.shape).contiguous()
    save_file(moments, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state))
    old = work / f".checkpoint.old-{os.getpid()}"
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(work: Path, model, optimizer) -> dict:
    from safetensors.torch import load_file

    folder = work / "checkpoint"
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in load_file(str(folder / "model.safetensors")).items():
            params[name].copy_(value)
    for key, value in load_file(str(folder / "optimizer.safetensors")).items():
        name, slot = key.split("::")
        optimizer.state[params[name]][slot] = value
    return json.loads((folder / "state.json").read_text())


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def heldout_perplexities(model, tokenizer, unigram: torch.Tensor, names, config: TrainConfig, corpora=None) -> dict:
    """Per corpus: perplexity of the model and of the unigram model on the first
    ``eval_windows`` windows of ``seqlen`` tokens of its held-out pool (documents joined
    by blank lines, as :mod:`calibprune.corpora.tokens` joins them; nothing trained on)."""
    from .loading import tokenize

    log_unigram = unigram.log()
    out = {}
    need = config.eval_windows * config.seqlen
    model.eval()
    for name in names:
        texts, chars = [], 0
        for doc in _corpus(name, corpora).documents("heldout"):
            texts.append(doc.text)
            chars += len(doc.text)
            if chars > need * 8:
                break
        ids = torch.tensor(tokenize(tokenizer, "\n\n".join(texts))[:need])
        n = len(ids) // config.seqlen
        if n == 0:
            continue
        chunks = ids[: n * config.seqlen].view(n, config.seqlen)
        nll = sum(  # window by window, four at a time: the logits of a window are seqlen x vocab floats
            torch.nn.functional.cross_entropy(
                model(input_ids=batch, use_cache=False).logits[:, :-1].float().flatten(0, 1),
                batch[:, 1:].flatten(),
                reduction="sum",
            ).item()
            for batch in chunks.split(4)
        )
        count = n * (config.seqlen - 1)
        targets = chunks[:, 1:].flatten()
        out[name] = {
            "windows": n,
            "tokens": count,
            "model": math.exp(nll / count),
            "unigram": math.exp(-log_unigram[targets].mean().item()),
        }
    return out


def shared_ngram_documents(documents: Mapping[str, list], names, n: int = 10, corpora=None) -> dict[str, int]:
    """Per corpus in ``names``: how many of its documents (both pools) share a run of ``n``
    whitespace-separated words with the training text -- text the model has seen inside a
    corpus it was not trained on (e.g. GCIDE quotes the Bible; pycode's docstrings, the docs)."""

    def runs(text: str) -> set[int]:
        words = text.split()
        return {hash(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)}

    seen: set[int] = set()
    for docs in documents.values():
        for doc in docs:
            seen |= runs(doc.text)
    return {name: sum(1 for d in _corpus(name, corpora).documents("all") if runs(d.text) & seen) for name in names}


# ---------------------------------------------------------------- the run


def partial_folder(output: Path) -> Path:
    return output.parent / f".{output.name}.partial"


def train(
    output: str | os.PathLike,
    config: TrainConfig = FULL,
    corpora: Mapping | None = None,
    stop_after: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path | None:
    """Train (or resume) the model of ``config`` into ``output``; returns the folder, or
    None when ``stop_after`` steps of this call ended it early (its checkpoint kept, the
    next call resumes). ``corpora``: name -> Corpus, for tests; by default the registered ones."""
    output = Path(output)
    if output.exists():
        what = "a trained model" if (output / "config.json").exists() else "files"
        raise CalibpruneError(f"{output} already exists and holds {what}: delete it or choose another output")
    say = progress or (lambda message: None)
    versions = {name: _corpus_version(name, corpora) for name, _ in config.mix}
    versions.update({name: _corpus_version(name, corpora) for name in config.eval_corpora})
    key = config.key(versions)
    work = partial_folder(output)
    _claim(work, key)
    with deterministic(config.threads):
        tokenizer, windows, owners, documents, counts = _prepared_data(work, config, corpora, say)
        per_epoch = len(windows) // config.batch_size
        total = config.steps or per_epoch
        if total < 1:
            raise CalibpruneError(f"{len(windows)} windows do not fill one batch of {config.batch_size}")
        from transformers import LlamaForCausalLM

        torch.manual_seed(config.seed)
        model = LlamaForCausalLM(llama_config(config, tokenizer))
        model.train()
        optimizer = _optimizer(model, config)
        state = {"step": 0, "losses": [], "seconds": 0.0}
        if (work / "checkpoint").exists():
            state = _load_checkpoint(work, model, optimizer)
            say(f"resuming from step {state['step']} of {total} ({work / 'checkpoint'})")
        ran = 0
        started = time.perf_counter()
        while state["step"] < total:
            step = state["step"]
            batch = windows[batch_indices(step, len(windows), config.batch_size, config.seed)].long()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total, config)
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state["losses"].append(round(loss.item(), 5))
            state["step"] = step + 1
            ran += 1
            done = state["step"] == total or (stop_after is not None and ran >= stop_after)
            if done or state["step"] % config.checkpoint_every == 0:
                state["seconds"] += time.perf_counter() - started
                started = time.perf_counter()
                _save_checkpoint(work, model, optimizer, state)
                rate = state["step"] * config.batch_size * config.seqlen / max(state["seconds"], 1e-9)
                say(f"step {state['step']}/{total}: loss {loss.item():.3f}, {rate:,.0f} tokens/s")
            if state["step"] < total and stop_after is not None and ran >= stop_after:
                return None
        model.eval()
        unigram = _unigram(windows, len(tokenizer))
        names = [name for name, _ in config.mix] + list(config.eval_corpora)
        say("measuring held-out perplexity")
        heldout = heldout_perplexities(model, tokenizer, unigram, names, config, corpora)
        selected = select_documents(config, corpora)  # the texts again (their ids are in ``documents``)
        if {k: [d.id for d in v] for k, v in selected.items()} != documents:
            raise CalibpruneError(f"the corpora changed during the run (documents differ from {work / 'data'})")
        shared = shared_ngram_documents(selected, config.eval_corpora, corpora=corpora)
        platform = _platform()  # inside: the thread count trained with
    manifest = {
        "format": FORMAT,
        "key": key,
        "config": asdict(config),
        "mix_rule": MIX_RULE,
        "mix": [
            {"corpus": name, "pool": "calib", "quota_characters": quota, **counts[name]} for name, quota in config.mix
        ],
        "not_trained_on": list(config.eval_corpora),
        "documents_sharing_a_10_word_run_with_the_training_text": shared,
        "windows": len(windows),
        "steps": total,
        "epochs": total * config.batch_size / len(windows),
        "tokens_seen": total * config.batch_size * config.seqlen,
        "parameters": sum(p.numel() for p in model.parameters()),
        "loss_curve": state["losses"],
        "train_seconds": round(state["seconds"], 1),
        "heldout_perplexity": heldout,
        "corpus_versions": versions,
        "platform": platform,
    }
    return _publish(work, output, model, tokenizer, manifest, documents)


def _claim(work: Path, key: str) -> None:
    """Use ``work`` for this run: a fresh folder, or a partial run of the same key (resumed)."""
    stamp = work / "key"
    if work.exists():
        if stamp.exists() and stamp.read_text() == key:
            return
        other = stamp.read_text() if stamp.exists() else "?"
        raise CalibpruneError(
            f"{work} holds a partial run of other settings or corpora (key {other}, this run {key}): delete it to "
            "start over, or rerun with the settings it was started with"
        )
    work.mkdir(parents=True)
    stamp.write_text(key)


def _prepared_data(work: Path, config: TrainConfig, corpora, say):
    """Tokenizer, windows and documents of the run: made once, kept in ``work`` for resumes."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    data = work / "data"
    if not (data / "windows.safetensors").exists():
        say("selecting documents from the calibration pools: " + ", ".join(n for n, _ in config.mix))
        documents = select_documents(config, corpora)
        say(f"training a {config.vocab_size}-token BPE tokenizer on {sum(map(len, documents.values())):,} documents")
        tokenizer = train_tokenizer([d.text for docs in documents.values() for d in docs], config.vocab_size)
        windows, owners, counts = build_windows(documents, tokenizer, config.seqlen)
        tmp = temporary_sibling(data)
        tmp.mkdir()
        tokenizer.save_pretrained(tmp / "tokenizer")
        save_file({"windows": windows, "owners": owners}, str(tmp / "windows.safetensors"))
        ids = {name: [d.id for d in docs] for name, docs in documents.items()}
        (tmp / DOCUMENTS).write_text(json.dumps(ids))
        (tmp / "counts.json").write_text(json.dumps(counts))
        os.rename(tmp, data)
    tokenizer = AutoTokenizer.from_pretrained(data / "tokenizer")
    tensors = load_file(str(data / "windows.safetensors"))
    documents = json.loads((data / DOCUMENTS).read_text())
    counts = json.loads((data / "counts.json").read_text())
    say(f"{len(tensors['windows']):,} windows of {config.seqlen} tokens")
    return tokenizer, tensors["windows"], tensors["owners"], documents, counts


def _unigram(windows: torch.Tensor, vocab: int) -> torch.Tensor:
    counts = torch.bincount(windows.reshape(-1).long(), minlength=vocab).double() + 1.0  # add-one
    return counts / counts.sum()


def _platform() -> dict:
    from ..utils.provenance import platform_record

    record = platform_record()
    record["packages"]["tokenizers"] = _version("tokenizers")
    return record


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _publish(work: Path, output: Path, model, tokenizer, manifest: dict, documents: dict) -> Path:
    tmp = temporary_sibling(output)
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / MANIFEST, manifest)
        (tmp / DOCUMENTS).write_text(json.dumps(documents))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_directory(tmp, output, overwrite=False)
    shutil.rmtree(work, ignore_errors=True)
    return output


def tiny_config(**overrides) -> TrainConfig:
    """A seconds-long configuration for tests: two blocks of width 32 on a few windows."""
    base = TrainConfig(
        mix=MIX,
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=2,
        seqlen=32,
        batch_size=2,
        steps=6,
        warmup_steps=2,
        checkpoint_every=2,
        eval_windows=2,
        threads=1,
    )
    return replace(base, **overrides)
