"""Restore a DVC-tracked folder from the repository's local remote, without dvc installed.

The GPU machine has no dvc and no network, but the tracked `dvc-remote/` travels with the working
tree. A `.dvc` file names the folder's `.dir` manifest (md5 -> relative path, DVC's format); each
file is copied from `<remote>/files/md5/<md5[:2]>/<md5[2:]>` and its md5 checked.

    python benchmarks/dvc_checkout.py data.dvc     # -> data/, as `dvc pull data.dvc` would
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import yaml


def remote_object(remote: Path, md5: str) -> Path:
    """Where a DVC 3 local remote keeps the object with this md5."""
    return remote / "files" / "md5" / md5[:2] / md5[2:]


def checkout(dvc_file: Path, remote: Path) -> int:
    """Write the folder `dvc_file` tracks (beside it) from `remote`; returns the number of files.

    Raises:
        ValueError: the `.dvc` file tracks no folder, or an object is missing or corrupt.
    """
    out = yaml.safe_load(dvc_file.read_text())["outs"][0]
    if not out["md5"].endswith(".dir"):
        raise ValueError(f"{dvc_file}: tracks a single file ({out['md5']}); expected a folder (.dir manifest)")
    target = dvc_file.parent / out["path"]
    entries = json.loads(remote_object(remote, out["md5"]).read_text())
    for entry in entries:
        source = remote_object(remote, entry["md5"])
        if not source.is_file():
            raise ValueError(f"{source}: missing from the remote (needed for {entry['relpath']})")
        content = source.read_bytes()
        if hashlib.md5(content).hexdigest() != entry["md5"]:
            raise ValueError(f"{source}: content does not match its md5 {entry['md5']}")
        path = target / entry["relpath"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return len(entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dvc_file", type=Path)
    parser.add_argument("--remote", type=Path, default=Path("dvc-remote"))
    args = parser.parse_args()
    print(f"restored {checkout(args.dvc_file, args.remote)} files")


if __name__ == "__main__":
    main()
