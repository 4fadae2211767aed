"""A study's recipe grid, from its DVC experiments: each run's settings, each variant's selected dev
score, and the recipe each variant keeps (the best dev average; test scores shown, never used).

    python scripts/grid_table.py --study baselines --variants unsup sup --out results/baselines/grid.json

Reads `dvc exp show` through `dvc.api.exp_show` (the experiments of the last `--num` commits),
keeps those that ran the study's train stages (`studies/<study>/metrics/train/<variant>.json`), prints
a markdown table and writes the rows as JSON (`--out`), so the README's table has a file behind it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import dvc.api


def grid_rows(study: str, variants: list[str], num: int) -> list[dict]:
    """One row per finished experiment of `studies/<study>`: its `profiles.<study>.train.*` settings, and
    per variant the selected dev avg, its step, and the STS test avg when the evaluation stage ran."""
    rows = []
    for run in dvc.api.exp_show(num=num):
        if not run.get("Experiment"):
            continue
        scores = {v: {name: run.get(f"studies/{study}/metrics/{path}/{v}.json:{key}") for name, path, key in
                      (("dev", "train", "best.avg"), ("step", "train", "best.step"), ("sts", "sts", "avg"))} for v in variants}
        if not all(isinstance(s["dev"], float) for s in scores.values()):
            continue  # queued, running or failed
        prefix = f"profiles.{study}.train."
        settings = {k.removeprefix(prefix): v for k, v in run.items() if k.startswith(prefix) and "." not in k.removeprefix(prefix)}
        rows.append({"experiment": run["Experiment"], "rev": run["rev"], **settings, **scores})
    return sorted(rows, key=lambda row: row["experiment"])


def markdown(rows: list[dict], variants: list[str], settings: list[str]) -> str:
    """The table: settings, then per variant `dev avg (step)` with the kept recipe in bold, and STS test avg."""
    best = {v: max(rows, key=lambda row: row[v]["dev"])["experiment"] for v in variants}
    head = [*settings, *(f"{v} dev (step)" for v in variants), *(f"{v} STS test" for v in variants)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        dev = [f"**{row[v]['dev']:.2f}** ({row[v]['step']:.0f})" if best[v] == row["experiment"] else
               f"{row[v]['dev']:.2f} ({row[v]['step']:.0f})" for v in variants]
        sts = [f"{row[v]['sts']:.2f}" if isinstance(row[v]["sts"], float) and not math.isnan(row[v]["sts"]) else "–" for v in variants]
        lines.append("| " + " | ".join([*(str(row.get(s)) for s in settings), *dev, *sts]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="baselines", help="studies/<study>/dvc.yaml and profiles.<study>")
    parser.add_argument("--variants", nargs="+", default=["unsup", "sup"])
    parser.add_argument("--settings", nargs="+", default=["lr", "hidden_dropout"], help="profiles.<study>.train keys shown")
    parser.add_argument("--num", type=int, default=10, help="experiments of the last N commits")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    rows = grid_rows(args.study, args.variants, args.num)
    if not rows:
        raise SystemExit(f"no finished experiment of studies/{args.study} in the last {args.num} commits")
    print(markdown(rows, args.variants, args.settings))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
