"""Wall time of ``calibprune ... --help`` for every command, in fresh processes.

The CLI imports torch, transformers and lm-eval only inside the commands, so --help
pays for Python, typer and rich alone (target: < 0.5 s). For scale, each repeat also
times a process that imports what the CLI used to import before parsing arguments
(``calibprune.pipeline`` + ``lm_eval``); rows are interleaved within a repeat and the
median over repeats is shown, with each row's ratio to that eager import.
Prints a table and writes ``benchmarks/results/cli_help_speed.json``.

    python benchmarks/cli_help_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
COMMANDS = [
    [],
    ["prune"],
    ["eval"],
    ["calib"],
    ["models"],
    ["corpora"],
    ["analyze"],
    ["analyze", "similarity"],
    ["analyze", "membership"],
]
EAGER = "import calibprune.pipeline, lm_eval"


def _wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=str(RESULTS / "cli_help_speed.json"))
    args = parser.parse_args()

    rows = {
        " ".join(["calibprune", *c, "--help"]): [sys.executable, "-m", "calibprune.cli", *c, "--help"] for c in COMMANDS
    }
    rows[f"python -c '{EAGER}' (the old eager imports)"] = [sys.executable, "-c", EAGER]
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, command in rows.items():  # interleaved: every row sees the same machine load
            times[name].append(_wall(command))
    eager = statistics.median(times[list(rows)[-1]])
    results = [
        {
            "command": name,
            "median_s": round(statistics.median(values), 3),
            "min_s": round(min(values), 3),
            "max_s": round(max(values), 3),
            "ratio_to_eager_import": round(statistics.median(values) / eager, 3),
        }
        for name, values in times.items()
    ]
    print(f"| command | median s | range s | ÷ eager imports |  ({args.repeats} repeats)")
    print("|---|---|---|---|")
    for r in results:
        spread = f"{r['min_s']:.2f}–{r['max_s']:.2f}"
        print(f"| {r['command']} | {r['median_s']:.2f} | {spread} | {r['ratio_to_eager_import']:.2f} |")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"repeats": args.repeats, "rows": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
