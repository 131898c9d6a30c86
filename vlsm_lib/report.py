"""HTML reports: one page per executed run notebook, an index per study, one for all studies.

Pages must open from a laptop, an archive or an air-gapped cluster, so each one stands alone:
CSS is inline, report figures are inline base64, index thumbnails are relative files, and no
page fetches anything from the network (nbconvert's defaults pull require.js, MathJax, mermaid
and the widget manager from CDNs; those are switched off here).

Layout (see README): ``outputs/<suite>/<study>/<run_id>/{notebook.ipynb, run.json,
metrics.json, notebook.html}``, ``outputs/<suite>/<study>/index.html``, ``outputs/index.html``.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import nbformat

from vlsm_lib.files import write_text

# Metrics shown in the study table, in this order, when any run reports them.
KEY_METRICS = ("dice", "iou", "hd95", "nsd", "n_images")

# Child of the lab template. The blanked head blocks are the ones that load CDN scripts (math
# then stays readable TeX source); the empty favicon stops browsers requesting /favicon.ico;
# code inputs sit in an open <details> so readers can fold them away without any JavaScript.
_TEMPLATE_NAME = "vlsm_report.html.j2"
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}<link rel="icon" href="data:,">{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style type="text/css">
details.vlsm-code > summary { cursor: pointer; color: #888; font-size: 11px; margin-left: 1em; }
details.vlsm-code:not([open]) > summary::after { content: " (hidden)"; }
</style>{%- endblock extra_css -%}
{% block input_group -%}
<details class="vlsm-code" open><summary>code</summary>
{{ super() }}
</details>
{%- endblock input_group %}
"""

# Safety net for content the template does not control (HTML outputs, markdown images): a
# remote src/href on a tag that *loads* it is renamed, so the URL stays visible in the source
# but the browser never fetches it. Plain <a> links are left alone: following one is a choice.
_REMOTE_LOAD = re.compile(
    r"(<(?:script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?\s)"
    r"(src|href|data)(\s*=\s*[\"']?)(?=(?:https?:)?//)",
    re.IGNORECASE,
)

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.complete{color:#1a7f37;font-weight:600}.failed{color:#cf222e;font-weight:600}
.running{color:#9a6700;font-weight:600}.unknown,.other{color:#6e7781;font-weight:600}
td.note{color:#cf222e;font-family:monospace;font-size:12px;max-width:40em}
figure{display:inline-block;margin:4px 8px;font-size:12px;text-align:center}
img.thumb{max-height:160px;max-width:240px;border:1px solid #d0d7de}"""


def render_html(
    notebook_path: str | os.PathLike, html_path: str | os.PathLike | None = None
) -> Path:
    """Render an executed notebook to a self-contained, offline HTML page; return its path.

    Default ``html_path`` is the notebook's path with ``.html``. Figures stay inline (base64),
    inputs are shown in foldable ``<details>``, and nothing is loaded over the network.
    """
    from jinja2 import DictLoader  # nbconvert is slow to import; the index writers skip it
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    notebook_path = Path(notebook_path)
    html_path = Path(html_path) if html_path else notebook_path.with_suffix(".html")
    nb = nbformat.read(notebook_path, as_version=4)
    # Widget views (tqdm.notebook bars) need the CDN widget manager to show anything; without
    # it their text/plain fallback is the useful rendering, so drop them from the priority.
    default = HTMLExporter().default_config.NbConvertBase.display_data_priority
    priority = [m for m in default if m != "application/vnd.jupyter.widget-view+json"]
    exporter = HTMLExporter(
        config=Config({"NbConvertBase": {"display_data_priority": priority}}),
        template_name="lab",
        template_file=_TEMPLATE_NAME,
        extra_loaders=[DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
        embed_images=True,  # markdown ![](local.png) becomes base64 too
    )
    # Every run's notebook is called notebook.ipynb; its folder (the run id) is the better title.
    name = notebook_path.stem
    if name == "notebook" and notebook_path.parent.name:
        name = notebook_path.parent.name
    resources = {"metadata": {"name": name, "path": str(notebook_path.parent)}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return write_text(html_path, _REMOTE_LOAD.sub(r"\1data-offline-\2\3", body))


def _load_json(path: Path) -> dict | None:
    """The JSON object stored in ``path``; None when missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError covers bad JSON and bad UTF-8
        return None
    return data if isinstance(data, dict) else None


def _runs(study_dir: Path) -> list[dict]:
    """One record per run folder (every visible sub-folder except figures/), sorted by run id."""
    runs = []
    for d in study_dir.iterdir():
        if not d.is_dir() or d.name.startswith((".", "_")) or d.name == "figures":
            continue
        info = _load_json(d / "run.json")
        ok, info = info is not None, info or {}
        params = info.get("params")
        runs.append(
            {
                "dir": d,
                "id": str(info.get("run_id") or d.name),
                "info": info,
                "ok": ok,
                "status": str(info.get("status") or "unknown").lower(),
                "params": params if isinstance(params, dict) else {},
                "metrics": _load_json(d / "metrics.json") or {},
            }
        )
    return sorted(runs, key=lambda r: r["id"])


def _fmt(value) -> str:
    """Compact text for a table cell (not yet escaped)."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    if value is None or isinstance(value, (bool, int, float)):
        return str(value)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _fmt_seconds(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>'
        f'{html.escape(title)}</title><link rel="icon" href="data:,"><style>{_CSS}</style>'
        f"</head><body>\n{body}\n</body></html>\n"
    )


def _link(href: str, text: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def write_study_index(study_dir: str | os.PathLike) -> Path:
    """Write ``study_dir/index.html``: a table of the study's runs; return its path.

    Columns: run id, status, the params that differ between runs, the key metrics any run
    reports, duration, links to the report and the run folder, and the error of failed runs.
    A run folder without a readable run.json is listed with status "unknown".
    """
    study_dir = Path(study_dir)
    runs = _runs(study_dir)
    all_params = [r["params"] for r in runs if r["params"]]
    keys = list(dict.fromkeys(k for p in all_params for k in p))  # first-seen order
    # run_dir and data_root are injected by the runner: paths, not choices of the study
    varying = [
        k
        for k in keys
        if k not in ("run_dir", "data_root") and len({_fmt(p.get(k)) for p in all_params}) > 1
    ]
    metrics = [m for m in KEY_METRICS if any(m in r["metrics"] for r in runs)]
    head = ["run", "status", *varying, *metrics, "time", "report", "folder", "note"]
    rows = []
    for r in runs:
        info, folder, status = r["info"], quote(r["dir"].name), r["status"]
        css = status if status in ("complete", "failed", "running", "unknown") else "other"
        note = ""
        if not r["ok"]:
            note = "run.json missing or unreadable"
        elif status == "failed":  # first line only: the full traceback is in the report
            note = (str(info.get("error") or "").strip().splitlines() or ["no error recorded"])[0]
        report = r["dir"] / "notebook.html"
        cells = [
            f"<td>{html.escape(r['id'])}</td>",
            f'<td><span class="{css}">{html.escape(status)}</span></td>',
            *(f"<td>{html.escape(_fmt(r['params'].get(k, '—')))}</td>" for k in varying),
            *(
                f'<td class="num">{html.escape(_fmt(r["metrics"].get(m, "—")))}</td>'
                for m in metrics
            ),
            f'<td class="num">{_fmt_seconds(info.get("seconds"))}</td>',
            f"<td>{_link(folder + '/notebook.html', 'report') if report.is_file() else '—'}</td>",
            f"<td>{_link(folder + '/', 'files')}</td>",
            f'<td class="note">{html.escape(note)}</td>',
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    counts = Counter(r["status"] for r in runs)
    title = f"{study_dir.parent.name} / {study_dir.name}"
    summary = ", ".join(f"{n} {html.escape(s)}" for s, n in sorted(counts.items())) or "no runs"
    body = (
        f"<h1>{html.escape(title)}</h1>\n<p>{len(runs)} runs: {summary}</p>\n<table><thead><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>"
    )
    return write_text(study_dir / "index.html", _page(title, body))


def write_root_index(outputs_root: str | os.PathLike) -> Path:
    """Write ``outputs_root/index.html`` listing every ``<suite>/<study>/index.html``.

    Each study gets its run counts (complete / failed / other) and thumbnails of the PNG
    figures directly in the study folder or in its ``figures/`` folder.
    """
    root = Path(outputs_root)
    rows, figures = [], []
    for index in sorted(root.glob("*/*/index.html")):
        study = index.parent
        rel = study.relative_to(root).as_posix()
        counts = Counter(r["status"] for r in _runs(study))
        done, failed = counts.pop("complete", 0), counts.pop("failed", 0)
        rows.append(
            f'<tr><td>{_link(quote(rel) + "/index.html", rel)}</td><td class="num complete">'
            f'{done}</td><td class="num failed">{failed}</td>'
            f'<td class="num other">{sum(counts.values())}</td></tr>'
        )
        pngs = sorted(study.glob("*.png")) + sorted((study / "figures").glob("*.png"))
        if pngs:
            thumbs = "".join(
                f'<figure><a href="{html.escape(quote(p.relative_to(root).as_posix()))}">'
                f'<img class="thumb" src="{html.escape(quote(p.relative_to(root).as_posix()))}" '
                f'alt="{html.escape(p.name)}"></a><figcaption>{html.escape(p.name)}</figcaption>'
                "</figure>"
                for p in pngs
            )
            figures.append(f"<h3>{html.escape(rel)}</h3>\n<div>{thumbs}</div>")
    body = "<h1>Studies</h1>\n"
    if rows:
        body += (
            "<table><thead><tr><th>study</th><th>complete</th><th>failed</th><th>other</th>"
            "</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n"
        )
    else:
        body += "<p>No study indexes yet.</p>\n"
    if figures:
        body += "<h2>Figures</h2>\n" + "\n".join(figures)
    return write_text(root / "index.html", _page("vlsm studies", body))
