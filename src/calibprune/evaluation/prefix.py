"""Shared-prefix log-likelihoods: every piece of text that requests share is computed once.

lm-eval asks for ``log p(continuation | context)`` per request, and requests share a
lot: the choices of a question share its context, and the questions of an MMLU subject
share the description and the k-shot examples (most of each prompt's tokens). Each
request (``context + continuation``, truncated to the window exactly as on the plain
path) is therefore split into a tree of at most three levels, and each node runs once:

* **group prefix** ``P`` — the longest token prefix shared by a group of contexts
  (:func:`prefix_groups`; e.g. one MMLU subject's description and examples);
* **context** — the rest of one context, run over ``P``'s KV cache; its last position
  gives ``log p(k_1 | context)`` for every request with that context (so a
  single-token continuation such as MMLU's " A" needs nothing more);
* **continuation** — ``k_1 .. k_{n-1}`` of one request with ``n >= 2`` tokens, run over
  its context's KV cache; position ``t`` gives ``log p(k_{t+1} | context, k_<=t)``.

The request's log-likelihood is the sum over its continuation tokens and ``is_greedy``
says whether every one of them was the argmax, as on the plain path.

A node's KV cache is gathered into the batch of its children (expanded over them).
Every forward uses one layout::

    [ pad .. pad | parent's tokens (cached) ] [ new tokens | pad .. pad ]
      left-padded past                          right-padded inputs

with a 2D attention mask that is 0 on pads and position ids ``len(parent) + j``, so
rotary positions continue from the prefix length. Because the past is left-padded
and the inputs follow it directly, the distance between two cache indices equals the
distance between their positions for every real token, so the sliding-window masks
that transformers builds from cache indices (Gemma-3, Mistral) are exact as well. The
cache is a plain ``DynamicCache`` (no per-layer window cropping) so that a node's
cached keys cover its whole sequence.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..scoring.tokens import reduce_logits as _reduce
from .names import SCORING_PATHS  # noqa: F401  (harness imports it from here)


def supports_shared_prefix(model) -> str | None:
    """``None`` if ``model`` can score over a gathered KV cache, else the reason it cannot."""
    params = inspect.signature(model.forward).parameters
    missing = [p for p in ("position_ids", "attention_mask") if p not in params]
    if _cache_argument(model) not in params:
        missing.append("cache")
    if missing:
        return f"{type(model).__name__}.forward takes no {', '.join(missing)}"
    if getattr(model.config, "is_encoder_decoder", False):
        return "encoder-decoder model"
    return None


def _cache_argument(model) -> str:
    """The forward argument a KV cache goes in (``past_key_values`` before transformers 5.x renamed it)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


# --- grouping contexts by their longest shared prefix ---------------------------------------


def _lcp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def prefix_groups(contexts: list[tuple[int, ...]], min_saving: int = 16) -> list[tuple[int, list[int]]]:
    """Partition ``contexts`` into ``(prefix_length, [indices])`` groups whose members
    share their first ``prefix_length`` tokens (0: no shared prefix, run alone).

    The contexts are sorted, so the ones sharing a prefix are adjacent and the prefix of
    a run is the minimum LCP of its neighbours. A run sharing ``p`` tokens saves
    ``(k - 1) * p`` computed tokens; splitting it where that minimum is reached gives
    sub-runs sharing longer prefixes. Each run takes whichever saves more, itself or the
    best of its sub-runs (e.g. all MMLU prompts share "The following are multiple
    choice questions", but each subject shares its few-shot examples, far more).
    ``p`` never exceeds a member's length minus one: the last context token must run to
    predict the continuation. Groups saving fewer than ``min_saving`` tokens are dissolved.
    """
    order = sorted(range(len(contexts)), key=lambda i: contexts[i])
    seqs = [contexts[i] for i in order]
    lcp = [_lcp(seqs[i], seqs[i + 1]) for i in range(len(seqs) - 1)]

    def best(lo: int, hi: int, depth: int = 0) -> tuple[int, list[tuple[int, int, int]]]:
        """(tokens saved, [(prefix, lo, hi)]) for the run seqs[lo:hi]."""
        if hi - lo < 2:
            return 0, [(0, lo, hi)]
        p = min(min(lcp[lo : hi - 1]), min(len(s) for s in seqs[lo:hi]) - 1)
        whole = (hi - lo - 1) * p
        if depth > 64:  # pathological nesting: stop refining
            return whole, [(p, lo, hi)]
        cuts = [lo] + [i + 1 for i in range(lo, hi - 1) if lcp[i] <= p] + [hi]
        if len(cuts) == 2:  # no neighbour at the minimum (capped by a member's length)
            return whole, [(p, lo, hi)]
        parts = [best(a, b, depth + 1) for a, b in pairwise(cuts)]
        split = sum(saved for saved, _ in parts)
        if split > whole:
            return split, [g for _, groups in parts for g in groups]
        return whole, [(p, lo, hi)]

    _, runs = best(0, len(seqs))
    out, alone = [], []
    for p, lo, hi in runs:
        members = [order[i] for i in range(lo, hi)]
        if p == 0 or (hi - lo - 1) * p < min_saving:
            alone.extend(members)
        else:
            out.append((p, sorted(members)))
    if alone:
        out.append((0, sorted(alone)))
    return out


# --- one level of the tree: batched forwards over gathered parent caches ----------------


@dataclass
class _Node:
    tokens: list[int]  # the new tokens this node runs
    parent: _Node | None = None
    keep: bool = False  # children need its KV cache
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer [heads, past + len, dim]
    requests: list[int] = field(default_factory=list)  # a context: the requests it answers
    request: int = -1  # a continuation: its request

    @property
    def past(self) -> int:
        return self.parent.length if self.parent is not None else 0

    @property
    def length(self) -> int:
        return self.past + len(self.tokens)


@dataclass
class PrefixStats:
    """What the shared-prefix path computed (``tokens``: real input positions run)."""

    forwards: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    requests: int = 0
    contexts: int = 0
    groups: int = 0
    group_prefix_tokens: int = 0
    plain_fallback_requests: int = 0  # no context left after truncation: scored on the plain path

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _batches(nodes: list[_Node], max_batch_size: int, max_batch_tokens: int) -> list[list[_Node]]:
    """Longest first (padding of the new tokens costs compute, of the past only memory);
    a batch holds <= max_batch_size rows, <= max_batch_tokens new positions and
    <= 2 * max_batch_tokens cached positions (KV memory)."""
    order = sorted(nodes, key=lambda n: (len(n.tokens), n.past), reverse=True)
    batches, current, past = [], [], 0
    for node in order:
        rows, width = len(current) + 1, len(current[0].tokens) if current else len(node.tokens)
        longest = max(past, node.past)
        if current and (
            rows > max_batch_size or rows * width > max_batch_tokens or rows * (longest + width) > 2 * max_batch_tokens
        ):
            batches.append(current)
            current, longest = [], node.past
        current.append(node)
        past = longest
    if current:
        batches.append(current)
    return batches


def _cache(batch: list[_Node], past: int):
    """A DynamicCache holding each row's parent keys/values, left-padded to ``past``."""
    from transformers import DynamicCache

    if past == 0:
        return DynamicCache()
    first = next(n.parent.kv for n in batch if n.parent is not None)
    layers = []
    for layer, (k0, v0) in enumerate(first):
        heads, _, dim = k0.shape
        keys = k0.new_zeros(len(batch), heads, past, dim)
        values = v0.new_zeros(len(batch), v0.shape[0], past, v0.shape[-1])
        for row, node in enumerate(batch):
            if node.parent is not None:
                k, v = node.parent.kv[layer]
                keys[row, :, past - k.shape[1] :] = k
                values[row, :, past - v.shape[1] :] = v
        layers.append((keys, values))
    return DynamicCache(ddp_cache_data=layers)


def _run(model, batch: list[_Node], stats: PrefixStats, last_only: bool):
    """One forward over ``batch``; returns logits ``[rows, width, vocab]`` (or, with
    ``last_only``, ``[rows, vocab]`` at each row's last token) and stores kept caches."""
    device = next(model.parameters()).device
    past = max(n.past for n in batch)
    width = max(len(n.tokens) for n in batch)
    rows = len(batch)
    ids = torch.zeros(rows, width, dtype=torch.long)
    mask = torch.zeros(rows, past + width, dtype=torch.long)
    positions = torch.zeros(rows, width, dtype=torch.long)
    for row, node in enumerate(batch):
        n = len(node.tokens)
        ids[row, :n] = torch.as_tensor(node.tokens, dtype=torch.long)
        mask[row, past - node.past : past + n] = 1
        positions[row] = node.past + torch.arange(width)  # pads continue harmlessly
    keep = any(n.keep for n in batch)
    kwargs = {}
    lasts = torch.tensor([len(n.tokens) - 1 for n in batch])
    if last_only and "logits_to_keep" in inspect.signature(model.forward).parameters:
        # only the distinct last positions go through the LM head (a vocabulary-sized row each)
        keep_at = torch.unique(lasts)
        kwargs["logits_to_keep"] = keep_at.to(device)
        lasts = torch.searchsorted(keep_at, lasts)
    cache = _cache(batch, past)  # grown in place by the forward
    kwargs[_cache_argument(model)] = cache
    out = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        use_cache=True,
        **kwargs,
    )
    stats.forwards += 1
    stats.tokens += sum(len(n.tokens) for n in batch)
    stats.padded_tokens += rows * width
    if keep:
        for row, node in enumerate(batch):
            if node.keep:
                span = slice(past - node.past, past + len(node.tokens))
                node.kv = [(layer.keys[row, :, span], layer.values[row, :, span]) for layer in cache.layers]
    logits = out.logits
    if last_only:
        return logits[torch.arange(rows, device=logits.device), lasts.to(logits.device)]
    return logits


# --- the scorer ---------------------------------------------------------------------------


@torch.no_grad()
def shared_prefix_loglikelihoods(
    model,
    pairs: list[tuple[list[int], list[int]]],
    max_batch_size: int = 8,
    max_batch_tokens: int = 4096,
    min_saving: int = 16,
    progress: bool = False,
    stats: PrefixStats | None = None,
) -> list[tuple[float, bool]]:
    """``(sum log p(continuation | context), is_greedy)`` per ``(context, continuation)``
    pair; contexts must be non-empty (the caller truncates to the window first)."""
    stats = stats if stats is not None else PrefixStats()
    if any(not c or not k for c, k in pairs):
        raise ValueError("shared-prefix scoring needs a non-empty context and continuation per request")
    stats.requests += len(pairs)
    by_context: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, (context, _) in enumerate(pairs):
        by_context[tuple(context)].append(i)
    contexts = list(by_context)
    groups = prefix_groups(contexts, min_saving)
    stats.contexts += len(contexts)
    stats.groups += sum(1 for p, _ in groups if p)
    stats.group_prefix_tokens += sum(p for p, _ in groups)

    results: list[tuple[float, bool] | None] = [None] * len(pairs)
    bar = tqdm(total=len(pairs), desc="loglikelihood", unit="req", disable=not progress, leave=False)
    for wave in _waves(groups, contexts, by_context, pairs, 2 * max_batch_tokens):
        prefixes, context_nodes, continuation_nodes = _tree(wave, contexts, by_context, pairs)
        for batch in _batches(prefixes, max_batch_size, max_batch_tokens):
            _run(model, batch, stats, last_only=True)
        first: dict[int, tuple[float, bool]] = {}
        for batch in _batches(context_nodes, max_batch_size, max_batch_tokens):
            logprobs = F.log_softmax(_run(model, batch, stats, last_only=True).float(), dim=-1).cpu()
            best = logprobs.argmax(-1)
            for row, node in enumerate(batch):
                for i in node.requests:
                    token = pairs[i][1][0]
                    first[i] = (float(logprobs[row, token]), bool(best[row] == token))
        for node in prefixes:
            node.kv = None  # contexts are done with their prefixes' caches
        rest: dict[int, tuple[float, bool]] = {}
        for batch in _batches(continuation_nodes, max_batch_size, max_batch_tokens):
            logits = _run(model, batch, stats, last_only=False)
            targets = torch.zeros(logits.shape[:2], dtype=torch.long)
            for row, node in enumerate(batch):
                targets[row, : len(node.tokens)] = torch.as_tensor(pairs[node.request][1][1:])
            reduced = _reduce(logits, targets.to(logits.device), distribution=False, greedy=True, chunk_tokens=1024)
            for row, node in enumerate(batch):
                n = len(node.tokens)
                rest[node.request] = (
                    float(reduced["logprob"][row, :n].sum()),
                    bool(reduced["greedy"][row, :n].all()),
                )
        for node in context_nodes:
            node.kv = None
        for i in first:
            lp, greedy = first[i]
            if i in rest:
                lp, greedy = lp + rest[i][0], greedy and rest[i][1]
            results[i] = (lp, greedy)
        bar.update(len(first))
    bar.close()
    return results  # type: ignore[return-value]


def _waves(groups, contexts, by_context, pairs, budget: int):
    """Consecutive groups whose cached tokens (prefixes, and contexts with multi-token
    continuations) stay within ``budget``, so memory does not grow with the task size."""
    wave, held = [], 0
    for p, members in groups:
        if p == 0:  # ungrouped contexts: split into pseudo-groups of one context each
            units = [(0, [j]) for j in members]
        else:
            units = [(p, members)]
        for unit in units:
            cost = unit[0] + sum(
                len(contexts[j]) for j in unit[1] if any(len(pairs[i][1]) > 1 for i in by_context[contexts[j]])
            )
            if wave and held + cost > budget:
                yield wave
                wave, held = [], 0
            wave.append(unit)
            held += cost
    if wave:
        yield wave


def _tree(wave, contexts, by_context, pairs):
    prefixes: list[_Node] = []
    context_nodes: list[_Node] = []
    continuation_nodes: list[_Node] = []
    for p, members in wave:
        parent = None
        if p:
            parent = _Node(list(contexts[members[0]][:p]), keep=True)
            prefixes.append(parent)
        for j in members:
            node = _Node(list(contexts[j][p:]), parent=parent, requests=by_context[contexts[j]])
            for i in node.requests:
                continuation = pairs[i][1]
                if len(continuation) > 1:
                    node.keep = True
                    continuation_nodes.append(_Node(list(continuation[:-1]), parent=node, request=i))
            context_nodes.append(node)
    return prefixes, context_nodes, continuation_nodes
