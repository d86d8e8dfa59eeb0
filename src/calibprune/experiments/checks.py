"""Checks of a study against what its stages will read, run by ``load_study`` before any
work (so ``sweep --dry-run`` reports the same problems). Each names the spec's key path
and the fix.

* **text fields**: a local ``.jsonl``/``.parquet``/``.arrow`` source must hold the
  ``text_field`` (the first record's keys, or the columns of the schema); ``text_field``
  on a source without fields (a ``.txt`` file, a named corpus) is refused as unread.
* **pool size**: a calibration pool must be able to fill ``nsamples x seqlen`` tokens.
  The rule, for a local or offline source (hub sources are not read before their stage):
  every token of a byte-level BPE or byte-fallback SentencePiece tokenizer stands for at
  least one byte of the text, plus at most one marker a tokenizer may put in front, so a
  text of B UTF-8 bytes is at most B + 1 tokens. ``stream`` sampling joins the pool's
  documents with blank lines: it holds at most bytes + 2 per document tokens. ``document``
  sampling needs ``nsamples`` documents of more than ``seqlen`` tokens: only documents of
  at least ``seqlen`` bytes can be. A pool below the bound is refused from the corpus's
  cached sizes (:func:`~calibprune.corpora.stats.corpus_stats`), without a tokenizer.
  Above it the tokens still depend on the tokenizer (English runs ~4 bytes a token), so
  where the bound is within :data:`CLOSE` times of what is needed and the model's
  tokenizer is on this machine, the ``sample`` strategy's pool is tokenized once, as its
  stage will, and checked exactly. A pool more than :data:`CLOSE` times larger than needed
  is not tokenized (its stage reports a shortfall). ``detect`` pools are checked against
  the bound (its kept texts are a part of the pool); ``synthetic`` pools are generated.
* **report metrics**: ``report.primary_metric`` must be one the study's cells produce
  (``ppl/<corpus>``, ``acc/<task>``, ``acc_norm/<task>`` where the task reports it,
  ``acc/average``); read only when the study has pruning settings.
"""

from __future__ import annotations

from ..errors import CalibpruneError, MissingAssetError

CLOSE = 8


def check_text_field(corpus, entry: dict, text_field: str, path: str) -> None:
    """``entry``: the spec's strategy entry (was ``text_field`` given?); ``path``: its key path."""
    from ..corpora.local import LocalCorpus

    fielded = corpus.field_names() if isinstance(corpus, LocalCorpus) else []
    if not fielded:
        if "text_field" in entry:
            raise CalibpruneError(
                f"{path}.text_field: {corpus.name!r} has no fields to choose from (text_field applies to "
                f".jsonl/.parquet/.arrow sources): remove text_field"
            )
        return
    for file, fields in fielded:
        if text_field not in fields:
            given = "" if "text_field" in entry else " (not set: the default)"
            close = [f for f in fields if f.lower() == text_field.lower()]
            fix = f"set text_field: {close[0]}" if close else "set text_field to the field that holds the text"
            raise CalibpruneError(
                f"{path}.text_field: {text_field!r}{given} is not a field of {file} (its first record's fields: "
                f"{', '.join(fields) or 'none'}): {fix}"
            )


def pool_stats(corpus) -> dict | None:
    """The calib pool's cached sizes, or None where they cannot be had without network or an install."""
    from ..corpora.hub import HubCorpus
    from ..corpora.stats import corpus_stats

    if isinstance(corpus, HubCorpus):
        return None
    try:
        return corpus_stats(corpus)["calib"]
    except MissingAssetError:  # not installed: its stage says how to install it
        return None


def check_pool(corpus, job, where: dict, path: str, tokenizer_of=None, counted: dict | None = None) -> None:
    """Refuse a pool that cannot fill ``job.nsamples x job.seqlen`` tokens (rule: module docstring).

    ``where``: the key path each of nsamples/seqlen came from; ``tokenizer_of``: loads the
    model's tokenizer, for the exact count of a close call only (None: bound only); ``counted``: token counts
    already made with that tokenizer (filled here), so variants of one source tokenize once."""
    if job.builder.windows_from == "generated":  # its windows come from generated text, not the source
        return
    stats = pool_stats(corpus)
    if stats is None:
        return
    mode = job.sampling or corpus.sampling
    nsamples, seqlen = job.nsamples, job.seqlen
    fix = (
        f"lower {where['nsamples']} or {where['seqlen']}"
        + (", or sampling: stream (join documents, then window)" if mode == "document" else "")
        + ", or use a larger source"
    )
    pool = f"the calib pool of {corpus.name}"
    if mode == "stream":
        needed, most = nsamples * seqlen, stats["bytes"] + 2 * stats["documents"] + 1
        if most < needed:
            raise CalibpruneError(
                f"{path}: nsamples x seqlen = {nsamples} x {seqlen} = {needed:,} tokens, but {pool} holds at most "
                f"{most:,} ({stats['bytes']:,} bytes of text in {stats['documents']:,} documents; a token is at "
                f"least one byte): {fix}"
            )
        close = most < CLOSE * needed
    else:
        longest = stats["longest"]
        can = sum(1 for size in longest if size + 1 > seqlen)
        known = len(longest) == stats["documents"] or can < len(longest)
        if known and can < nsamples:
            raise CalibpruneError(
                f"{path}: document sampling needs nsamples = {nsamples} documents longer than seqlen = {seqlen} "
                f"tokens, but only {can} of the {stats['documents']:,} documents in {pool} have {seqlen} bytes or "
                f"more (a token is at least one byte): {fix}"
            )
        close = known and can < CLOSE * nsamples
    if close and tokenizer_of is not None and job.builder.windows_from == "source":
        _check_exact(corpus, tokenizer_of, job, mode, pool, path, fix, {} if counted is None else counted)


def _check_exact(corpus, tokenizer_of, job, mode: str, pool: str, path: str, fix: str, counted: dict) -> None:
    from ..calibration.sampling import stream_tokens
    from ..models.loading import tokenize

    if (corpus.name, mode) not in counted:
        texts, tokenizer = corpus.texts("calib"), tokenizer_of()
        counted[(corpus.name, mode)] = (
            len(stream_tokens(texts, tokenizer)) if mode == "stream" else [len(tokenize(tokenizer, t)) for t in texts]
        )
    count = counted[(corpus.name, mode)]
    if mode == "stream":
        have, needed = count, job.nsamples * job.seqlen
        if have < needed:
            raise CalibpruneError(
                f"{path}: nsamples x seqlen = {job.nsamples} x {job.seqlen} = {needed:,} tokens, but {pool} holds "
                f"{have:,} tokens with this model's tokenizer: {fix}"
            )
        return
    long_enough = sum(1 for tokens in count if tokens > job.seqlen)
    if long_enough < job.nsamples:
        raise CalibpruneError(
            f"{path}: document sampling needs nsamples = {job.nsamples} documents longer than seqlen = {job.seqlen} "
            f"tokens, but {pool} has {long_enough} with this model's tokenizer: {fix}"
        )


def produced_metrics(evaluation) -> list[str]:
    """The metric names the study's cells report (what ``metrics_of`` will find)."""
    from ..evaluation.tasks import task_configs

    names = [f"ppl/{corpus}" for corpus in (evaluation.ppl.corpora if evaluation.ppl else [])]
    for task in evaluation.tasks.names if evaluation.tasks else []:
        names.append(f"acc/{task}")
        try:
            reported = {m["metric"] for config in task_configs(task)[:1] for m in config.get("metric_list", [])}
        except Exception:  # data not installed (MMLU lists its subjects from disk): assume both
            reported = {"acc_norm"}
        if "acc_norm" in reported:
            names.append(f"acc_norm/{task}")
    if evaluation.tasks:
        names.append("acc/average")
    return names


def check_primary_metric(study) -> None:
    wanted = (study.report or {}).get("primary_metric")
    if wanted is None or not study.settings:
        return
    produced = produced_metrics(study.evaluation)
    if wanted not in produced:
        near = [m for m in produced if m.split("/")[0] == str(wanted).split("/")[0]] or produced
        raise CalibpruneError(
            f"report.primary_metric: {wanted!r} is not a metric this study's cells produce: use one of "
            f"{', '.join(near)} (metrics are ppl/<evaluation.ppl corpus>, acc/<task>, acc_norm/<task>, acc/average)"
        )
