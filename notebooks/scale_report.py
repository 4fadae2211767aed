# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The scale study: STS against training rows
# Each point is a variant trained on exactly N rows with that size's recipe, three seeds, each seed
# drawing its own rows (the spread includes the draw of the data); a size past a variant's pool is
# absent, never trained on fewer rows. The reading applies the report's spread rule: a gap counts
# only when it exceeds both points' standard deviation over seeds.

# %% tags=["parameters"]
params_file = "params.yaml"
profile = "scale"
out = "studies/scale"  # the study's folder: metrics/ of its points, artifacts/report/ for the figure
pair = "studies/scale/pair"  # the ablation line's folder (synth.on_bad_negative: pair)
anchors_dir = "metrics"  # the shipped anchors' scores, from the main job

# %%
import logging
from pathlib import Path

from IPython.display import Markdown, display

from syncse import report, scale, scale_report
from syncse.config import load_params
from syncse.data import atomic_writer, write_json
from syncse.progress import LOG_FORMAT

logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
params = load_params(params_file, profile)
report_dir = Path(out) / "artifacts/report"
curve = scale_report.curve_table(scale_report.study_lines(list(params.train.variants), out, pair), scale.sizes(params.scale))
base = report.read_json(Path(out) / "metrics/sts/base.json")["avg"]
anchors = {name: report.read_json(Path(anchors_dir) / "sts" / f"{name}.json")["avg"]
           for name in [*params.evaluate.anchors, *params.report.shipped_rows]}
reading = scale_report.scale_reading(curve, base, params.report.tie_margin)
report_dir.mkdir(parents=True, exist_ok=True)
curve.to_csv(Path(out) / "metrics/curve.csv", index=False, float_format="%.4f")
write_json(Path(out) / "metrics/curve.json", scale_report.curve_metrics(curve))
with atomic_writer(report_dir / "curve.md") as text:
    text.write(scale_report.curve_markdown(curve) + "\n" + reading)

# %% [markdown]
# ## STS avg against N

# %%
scale_report.plot_curve(curve, base, anchors).savefig(report_dir / "scale.png", dpi=110, bbox_inches="tight")

# %%
display(Markdown(scale_report.curve_markdown(curve)))

# %% [markdown]
# ## Reading

# %%
display(Markdown(reading))
