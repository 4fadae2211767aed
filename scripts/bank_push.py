"""Bank a response cache in DVC, one output per entry (a hash folder `ab/`, a ledger segment): commit, push.

The bank's `.dvc` file lists one output per entry of the cache folder, not one for the whole folder: one
output made one manifest naming every response (5 MB at 36,600 responses), a file the in-repo remote,
tracked by git, should not hold; a hash folder's manifest is 1/256 of it, and the ledger closes its
segments at 1 MiB (`syncse.llm.ledger.SEGMENT_BYTES`). Entries already listed keep their recorded hashes
until `dvc commit` renews them; new ones (a new ledger segment) are added. Hidden files (half-written
entries) are left out, as `.dvcignore` leaves out claims.

    python scripts/bank_push.py [--dvc-file study-cache.dvc] [--cache-dir study-cache/llm] [--no-push]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

DVC = [sys.executable, "-m", "dvc"]

def bank_outputs(dvc_file: Path, cache_dir: Path) -> list[dict[str, Any]]:
    """The `outs` of `dvc_file` for every entry of `cache_dir` (paths relative to the file's folder),
    in name order, each with the hashes `dvc_file` records for it, if any."""
    recorded = yaml.safe_load(dvc_file.read_text())["outs"] if dvc_file.is_file() else []
    by_path = {out["path"]: out for out in recorded}
    entries = sorted(entry for entry in cache_dir.iterdir() if not entry.name.startswith("."))
    paths = [Path(os.path.relpath(entry, dvc_file.parent)).as_posix() for entry in entries]
    return [by_path.get(path, {"path": path}) for path in paths]


def not_in_cache(dvc_file: Path) -> list[str]:
    """The outputs of `dvc_file` whose recorded hash is not in the local DVC cache (`dvc status`)."""
    done = subprocess.run([*DVC, "status", "--json", str(dvc_file)],
                          capture_output=True, text=True, check=True)
    changes = json.loads(done.stdout or "{}").get(Path(os.path.relpath(dvc_file)).as_posix(), [])
    return [path for change in changes for path, state in change.get("changed outs", {}).items()
            if state == "not in cache"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dvc-file", type=Path, default=Path("study-cache.dvc"))
    parser.add_argument("--cache-dir", type=Path, default=Path("study-cache/llm"))
    parser.add_argument("--no-push", action="store_true", help="commit to the local DVC cache only")
    args = parser.parse_args()
    if not args.cache_dir.is_dir():
        parser.error(f"{args.cache_dir}: no such response cache")
    outs = bank_outputs(args.dvc_file, args.cache_dir)
    if not outs:
        parser.error(f"{args.cache_dir}: empty, nothing to bank")
    written = args.dvc_file.with_name(f".{args.dvc_file.name}.tmp")  # whole or not at all
    written.write_text(yaml.safe_dump({"outs": outs}, sort_keys=False))
    written.replace(args.dvc_file)
    for _ in range(3):  # seen once beside a writing worker: a folder recorded but not stored; a new commit stores it
        subprocess.run([*DVC, "commit", "--force", "--quiet", str(args.dvc_file)], check=True)
        if not (missing := not_in_cache(args.dvc_file)):
            break
    else:
        sys.exit(f"{args.dvc_file}: not in the DVC cache after 3 commits: {', '.join(missing)}")
    if not args.no_push:
        subprocess.run([*DVC, "push", "--quiet", str(args.dvc_file)], check=True)
    done = "committed" if args.no_push else "committed and pushed"
    print(f"{args.dvc_file}: {len(outs)} outputs of {args.cache_dir} {done}")


if __name__ == "__main__":
    main()
