"""The scale study's curve: STS avg against training rows N, one line per variant, from the points' metric files.

The points (`syncse.scale`) are read into the curve's table (`curve_table`; an absent point keeps its
reason), which is read under the report's spread rule (`scale_reading`: a gap counts only when it
exceeds both points' standard deviation over seeds, `syncse.report.verdict`) and drawn (`plot_curve`).
The recipe grid that fixes each size's recipe is read from DVC's experiments (`grid_runs`), banked across
sessions with the digest of what each run trained on (`bank_grid`, `grid_inputs`) and chosen on dev (`recipe_grid`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import string
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import yaml

from syncse.data import atomic_writer
from syncse.report import PAPER_ORDER, label, md_table, read_json, spread_margin, verdict
from syncse.scale import point_name

logger = logging.getLogger(__name__)

PAIR = "partial-pair"  # the ablation line: SynCSE-partial synthesized with `synth.on_bad_negative: pair`
LINE_LABELS = {PAIR: "SynCSE-partial (pairs kept)"}  # lines the report's `label` does not name
GRID_METRICS = "studies/scale/metrics/train/"  # a grid run's points: <variant>-<N>.json, selected dev avg at best.avg
GRID_KNOBS = ("profiles.scale.scale.sizes", "profiles.scale.train.seeds")  # what a grid run sets (its recipe, one seed)
STUDY_PIPELINE, STUDY_LOCK = "studies/scale/dvc.yaml", "studies/scale/dvc.lock"
CURVE_COLUMNS = ["line", "variant", "size", "rows", "avg", "std", "n_seeds", "dev_avg", "absent"]


def line_label(line: str) -> str:
    """A line's display name: the paper's for a variant, `LINE_LABELS` for the ablation."""
    return LINE_LABELS.get(line, label(line))


def study_lines(variants: Sequence[str], out: str | Path, pair: str | Path) -> dict[str, tuple[str, Path]]:
    """The curve's lines, `line -> (variant, metrics folder)`: each variant from `out`, the ablation from `pair`."""
    return {**{v: (v, Path(out) / "metrics") for v in variants}, PAIR: ("partial", Path(pair) / "metrics")}


def curve_table(lines: Mapping[str, tuple[str, str | Path]], study_sizes: Sequence[int]) -> pd.DataFrame:
    """One row per line and size from the points' `metrics/sts` and `metrics/train` files: rows trained,
    STS avg (mean over seeds), its std and seeds, the selected dev avg, or why the point is absent.

    Args:
        lines: line -> (variant, metrics folder), e.g. `{"partial-pair": ("partial", "studies/scale/pair/metrics")}`.
        study_sizes: the sizes N.
    """
    rows = []
    for line, (variant, metrics_dir) in lines.items():
        for size in study_sizes:
            name = point_name(variant, size)
            sts = read_json(Path(metrics_dir) / "sts" / f"{name}.json")
            row: dict[str, Any] = {"line": line, "variant": variant, "size": size}
            if sts.get("absent"):
                rows.append({**row, "absent": sts["reason"]})
                continue
            trained = read_json(Path(metrics_dir) / "train" / f"{name}.json")
            rows.append({**row, "rows": trained["examples"], "avg": sts["avg"], "std": sts["std"]["avg"],
                         "n_seeds": sts["n_seeds"], "dev_avg": trained["best"]["avg"], "absent": ""})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def curve_metrics(curve: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """`metrics/curve.json`, a key per `<line>-<N>`: the point's rows, STS avg, std, seeds and dev avg, or why it is absent."""
    return {f"{r.line}-{r.size}": {"absent": r.absent} if r.absent else
            {"rows": int(r.rows), "avg": float(r.avg), "std": float(r.std), "n_seeds": int(r.n_seeds), "dev_avg": float(r.dev_avg)}
            for r in curve.itertuples()}


def curve_markdown(curve: pd.DataFrame) -> str:
    """The curve's table: a row per line, a column per size (STS avg, mean ± std over seeds, or
    `absent`), then why each absent point is absent."""
    def cell(row: pd.Series) -> str:
        if row.absent:
            return "absent"
        return f"{row.avg:.2f} \u00b1 {row['std']:.2f}" if row.n_seeds > 1 else f"{row.avg:.2f}"

    study_sizes = sorted(curve["size"].unique())
    body = [[line_label(line), *(cell(r) for _, r in group.sort_values("size").iterrows())]
            for line, group in curve.groupby("line", sort=False)]
    absent = [f"- {line_label(r.line)}, N = {r.size:,}: {r.absent}." for r in curve.itertuples() if r.absent]
    notes = ["", "STS avg of the 7 test tasks, Spearman x100; a \u00b1 b: mean \u00b1 standard deviation over seeds, "
             "each seed drawing its own rows.", *(["", "Absent points (sizes past a pool):", *absent] if absent else [])]
    table = md_table(["line", *(f"N = {n:,}" for n in study_sizes)], body, "l" * (len(study_sizes) + 1))
    return table + "\n".join(notes) + "\n"


def _point_std(row: pd.Series) -> float | None:
    """A point's standard deviation over seeds; None with one seed (not measured)."""
    return float(row["std"]) if row.n_seeds > 1 else None


def _shown(row: pd.Series) -> str:
    spread = _point_std(row)
    return f"{row.avg:.2f}" + (f" \u00b1 {spread:.2f}" if spread is not None else "")


def _compare(high: pd.Series, low: pd.Series, tie_margin: float) -> tuple[float, str]:
    """`high.avg - low.avg` and how it reads under the spread rule (`syncse.report.verdict`)."""
    gap = float(high.avg - low.avg)
    return gap, verdict(gap, spread_margin([_point_std(high), _point_std(low)], tie_margin))


def _shared(curve: pd.DataFrame, line: str, other: str) -> list[tuple[int, pd.Series, pd.Series]]:
    """`(N, line's point, other's point)` at each size where both were trained, ascending."""
    present = curve[curve.absent.eq("")].set_index(["size", "line"])
    return [(n, present.loc[(n, line)], present.loc[(n, other)]) for n in sorted(curve["size"].unique())
            if (n, line) in present.index and (n, other) in present.index]


def _orderings(at: pd.DataFrame, base: float, tie_margin: float) -> list[str]:
    """At one size (`at`: its trained points, indexed by line): the paper's orderings, the ablation against
    partial, and the points above or below the base, read under the spread rule."""
    ranked = [v for v in PAPER_ORDER if v in at.index]
    pairs = [(high, low) for i, high in enumerate(ranked) for low in ranked[i + 1:]]
    pairs += [(PAIR, "partial")] if {PAIR, "partial"} <= set(at.index) else []
    lines = []
    for high, low in pairs:
        gap, reading = _compare(at.loc[high], at.loc[low], tie_margin)
        lines.append(f"  - {line_label(high)} > {line_label(low)}: **{reading}** "
                     f"({_shown(at.loc[high])} vs {_shown(at.loc[low])}, {gap:+.2f})")
    over_base = {line: verdict(row.avg - base, spread_margin([_point_std(row), 0.0], tie_margin))  # the base: one fixed model, std 0
                 for line, row in at.iterrows()}
    for word, reading in (("above", "holds"), ("below", "reversed")):
        named = [line_label(line) for line, v in over_base.items() if v == reading]
        lines.append(f"  - {word} the base zero-shot ({base:.2f}) beyond the spread: {', '.join(named) or 'none'}")
    return lines


def _crossing(curve: pd.DataFrame, line: str, other: str, tie_margin: float) -> str:
    """Where `line` crosses `other` along N: the sizes between which `line > other` starts or stops holding."""
    readings = [(n, _compare(a, b, tie_margin)[1]) for n, a, b in _shared(curve, line, other)]
    if not readings:
        return f"{line_label(line)} against {line_label(other)}: no size where both were trained."
    sequence = ", ".join(f"{v} at {n:,}" for n, v in readings)
    changes = [(a, b, vb) for (a, va), (b, vb) in zip(readings, readings[1:]) if (va == "holds") != (vb == "holds")]
    if not changes:
        where = "above it at every size measured" if readings[0][1] == "holds" else "no crossing: never above it beyond the spread"
        return f"{line_label(line)} > {line_label(other)}: {where} ({sequence})."
    said = "; ".join(f"{'crosses above' if v == 'holds' else 'falls back'} between N = {a:,} and {b:,}" for a, b, v in changes)
    return f"{line_label(line)} > {line_label(other)}: {said} ({sequence})."


def _distance(curve: pd.DataFrame, line: str, target: str, tie_margin: float) -> str:
    """How far `line` stays from `target`: their gap at each size both reach, and how it reads."""
    parts = [f"{gap:+.2f} at {n:,} ({reading})" for n, gap, reading in
             ((n, *_compare(t, a, tie_margin)) for n, a, t in _shared(curve, line, target))]
    return f"{line_label(target)} > {line_label(line)}, by: {'; '.join(parts) or 'no size where both were trained'}."


def scale_reading(curve: pd.DataFrame, base: float, tie_margin: float) -> str:
    """The reading generated from the curve: at each N the orderings that hold under the spread rule
    (`syncse.report.verdict`: a gap counts when it exceeds both points' std over seeds; `tie_margin`
    where a point has one seed), where partial and scratch cross unsup-SimCSE, and how far they stay
    from sup-SimCSE."""
    out = ["A difference reads as a win only when it exceeds the standard deviation over seeds of both points "
           f"(each seed draws its own rows); with one seed, only beyond {tie_margin:.2f} points.", ""]
    for size, at in curve[curve.absent.eq("")].groupby("size"):
        out += [f"- **N = {size:,}**", *_orderings(at.set_index("line"), base, tie_margin)]
    out += ["", "**Across sizes**", ""]
    lines = set(curve.line)
    synthetic = [line for line in ("partial", "scratch", PAIR) if line in lines]
    out += [f"- {_crossing(curve, line, 'unsup', tie_margin)}" for line in synthetic if "unsup" in lines]
    out += [f"- {_distance(curve, line, 'sup', tie_margin)}" for line in synthetic if "sup" in lines]
    return "\n".join(out) + "\n"


def plot_curve(curve: pd.DataFrame, base: float, anchors: Mapping[str, float]) -> plt.Figure:
    """STS avg against N (log scale): a line per variant (mean over seeds, a band of ± one std), the
    base zero-shot and each shipped anchor as horizontal lines; absent points are left out. The y axis spans
    the lines and the base only, so that gaps of a point stay visible: an anchor beyond it (the shipped
    models score some 20 points higher) keeps its line and score in the legend, marked as off the axis."""
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    for line, group in curve[curve.absent.eq("")].groupby("line", sort=False):
        group = group.sort_values("size")
        spread = group["std"].where(group.n_seeds > 1, 0.0)
        (drawn,) = ax.plot(group["size"], group.avg, marker="o", label=line_label(line))
        ax.fill_between(group["size"], group.avg - spread, group.avg + spread, color=drawn.get_color(), alpha=0.2)
    ax.axhline(base, color="0.3", linestyle="--", linewidth=1, label=f"base zero-shot ({base:.2f})")
    low, high = ax.get_ylim()
    for i, (name, score) in enumerate(anchors.items()):
        off = ", above the axis" if score > high else ", below the axis" if score < low else ""
        ax.axhline(score, color=f"C{7 + i}", linestyle=":", linewidth=1.2, label=f"{name} (shipped, {score:.2f}{off})")
    ax.set_ylim(low, high)
    ax.set_xscale("log")
    study_sizes = sorted(curve["size"].unique())
    ax.set_xticks(study_sizes, [f"{n:,}" for n in study_sizes])
    ax.minorticks_off()
    ax.set(xlabel="training rows N (log scale)", ylabel="STS avg (7 test tasks, Spearman x100)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def grid_runs(shown: Sequence[Mapping[str, Any]], study_sizes: Sequence[int]) -> list[dict[str, Any]]:
    """The finished grid runs in `dvc exp show --json` (its nested form: the flattened `dvc.api.exp_show` drops a
    metric's file when only one file has it): each run's name, commit (`rev`), baseline commit, its recipe at each size
    (`profiles.scale.scale.sizes`) and the selected dev avg of each point it trained (`studies/scale/metrics/train/
    <variant>-<N>.json`, `best.avg`; an absent point has none). A point's file as its baseline commit holds it is
    not the run's (an experiment's commit carries every metric file of its baseline, the curve's included). A failed
    run is left out. Raises ValueError while any experiment is queued or running: its recipe would silently be left
    out of the choice."""
    experiments = [(exp.get("name") or exp["revs"][0]["rev"][:7], (exp.get("executor") or {}).get("state"),
                    exp["revs"][0], baseline) for baseline in shown for exp in baseline.get("experiments") or []]
    waiting = sorted(name for name, state, _, _ in experiments if state in ("queued", "running"))
    if waiting:
        raise ValueError(f"{len(waiting)} experiment(s) still queued or running ({', '.join(waiting)}): "
                         "wait for them (`dvc queue status`), then read the grid")
    runs = []
    for name, state, rev, baseline in experiments:
        if state == "failed":
            logger.warning("grid: experiment %s failed (`dvc queue logs %s`): left out", name, name)
            continue
        data = rev.get("data") or {}
        inherited = (baseline.get("data") or {}).get("metrics") or {}
        dev = {Path(path).stem: m["data"]["best"]["avg"] for path, m in (data.get("metrics") or {}).items()
               if path.startswith(GRID_METRICS) and "best" in (m.get("data") or {}) and m != inherited.get(path)}
        if dev:
            recipes = data["params"]["params.yaml"]["data"]["profiles"]["scale"]["scale"]["sizes"]
            runs.append({"name": name, "rev": rev["rev"], "baseline": baseline["rev"],
                         "sizes": {str(n): recipes.get(str(n), {}) for n in study_sizes}, "dev": dev})
    return runs


def grid_inputs(rev: str, root: str | Path = ".") -> str:
    """A digest of everything a grid run's training read at commit `rev` but its recipe and seeds (`GRID_KNOBS`):
    the object ids of the study's train stage's code deps, its data (`data.dvc`), the synthesized triplets (the
    synthesis outputs in the study's lock) and the values of its params. Two runs with one digest differ in their
    recipe alone; a run of older code or data has another (`scripts/scale_grid.py` leaves it out)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout

    stage = yaml.safe_load(git("show", f"{rev}:{STUDY_PIPELINE}"))["stages"]["train"]
    lock = yaml.safe_load(git("show", f"{rev}:{STUDY_LOCK}"))["stages"]
    params = yaml.safe_load(git("show", f"{rev}:params.yaml"))
    variables = {key: value for entry in stage.get("vars", []) for key, value in entry.items()}
    inputs: dict[str, Any] = {}
    for dep in stage["deps"]:
        if "${" in dep:  # `${into}/artifacts/synth`: the files in it as the lock records them (not the notebooks or
            folder = string.Template(dep).substitute(variables) + "/"  # timings a replay on a new machine rewrites)
            inputs[dep] = sorted((out["path"], out["md5"]) for entry in lock.values() for out in entry.get("outs", [])
                                 if out["path"].startswith(folder))
        else:  # code in git; data by its `.dvc` file
            inputs[dep] = git("rev-parse", f"{rev}:{'data.dvc' if dep.startswith('data/') else dep}").strip()
    for key in stage["params"]:
        if isinstance(key, str) and "${" not in key:
            inputs[key] = _without_knobs(_dotted(params, key), key)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _dotted(tree: Mapping[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def _without_knobs(value: Any, key: str) -> Any:
    """`value` (the param `key`) less what a grid run sets (`GRID_KNOBS`) inside it."""
    for knob in GRID_KNOBS:
        if knob.startswith(key + "."):
            value = copy.deepcopy(value)
            *parents, last = knob[len(key) + 1:].split(".")
            parent = _dotted(value, ".".join(parents)) if parents else value
            parent.pop(last, None)
    return value


def bank_grid(bank: str | Path, runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The grid's bank, `bank` (a JSON list of runs, `grid_runs`'s with their `inputs`), with `runs` added by
    commit and written back: what the grid measured outlives the experiments (a queue's runs are local to
    one machine), so a grid spread over sessions is chosen from all of it."""
    bank = Path(bank)
    banked = {run["rev"]: dict(run) for run in (json.loads(bank.read_text()) if bank.exists() else [])}
    banked.update({run["rev"]: dict(run) for run in runs})
    if runs:  # nothing new: the file stays as it is (or absent)
        with atomic_writer(bank) as out:
            json.dump(list(banked.values()), out, indent=1)
            out.write("\n")
    return list(banked.values())


def recipe_grid(runs: Sequence[Mapping[str, Any]], study_sizes: Sequence[int]) -> pd.DataFrame:
    """The recipe grid by size: a row per run and size it trained at, with the recipe it tried and the mean over
    variants of the points' selected dev avg; `kept` marks, per size, the run with the best mean (dev only, never a test score)
    among the runs that have a point of every variant any run has there (means over the same variants only).

    Args:
        runs: one mapping per finished grid run: `name`, `sizes` (the run's `scale.sizes`: N -> lr, epochs,
            eval_steps) and `dev` (`<variant>-<N>` -> that point's selected dev avg; an absent point left out).
        study_sizes: the sizes N.
    """
    rows = []
    for run in runs:
        for size in study_sizes:
            scores = {k.rsplit("-", 1)[0]: v for k, v in run["dev"].items() if k.rsplit("-", 1)[1] == str(size)}
            if scores:  # a run trains some sizes only (the grid queues one size a run)
                rows.append({"run": run["name"], "size": size, **run["sizes"][str(size)],
                             "dev_avg": sum(scores.values()) / len(scores), "points": len(scores), "variants": frozenset(scores)})
    grid = pd.DataFrame(rows, columns=["run", "size", "lr", "epochs", "eval_steps", "dev_avg", "points", "variants"])
    every = {size: frozenset().union(*sets) for size, sets in grid.groupby("size").variants}
    complete = grid[grid.variants == grid["size"].map(every)]  # a run missing a point competes with none
    return grid.assign(kept=grid.index.isin(complete.groupby("size")["dev_avg"].idxmax().values),
                       variants=grid.variants.map(lambda names: ",".join(sorted(names))))


def grid_markdown(grid: pd.DataFrame) -> str:
    """The grid as a table, a row per size and run, the kept recipe of each size in bold."""
    def row(r: pd.Series) -> list[str]:
        cells = [f"{r['size']:,}", str(r.run), f"{r.lr:g}", f"{r.epochs:g}", str(r.eval_steps), f"{r.dev_avg:.2f}", str(r.points)]
        return [f"**{c}**" for c in cells] if r.kept else cells

    return md_table(["N", "run", "lr", "epochs", "eval_steps", "mean dev avg", "points"],
                    (row(r) for _, r in grid.sort_values(["size", "run"]).iterrows()), "l" * 7)
