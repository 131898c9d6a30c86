"""One HTML page per executed run notebook: self-contained, offline, rendered by nbconvert.

Pages must open from a laptop, an archive or an air-gapped cluster: CSS and figures inline
(base64), and nothing fetched from the network (nbconvert's defaults pull require.js, MathJax,
mermaid and the widget manager from CDNs; those are switched off here). The study and suite
indexes are ``index.py``'s.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import nbformat

from vlsm_lib.files import write_text

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

_EXPORTERS = threading.local()


def _exporter():
    """This thread's HTML exporter, made once: compiling its templates cost about as much as
    rendering a run's notebook (0.2 s), for every report of a grid."""
    exporter = getattr(_EXPORTERS, "html", None)
    if exporter is not None:
        return exporter
    from jinja2 import DictLoader  # nbconvert is slow to import; the index writers skip it
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    # Widget views (tqdm.notebook bars) need the CDN widget manager to show anything; without
    # it their text/plain fallback is the useful rendering, so drop them from the priority.
    default = HTMLExporter().default_config.NbConvertBase.display_data_priority
    priority = [m for m in default if m != "application/vnd.jupyter.widget-view+json"]
    _EXPORTERS.html = HTMLExporter(
        config=Config({"NbConvertBase": {"display_data_priority": priority}}),
        template_name="lab",
        template_file=_TEMPLATE_NAME,
        extra_loaders=[DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
        embed_images=True,  # markdown ![](local.png) becomes base64 too
    )
    return _EXPORTERS.html


def render_html(
    notebook_path: str | os.PathLike, html_path: str | os.PathLike | None = None
) -> Path:
    """Render an executed notebook to a self-contained, offline HTML page; return its path.

    Default ``html_path`` is the notebook's path with ``.html``. Figures stay inline (base64),
    inputs are shown in foldable ``<details>``, and nothing is loaded over the network.
    """
    notebook_path = Path(notebook_path)
    html_path = Path(html_path) if html_path else notebook_path.with_suffix(".html")
    nb = nbformat.read(notebook_path, as_version=4)
    exporter = _exporter()
    # Every run's notebook is called notebook.ipynb; its folder (the run id) is the better title.
    name = notebook_path.stem
    if name == "notebook" and notebook_path.parent.name:
        name = notebook_path.parent.name
    resources = {"metadata": {"name": name, "path": str(notebook_path.parent)}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return write_text(html_path, _REMOTE_LOAD.sub(r"\1data-offline-\2\3", body))
