"""HTML reports: run page, study index, root index; offline, escaped, links that resolve.

The last test opens the pages in headless Chromium (Selenium + Debian's chromedriver); it is
skipped only where /usr/bin/chromium is absent. CI installs it (see .ci/run).
"""

import functools
import http.server
import json
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import matplotlib
import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from vlsm_lib.reports.index import write_root_index, write_study_index
from vlsm_lib.reports.run_page import render_html

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-GUI backend)

CHROMIUM = Path("/usr/bin/chromium")
COMPLETE = "finetune__clipseg__synth_polyp__p6__s42"
FAILED = "finetune__clipseg__synth_polyp__p0__s42"
BROKEN = "finetune__clipseg__synth_polyp__p9__s42"
# Statistics runs of the fixture suite: only the complete one that finished last is shown.
STATS = "demo/statistics/statistics"
GRID = (
    "study,model,synth_polyp,synth_skin\n"
    'finetune,clipseg,"**0.512** [0.40, 0.60]","0.300 [0.20, 0.40]"\n'
    'finetune,<script>alert(1)</script>,"0.410 [0.30, 0.50]",""\n'
)
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
# Any attribute value that would make the browser (or a click) reach the network.
REMOTE = re.compile(r"""(?<![\w-])(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


def _run_json(run_id, status, prompt, **extra):
    return {
        "run_id": run_id,
        "study": "finetune",
        "suite": "demo",
        "notebook": "finetune.ipynb",
        "params": {"model": "clipseg", "dataset": "synth_polyp", "prompt": prompt, "seed": 42},
        "status": status,
        "started": "2025-01-01T10:00:00",
        "finished": "2025-01-01T10:01:15",
        "seconds": 75.2,
        "git_sha": "abc123",
        "versions": {"torch": "2.14.1"},
        "device": "cpu",
        **extra,
    }


def _png(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.bar([0, 1], [0.8, 0.6])
    fig.savefig(path)
    plt.close(fig)


def _statistics_run(run: Path, status: str, finished: str, grid: str):
    """A statistics run folder: run.json, a report page, results/ with Table 2 and a figure."""
    info = _run_json(run.name, status, "p6", finished=finished)
    (run / "results").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({**info, "study": "statistics"}))
    (run / "notebook.html").write_text("<!DOCTYPE html><title>statistics</title>")
    (run / "results" / "table2_grid.csv").write_text(grid, encoding="utf-8")
    _png(run / "results" / "cd_diagram.png")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """outputs/demo/finetune with an executed run, a failed run and a run with bad JSON, and
    outputs/demo/statistics with the complete statistics run to show, an older complete one
    and a failed one that finished last (neither shown)."""
    root = tmp_path_factory.mktemp("outputs")
    study = root / "demo" / "finetune"
    run = study / COMPLETE
    run.mkdir(parents=True)
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Fine-tuning report"),
            new_code_cell("print('dice <b>0.81</b> & done')"),
            # a prompt text that is HTML and script: shown as text, never run (pandas escapes)
            new_code_cell(f"import pandas as pd\npd.DataFrame({{'prompt_text': [{HOSTILE!r}]}})"),
            new_code_cell(
                "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                "fig, ax = plt.subplots(figsize=(2, 2))\nax.plot([0, 1], [1, 0])\nplt.show()"
            ),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(run)}}
    ).execute()
    nbformat.write(nb, run / "notebook.ipynb")
    info = _run_json(COMPLETE, "complete", "p6")
    info["params"]["weights"] = str(root / "demo" / "pretrain" / "pretrain__clipseg")
    (run / "run.json").write_text(json.dumps(info))
    (run / "metrics.json").write_text(
        json.dumps({"dice": 0.81234, "iou": 0.7, "hd95": 12.5, "n_images": 48, "loss": 0.1})
    )

    failed = study / FAILED
    failed.mkdir()
    error = "RuntimeError: CUDA <oom> & boom\nTraceback (most recent call last):\n  ..."
    info = _run_json(FAILED, "failed", "p0", error=error)
    info["params"]["weights"] = "/elsewhere/models/clipseg_base"
    (failed / "run.json").write_text(json.dumps(info))

    broken = study / BROKEN
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    (broken / "metrics.json").write_text("[1, 2")

    for path in (study / "figures" / "dice_by_prompt.png", study / "overview.png"):
        _png(path)
    stats = root / STATS
    _statistics_run(stats, "complete", "2025-01-01T10:05:00+00:00", GRID)
    _statistics_run(stats.with_name("old"), "complete", "2025-01-01T09:00:00", "a\nOLD_GRID\n")
    _statistics_run(stats.with_name("rerun"), "failed", "2025-01-01T11:00:00", "a\nFAILED_GRID\n")

    pages = {
        "report": render_html(run / "notebook.ipynb"),
        "study": write_study_index(study),
        "root": write_root_index(root),
    }
    return root, pages


class _Refs(HTMLParser):
    """Collects every href/src value of a page."""

    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("href", "src") and v]


def _local_refs(page: Path):
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return [r for r in parser.refs if not r.startswith(("data:", "#"))]


def test_report_is_self_contained(outputs):
    root, pages = outputs
    report = pages["report"]
    assert report == root / "demo" / "finetune" / COMPLETE / "notebook.html"
    text = report.read_text(encoding="utf-8")
    assert "data:image/png;base64," in text  # the figure is inline
    assert "dice &lt;b&gt;0.81&lt;/b&gt; &amp; done" in text  # stdout shown, escaped
    assert "subplots" in text and "<details" in text  # code shown, foldable
    assert "<script" not in text  # nothing to load, nothing to run
    assert not list(report.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_no_page_references_the_network(outputs):
    _, pages = outputs
    for page in pages.values():
        text = page.read_text(encoding="utf-8")
        assert not REMOTE.search(text), f"{page.name}: {REMOTE.search(text).group(0)}"


def test_remote_content_in_outputs_is_not_loaded(tmp_path):
    nb = new_notebook(
        cells=[
            new_markdown_cell("![logo](https://example.org/logo.png) and $e^{i\\pi}$"),
            new_code_cell(
                "display(HTML(...))",
                execution_count=1,
                outputs=[
                    new_output(
                        "display_data",
                        data={
                            "text/html": '<script src="https://cdn.example.org/x.js"></script>'
                            '<link rel="stylesheet" href="//cdn.example.org/x.css">',
                            "text/plain": "<HTML>",
                        },
                    )
                ],
            ),
        ]
    )
    nbformat.write(nb, tmp_path / "remote.ipynb")
    out = render_html(tmp_path / "remote.ipynb", tmp_path / "out" / "page.html")
    assert out == tmp_path / "out" / "page.html"
    text = out.read_text(encoding="utf-8")
    assert not REMOTE.search(text)
    assert "cdn.example.org/x.js" in text  # kept visible, just not loaded


def test_study_index_lists_runs(outputs):
    root, pages = outputs
    text = pages["study"].read_text(encoding="utf-8")
    for run_id in (COMPLETE, FAILED, BROKEN):
        assert run_id in text
    assert '<span class="complete">complete</span>' in text
    assert '<span class="failed">failed</span>' in text
    assert '<span class="unknown">unknown</span>' in text
    assert "0.812" in text and "12.500" in text and ">48<" in text  # dice, hd95, n_images
    assert "1 min 15 s" in text
    assert "CUDA &lt;oom&gt; &amp; boom" in text and "Traceback" not in text  # first line only
    assert "<th>prompt</th>" in text and "<th>seed</th>" not in text  # only varying params
    assert "<th>loss</th>" not in text and "<th>nsd</th>" not in text
    assert text.index(FAILED) < text.index(COMPLETE) < text.index(BROKEN)  # sorted by run id


def test_study_index_puts_identity_then_metrics_then_paths(outputs):
    _, pages = outputs
    head = re.findall(r"<th>(.*?)</th>", pages["study"].read_text(encoding="utf-8"))
    assert head[:3] == ["run", "status", "prompt"]  # identity first (model, dataset do not vary)
    assert head.index("prompt") < head.index("dice") < head.index("time") < head.index("weights")
    assert head[-1] == "note" and head.index("folder") < head.index("weights")


def test_study_index_shortens_paths(outputs):
    root, pages = outputs
    text = pages["study"].read_text(encoding="utf-8")
    full = root / "demo" / "pretrain" / "pretrain__clipseg"
    assert f'<td title="{full}">pretrain/pretrain__clipseg</td>' in text  # inside the suite
    assert '<td title="/elsewhere/models/clipseg_base">models/clipseg_base</td>' in text
    assert f">{full}<" not in text


def test_root_index_shows_headline_results(outputs):
    root, pages = outputs
    text = pages["root"].read_text(encoding="utf-8")
    assert "<h2>demo: headline results</h2>" in text
    assert text.index("headline results") < text.index('href="demo/finetune/index.html"')
    assert "<strong>0.512</strong> [0.40, 0.60]" in text  # Markdown bold, the best cell
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script" not in text
    assert f'href="{STATS}/notebook.html"' in text and f'href="{STATS}/results/"' in text
    assert f'src="{STATS}/results/cd_diagram.png"' in text
    assert "OLD_GRID" not in text and "FAILED_GRID" not in text  # older, failed: not shown


def test_root_index_without_statistics_run(tmp_path):
    """A suite without statistics, one with only a failed or grid-less run: no headline."""
    for suite in ("plain", "failing"):
        (tmp_path / suite / "finetune" / "run_a").mkdir(parents=True)
        write_study_index(tmp_path / suite / "finetune")
    failing = tmp_path / "failing" / "statistics"
    _statistics_run(failing / "failed", "failed", "2025-01-01T10:00:00", GRID)
    _statistics_run(failing / "no_grid", "complete", "2025-01-01T10:00:00", GRID)
    (failing / "no_grid" / "results" / "table2_grid.csv").unlink()
    text = write_root_index(tmp_path).read_text(encoding="utf-8")
    assert "headline" not in text and "statistics" not in text and "<strong>" not in text
    assert 'href="plain/finetune/index.html"' in text
    # A complete run whose grid cannot be read still gets its section, with a note.
    _statistics_run(failing / "bad_bytes", "complete", "2025-01-01T10:00:00", GRID)
    (failing / "bad_bytes" / "results" / "table2_grid.csv").write_bytes(b"\xff\xfe\x00<x>")
    text = write_root_index(tmp_path).read_text(encoding="utf-8")
    assert "failing: headline results" in text and "table2_grid.csv unreadable" in text


def test_root_index_counts_and_figures(outputs):
    root, pages = outputs
    text = pages["root"].read_text(encoding="utf-8")
    assert 'href="demo/finetune/index.html"' in text
    counts = re.findall(r'<td class="num (\w+)">(\d+)</td>', text)
    assert counts == [("complete", "1"), ("failed", "1"), ("other", "1")]
    assert 'src="demo/finetune/overview.png"' in text
    assert 'src="demo/finetune/figures/dice_by_prompt.png"' in text


def test_links_resolve(outputs):
    _, pages = outputs
    checked = 0
    for page in pages.values():
        for ref in _local_refs(page):
            target = page.parent / unquote(urlsplit(ref).path)
            assert target.exists(), f"{page}: {ref}"
            checked += 1
    assert checked >= 6


def test_study_index_survives_odd_folders(tmp_path):
    study = tmp_path / "s" / "empty"
    (study / "just_a_folder").mkdir(parents=True)
    (study / "listed").mkdir()
    (study / "listed" / "run.json").write_text('["a list, not an object"]')
    (study / ".hidden").mkdir()
    text = write_study_index(study).read_text(encoding="utf-8")
    assert text.count('<span class="unknown">') == 2 and ".hidden" not in text
    assert write_root_index(tmp_path).read_text(encoding="utf-8").count("<tr>") == 2


@pytest.fixture
def served(outputs):
    """Serves the outputs folder on a free local port (the way a researcher would share it)."""
    root, _ = outputs

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _check_page(driver, min_images):
    """No console errors (JS errors and failed loads are SEVERE) and every <img> decoded."""
    images = driver.execute_script(
        "return Array.from(document.images, i => [i.src.slice(0, 60), i.complete, i.naturalWidth])"
    )
    assert len(images) >= min_images, driver.current_url
    assert all(done and width > 0 for _, done, width in images), images
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser check needs /usr/bin/chromium (apt-get install chromium chromium-driver)",
)
@pytest.mark.slow
def test_pages_render_in_headless_chromium(served, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path keeps Selenium Manager (which would download) out of the way.
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=driver_path)
    )
    try:
        driver.set_page_load_timeout(60)
        driver.get(f"{served}/index.html")
        _check_page(driver, min_images=2)  # the two figure thumbnails
        # Follow the pages' own links: root -> study index -> run report.
        link = driver.find_element(By.CSS_SELECTOR, 'a[href$="finetune/index.html"]')
        driver.get(link.get_attribute("href"))
        _check_page(driver, min_images=0)
        assert len(driver.find_elements(By.CSS_SELECTOR, "tbody tr")) == 3
        link = driver.find_element(By.CSS_SELECTOR, 'a[href$="notebook.html"]')
        driver.get(link.get_attribute("href"))
        _check_page(driver, min_images=1)  # the matplotlib figure, inline; no <img src=x>
        assert driver.title == COMPLETE  # the hostile prompt's script did not run
        assert (
            "<script>document.title='pwned'</script>"
            in driver.find_element(By.TAG_NAME, "body").text
        )  # shown as text
    finally:
        driver.quit()
