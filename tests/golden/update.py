"""Record every algorithm's revision and fingerprint in tests/golden/revisions.json.

    python tests/golden/update.py                   # after bumping a revision
    python tests/golden/update.py --fixture-changed # the fixture moved (torch/transformers), not an algorithm

Refuses to record a fingerprint that moved while neither its algorithm's revision nor a
revision of what it uses did: bump the revision first (cached results would otherwise
be reused as if nothing had changed). ``--fixture-changed`` records it anyway, for a
change of the fixture itself (library versions, fingerprints.py) that moves no result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import fingerprints as F  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixture-changed", action="store_true", help="record moved fingerprints without a bump")
    args = parser.parse_args(argv)
    from calibprune.experiments.revisions import algorithms, closure

    known = algorithms()
    missing = sorted(set(known) - set(F.FINGERPRINTS))
    if missing:
        print(f"no fingerprint for {', '.join(missing)}: add one to tests/golden/fingerprints.py", file=sys.stderr)
        return 1
    golden = F.load_golden().get("algorithms", {})
    fingerprints = F.compute(sorted(known))
    refused = []
    for name, fingerprint in fingerprints.items():
        old = golden.get(name)
        if old is None or F.same(old["fingerprint"], fingerprint):
            continue
        moved = [u for u in closure([name], known) if u not in golden or golden[u]["revision"] != known[u].revision]
        if not moved and not args.fixture_changed:
            refused.append(f"{name}'s output changed: bump its revision in {known[name].file} first")
    if refused:
        print("\n".join(refused), file=sys.stderr)
        return 1
    record = {
        "about": "revision and output fingerprint of every algorithm; written by tests/golden/update.py, "
        "checked by tests/test_revisions.py",
        "environment": F.environment(),
        "algorithms": {
            name: {"revision": known[name].revision, "file": known[name].file, "fingerprint": fingerprints[name]}
            for name in sorted(known)
        },
    }
    F.GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    changed = [n for n in sorted(known) if n not in golden or golden[n] != record["algorithms"][n]]
    print(f"wrote {F.GOLDEN}: {len(known)} algorithms, {len(changed)} changed ({', '.join(changed) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
