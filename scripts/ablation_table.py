"""Print the study's ablation table: each control removed in turn, mean ± std over seeds.

Reads the study's variants from `<study>/metrics/{sts,dev,train}/<variant>.json` (all controls on)
and every ablation run banked as `<study>/ablation/<row>/seed-<s>/result.json`, written by
`scripts/train_sample.py` (row names as `<variant>-<what was removed>`, e.g. `partial-no-margin`):

    python scripts/ablation_table.py results/study

Prints one markdown table: rows, seeds, STS avg and dev avg (mean ± sample std), and the gap to
the same variant with every control on, over the same seeds (a one-seed ablation against that seed).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from syncse.seeds import aggregate, seed_dirs


def study_row(study: Path, variant: str) -> dict[str, Any]:
    """A variant of the study itself: STS and dev means and spreads, rows trained on."""
    sts = json.loads((study / "metrics" / "sts" / f"{variant}.json").read_text())
    train = json.loads((study / "metrics" / "train" / f"{variant}.json").read_text())
    return {"rows": train["examples"], "n": sts["n_seeds"], "sts": (sts["avg"], sts["std"]["avg"]),
            "dev": (train["best"]["avg"], train["std"]["best"]["avg"]),
            "per_seed": {int(seed): run["avg"] for seed, run in sts["seeds"].items()}}


def ablation_row(folder: Path) -> dict[str, Any]:
    """One ablation row: the mean and spread of its seeds' `result.json` (test STS, selected dev)."""
    runs = {seed: json.loads((path / "result.json").read_text()) for seed, path in seed_dirs(folder).items()}
    mean = aggregate({s: {"sts": r["sts"]["avg"], "dev": r["selected"]["avg"], "rows": r["rows"]} for s, r in runs.items()})
    return {"rows": mean["rows"], "n": mean["n_seeds"], "sts": (mean["sts"], mean["std"]["sts"]),
            "dev": (mean["dev"], mean["std"]["dev"]), "per_seed": {seed: r["sts"]["avg"] for seed, r in runs.items()}}


def table(study: Path) -> str:
    """The markdown table: per variant, its all-controls row, then each ablation row of it."""
    lines = ["| run | rows | seeds | STS avg | dev avg | Δ STS vs all controls, same seeds |", "|---|---|---|---|---|---|"]
    removed: dict[str, list[tuple[str, Path]]] = {}  # variant -> (what was removed, its folder)
    for folder in sorted(p for p in (study / "ablation").iterdir() if p.is_dir()):
        variant, what = folder.name.split("-", 1)
        removed.setdefault(variant, []).append((what.replace("-", " "), folder))
    for variant in sorted(removed):
        full = study_row(study, variant)
        rows = [(f"{variant}, all controls", full)] + [(f"{variant}, {what}", ablation_row(f)) for what, f in removed[variant]]
        for name, row in rows:
            gap = "–" if row is full else f"{_gap(row['per_seed'], full['per_seed']):+.2f}"
            lines.append(f"| {name} | {row['rows']:,} | {row['n']} | {_spread(row['n'], *row['sts'])} "
                         f"| {_spread(row['n'], *row['dev'])} | {gap} |")
    return "\n".join(lines)


def _gap(ablated: dict[int, float], full: dict[int, float]) -> float:
    """Mean STS avg of the ablated runs minus that of the all-controls runs of the same seeds."""
    missing = set(ablated) - set(full)
    if missing:
        raise ValueError(f"ablation seeds {sorted(missing)} have no all-controls run (seeds {sorted(full)})")
    return statistics.fmean(ablated.values()) - statistics.fmean(full[seed] for seed in ablated)


def _spread(n: int, mean: float, std: float) -> str:
    """`54.59 ± 0.18` over several seeds; one seed has no measured spread, so just `54.59`."""
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="a banked study folder (e.g. results/study)")
    print(table(Path(parser.parse_args().study)))


if __name__ == "__main__":
    main()
