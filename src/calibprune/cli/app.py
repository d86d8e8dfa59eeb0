"""The typer app, its consoles, and :func:`main`: how an error or an interrupt is put in words.

What every command shares lives here too: the notices under ``--quiet``, the list
options that take commas, the interrupt note, the quieting of the libraries.
"""

from __future__ import annotations

import errno
import logging
import os
import sys

import typer
from rich.console import Console
from rich.text import Text

from ..cli_options import cli_command, cli_name
from ..errors import CalibpruneError
from ..options import Namer, OptionError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Calibration-aware post-training pruning of LLMs.",
)
# Messages carry user text (paths, corpus names, "N:M: use ..."): rich must print them
# literally, with no markup ([...]), emoji (:M: -> a circled M) or highlighting.
console = Console(stderr=True, markup=False, emoji=False, highlight=False)
out = Console(markup=False, emoji=False, highlight=False)

# How an OptionError raised below the CLI is put in words: its fields as flags (cli_name, over
# CLI_FLAGS and derived_flag), unless a command sets a namer of its own flags.
_namer: dict = {"name": cli_name}

# What an interrupt (Ctrl-C) stops and what it keeps, set by each command before its long work.
_interrupt_note = {"text": "nothing was written", "newline": ""}

ENCODING_HELP = (
    "Encoding of local .txt/.jsonl files (e.g. latin-1, cp1252); text not valid in it is refused, never replaced."
)


def name_errors_with(namer: Namer) -> None:
    """An :class:`OptionError` from below the CLI is rendered with ``namer`` (the command's flags)."""
    _namer["name"] = namer


def styled(label: str, rest: str, style: str = "bold") -> Text:
    """``label`` in ``style``, then ``rest`` printed literally."""
    return Text.assemble((label, style), rest)


def on_interrupt(text: str, quiet: bool) -> None:
    """Say ``text`` if Ctrl-C stops the command: what was interrupted and what was kept."""
    _interrupt_note["text"] = text
    _interrupt_note["newline"] = "" if quiet else "\n"  # a progress bar may hold the current line


def notice(quiet: bool):
    """Where one-line notices (estimates, resume points, resolved options) go: stderr,
    or nowhere under --quiet."""
    from ..estimate import silent  # the jobs measure no rate for a silent notice

    return silent if quiet else (lambda message: console.print(Text(message), soft_wrap=True))


def split(values: list[str] | None) -> tuple[str, ...]:
    """Options that take lists accept both repetition and commas: --ppl a,b --ppl c."""
    return tuple(v.strip() for value in values or [] for v in value.split(",") if v.strip())


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except OptionError as error:
        console.print(styled("error:", f" {error.render(_namer['name'], cli_command)}", "bold red"), soft_wrap=True)
        sys.exit(2)
    except CalibpruneError as error:
        console.print(styled("error:", f" {error}", "bold red"), soft_wrap=True)
        sys.exit(2)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {error.filename}" if error.filename else ""
        console.print(
            styled(
                "error:",
                f" no space left on the device{where}: free some space (or point --output or CALIBPRUNE_CACHE "
                "elsewhere) and rerun; outputs are written to a temporary sibling first, so no finished output "
                "was replaced or left half-written",
                "bold red",
            ),
            soft_wrap=True,
        )
        sys.exit(2)
    except SystemExit as exit_:
        if exit_.code == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into exit status 130, silently
            note = _interrupt_note
            console.print(styled(f"{note['newline']}interrupted:", f" {note['text']}", "bold yellow"), soft_wrap=True)
        raise
