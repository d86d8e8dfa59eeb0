"""The paper's four calibration sources and its perplexity data, by Hugging Face dataset name (needs network).

=============  ===========================================================  ==========
name           dataset (config / files)                                     sampling
=============  ===========================================================  ==========
c4             allenai/c4, en/c4-train.00000-of-01024.json.gz (as Wanda)     document
wikipedia      wikimedia/wikipedia, 20231101.en                             stream
slimpajama     cerebras/SlimPajama-627B, train (streamed)                   document
dclm           mlfoundations/dclm-baseline-1.0, train (streamed)            document
alpaca         tatsu-lab/alpaca, train, field ``text`` (the paper's          document
               language-modelling test data, distinct from the four sources)
=============  ===========================================================  ==========

Documents are streamed; ``max_documents`` bounds how many are read (the first ones
of the stream, a fixed prefix, so the same arguments give the same pool).
Offline, a hub corpus fails at once, naming the corpora that work offline.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import CalibpruneError
from .base import Corpus, Document


@dataclass(frozen=True)
class HubSource:
    path: str
    name: str | None = None
    data_files: str | None = None
    split: str = "train"
    text_field: str = "text"
    sampling: str = "document"


HUB_SOURCES = {
    "c4": HubSource("allenai/c4", data_files="en/c4-train.00000-of-01024.json.gz"),
    "wikipedia": HubSource("wikimedia/wikipedia", name="20231101.en", sampling="stream"),
    "slimpajama": HubSource("cerebras/SlimPajama-627B"),
    "dclm": HubSource("mlfoundations/dclm-baseline-1.0"),
    # the paper's perplexity data (Sec. 5.1: "distinct from all four calibration data sources")
    "alpaca": HubSource("tatsu-lab/alpaca"),
}


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


class HubCorpus(Corpus):
    def __init__(self, name: str, max_documents: int = 50_000, offline_names: tuple[str, ...] = ()):
        self.name = name
        self.source = HUB_SOURCES[name]
        self.sampling = self.source.sampling
        self.max_documents = max_documents
        self.offline_names = offline_names
        self.description = f"Hugging Face dataset {self.source.path} (first {max_documents:,} documents, streamed)"

    def check_available(self) -> None:
        if not hub_reachable():
            raise CalibpruneError(
                f"corpus {self.name!r} is the Hugging Face dataset {self.source.path}, and the hub cannot be reached "
                f"from here; offline corpora: {', '.join(self.offline_names)} (or pass a local file)"
            )

    def _all_documents(self) -> Iterator[Document]:
        self.check_available()
        from datasets import load_dataset

        stream = load_dataset(
            self.source.path,
            self.source.name,
            data_files=self.source.data_files,
            split=self.source.split,
            streaming=True,
        )
        for index, record in enumerate(stream):
            if index >= self.max_documents:
                break
            yield Document(id=str(record.get("id", record.get("url", index))), text=record[self.source.text_field])
