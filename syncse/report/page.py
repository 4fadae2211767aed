"""The executed report notebook as one self-contained HTML page: no code, no stderr, no script from a
CDN (`python -m syncse.report NOTEBOOK HTML`, the report stage's last step)."""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from syncse.data import atomic_writer

logger = logging.getLogger(__name__)


def _first_heading(notebook: Any) -> str | None:
    for cell in notebook.cells:
        texts = [cell.source] if cell.cell_type == "markdown" else [
            o.get("data", {}).get("text/markdown", "") for o in cell.get("outputs", [])]
        for text in texts:
            match = re.search(r"^# (.+)$", "".join(text), flags=re.M)
            if match:
                return match.group(1).strip()
    return None


# The lab template without its script tags: require.js, MathJax and mermaid come from a CDN, and the
# report uses none of them (its Markdown escapes TeX characters).
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
"""


def render_html(notebook_path: str | Path, html_path: str | Path) -> Path:
    """The executed report notebook as one self-contained HTML page: no code, no stderr, no external script.

    The page title is the notebook's first level-1 heading. Stderr streams (warnings, progress bars)
    stay in the executed notebook, as its log, and are left out of the page.
    """
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    notebook = nbformat.read(str(notebook_path), as_version=4)
    dropped = 0
    for cell in notebook.cells:
        outputs = cell.get("outputs", [])
        kept = [o for o in outputs if not (o.output_type == "stream" and o.name == "stderr")]
        dropped += len(outputs) - len(kept)
        cell["outputs"] = kept if cell.cell_type == "code" else outputs
    if dropped:
        logger.info("left %d stderr output(s) out of the page", dropped)
    notebook.metadata["title"] = _first_heading(notebook) or Path(notebook_path).stem
    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"syncse_report.html.j2": _TEMPLATE})],
                            template_file="syncse_report.html.j2", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(notebook)
    with atomic_writer(html_path) as out:  # a kill leaves the old page or the new one
        out.write(body)
    return Path(html_path)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m syncse.report NOTEBOOK HTML`: render the executed report notebook (the report stage's last step)."""
    parser = argparse.ArgumentParser(prog="python -m syncse.report", description=main.__doc__)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("html", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    render_html(args.notebook, args.html)
