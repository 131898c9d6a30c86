"""HTML reports: an index per study, one for all studies (each run's page: ``run_page.py``).

Pages must open from a laptop, an archive or an air-gapped cluster, so each one stands alone:
CSS is inline, thumbnails are relative files, and no page fetches anything from the network.

Layout (see README): ``outputs/<suite>/<study>/<run_id>/{notebook.ipynb, run.json,
metrics.json, notebook.html}``, ``outputs/<suite>/<study>/index.html``, ``outputs/index.html``.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import re
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from vlsm_lib.files import write_text
from vlsm_lib.results import PROGRESS_JSON, shown_status

# Metrics shown in the study table, in this order, when any run reports them.
KEY_METRICS = ("dice", "iou", "hd95", "nsd", "n_images")
# Params that say which run a row is, shown before the metrics (in this order) when they vary;
# the other varying ones (weights, checkpoint, lr, ...) are long and rarely read: after links.
ID_PARAMS = ("model", "dataset", "prompt", "seed", "train", "size", "train_fraction", "test_sets")

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.complete{color:#1a7f37;font-weight:600}.failed{color:#cf222e;font-weight:600}
.running{color:#9a6700;font-weight:600}.unknown,.other{color:#6e7781;font-weight:600}
td.note{color:#cf222e;font-family:monospace;font-size:12px;max-width:40em}
figure{display:inline-block;margin:4px 8px;font-size:12px;text-align:center}
img.thumb{max-height:160px;max-width:240px;border:1px solid #d0d7de}"""


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
                "status": shown_status(info, d),
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


def duration(seconds: float) -> str:
    """A rough duration for progress lines: "42 s", "17 min", "2.5 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def progress_html(outputs_root: Path) -> str:
    """A paragraph per suite whose grid is under way (progress.json not finished), else ""."""
    out = []
    for path in sorted(Path(outputs_root).glob(f"*/{PROGRESS_JSON}")):
        try:
            p = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if p.get("done", 0) >= p.get("total", 0):
            continue
        eta = f"; about {duration(p['eta_s'])} left" if p.get("eta_s") else ""
        running = ", ".join(p.get("running", [])[:8]) or "none"
        updated = time.strftime("%H:%M:%S", time.localtime(p.get("updated", 0)))
        out.append(
            f'<p class="running">{html.escape(path.parent.name)}: grid under way: '
            f"{p['done']}/{p['total']} runs done, {p['failed']} failed{eta}; running now: "
            f"{html.escape(running)} (updated {updated})</p>\n"
        )
    return "".join(out)


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


def _table(head: list[str], rows: list[str]) -> str:
    """A table from ready header cells (``<th>``) and rows (``<tr>``), one row a line."""
    body = "\n".join(rows)
    return f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>\n{body}\n</tbody></table>\n"


def _shorten(value, base: Path):
    """``value`` with each path in it (a str with '/', no space, no URL; also inside dicts and
    lists, e.g. model_options) relative to ``base`` when inside it, else its last two parts."""
    if isinstance(value, str) and "/" in value and not re.search(r"\s|://", value):
        # abspath, not resolve: no filesystem access, and params record the paths as given
        full = Path(os.path.abspath(value))
        try:
            return full.relative_to(os.path.abspath(base)).as_posix()
        except ValueError:
            return "/".join([part for part in full.parts if part != full.anchor][-2:])
    if isinstance(value, dict):
        return {k: _shorten(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v, base) for v in value]
    return value


def _param_cell(value, base: Path) -> str:
    """A param's table cell: paths shortened, the full value kept in the title (hover)."""
    full, short = _fmt(value), _fmt(_shorten(value, base))
    title = f' title="{html.escape(full)}"' if short != full else ""
    return f"<td{title}>{html.escape(short)}</td>"


def _run_row(r: dict, ident: list, metrics: list, rest: list, base: Path) -> str:
    """One study-table row: identity, headline metrics, time and links, then the long params."""
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
        *(_param_cell(r["params"].get(k, "—"), base) for k in ident),
        *(f'<td class="num">{html.escape(_fmt(r["metrics"].get(m, "—")))}</td>' for m in metrics),
        f'<td class="num">{_fmt_seconds(info.get("seconds"))}</td>',
        f"<td>{_link(folder + '/notebook.html', 'report') if report.is_file() else '—'}</td>",
        f"<td>{_link(folder + '/', 'files')}</td>",
        *(_param_cell(r["params"].get(k, "—"), base) for k in rest),
        f'<td class="note">{html.escape(note)}</td>',
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def write_study_index(study_dir: str | os.PathLike) -> Path:
    """Write ``study_dir/index.html``: a table of the study's runs; return its path.

    Columns: run id, status, the identity params (ID_PARAMS) that differ between runs, the key
    metrics any run reports, duration, links to the report and the run folder, the other params
    that differ (paths shown relative to the suite folder) and the error of failed runs.
    A run folder without a readable run.json is listed with status "unknown".
    """
    study_dir = Path(study_dir)
    runs = _runs(study_dir)
    all_params = [r["params"] for r in runs if r["params"]]
    keys = list(dict.fromkeys(k for p in all_params for k in p))  # first-seen order
    skip = ("run_dir", "data_root")  # injected by the runner: paths, not choices of the study
    varying = [k for k in keys if k not in skip and len({_fmt(p.get(k)) for p in all_params}) > 1]
    ident = [k for k in ID_PARAMS if k in varying]
    rest = [k for k in varying if k not in ident]
    metrics = [m for m in KEY_METRICS if any(m in r["metrics"] for r in runs)]
    head = ["run", "status", *ident, *metrics, "time", "report", "folder", *rest, "note"]
    rows = [_run_row(r, ident, metrics, rest, study_dir.parent) for r in runs]
    counts = Counter(r["status"] for r in runs)
    title = f"{study_dir.parent.name} / {study_dir.name}"
    summary = ", ".join(f"{n} {html.escape(s)}" for s, n in sorted(counts.items())) or "no runs"
    body = f"<h1>{html.escape(title)}</h1>\n<p>{len(runs)} runs: {summary}</p>\n" + _table(
        [f"<th>{html.escape(h)}</th>" for h in head], rows
    )
    return write_text(study_dir / "index.html", _page(title, body))


def _thumbs(pngs: list[Path], root: Path) -> str:
    """Linked thumbnails of ``pngs``, addressed relative to ``root`` (where the page lives)."""
    figures = []
    for p in pngs:
        href, name = html.escape(quote(p.relative_to(root).as_posix())), html.escape(p.name)
        figures.append(f'<figure><a href="{href}"><img class="thumb" src="{href}" alt="{name}">')
        figures.append(f"</a><figcaption>{name}</figcaption></figure>")
    return "<div>" + "".join(figures) + "</div>"


def _when(value) -> float:
    """Seconds since the epoch of an ISO time; -inf when missing or unreadable, so it loses."""
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return -math.inf


def _latest_statistics(study: Path) -> dict | None:
    """The completed run of a statistics study with a Table 2 grid that finished last, or None."""
    grid = Path("results", "table2_grid.csv")
    done = [r for r in _runs(study) if r["status"] == "complete" and (r["dir"] / grid).is_file()]
    return max(done, key=lambda r: (_when(r["info"].get("finished")), r["id"]), default=None)


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_NUMBER = re.compile(r"(?:\*\*)?[-+]?\.?\d")


def _md_cell(text: str, tag: str = "td") -> str:
    """A table cell from Markdown-ish text: escaped first, then **bold** becomes <strong>."""
    css = ' class="num"' if tag == "td" and _NUMBER.match(text.strip()) else ""
    cell = _BOLD.sub(r"<strong>\1</strong>", html.escape(text.strip()))
    return f"<{tag}{css}>{cell}</{tag}>"


def _csv_table(path: Path) -> str:
    """The CSV file at ``path`` as an HTML table (first row as header); a note if unreadable."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            head, *rows = list(csv.reader(f)) or [[]]
    except (OSError, UnicodeDecodeError, csv.Error) as e:  # a broken table must not stop the page
        return f'<p class="failed">{html.escape(f"{path.name} unreadable: {e}")}</p>\n'
    body = ["<tr>" + "".join(_md_cell(c) for c in row) + "</tr>" for row in rows]
    return _table([_md_cell(h, "th") for h in head], body)


def _headline(study: Path, root: Path) -> str:
    """A suite's findings, Table 2 grid, links and figures from its statistics ``study``; ""
    if no run."""
    run = _latest_statistics(study)
    if run is None:
        return ""
    rel = run["dir"].relative_to(root).as_posix()
    results = run["dir"] / "results"
    links = [_link(quote(rel) + "/results/", "all tables and figures (results/)")]
    if (run["dir"] / "notebook.html").is_file():
        links.insert(0, _link(quote(rel) + "/notebook.html", "full statistics report"))
    when = html.escape(str(run["info"].get("finished") or "unknown"))
    head = f"<h2>{html.escape(study.parent.name)}: headline results</h2>\n"
    intro = f"<p>From {html.escape(rel)} (finished {when}): {' · '.join(links)}</p>\n"
    pngs = sorted(results.glob("*.png"))
    findings = results / "findings.csv"
    first = "<h3>Findings</h3>\n" + _csv_table(findings) if findings.is_file() else ""
    table2 = "<h3>Table 2</h3>\n" + _csv_table(results / "table2_grid.csv")
    return head + intro + first + table2 + _thumbs(pngs, root) + "\n"


def write_root_index(outputs_root: str | os.PathLike) -> Path:
    """Write ``outputs_root/index.html``: grids under way (``progress_html``), each suite's headline
    results (``_headline``), every ``<suite>/<study>/index.html`` with its run counts, and
    thumbnails of the PNG figures in each study folder or its ``figures/`` folder."""
    root = Path(outputs_root)
    headlines = progress_html(root)  # a grid under way, then each suite's Table 2
    headlines += "".join(_headline(s, root) for s in sorted(root.glob("*/statistics/")))
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
            figures.append(f"<h3>{html.escape(rel)}</h3>\n{_thumbs(pngs, root)}")
    body = "<h1>vlsm studies</h1>\n" + headlines + "<h2>Studies</h2>\n"
    head = [f"<th>{h}</th>" for h in ("study", "complete", "failed", "other")]
    body += _table(head, rows) if rows else "<p>No study indexes yet.</p>\n"
    if figures:
        body += "<h2>Figures</h2>\n" + "\n".join(figures)
    return write_text(root / "index.html", _page("vlsm studies", body))
