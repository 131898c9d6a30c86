"""The explorer: its widgets follow the words, in Python and in a real JupyterLab."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vlsm_lib import paths
from vlsm_lib.engine.predict import load_model
from vlsm_lib.notebook.explore import Explorer, ExplorerWidget, checkpoints

CHROMIUM = Path("/usr/bin/chromium")
RUN = "demo/finetune/finetune__cris__synth_polyp__p6"  # where the notebook's default looks


@pytest.fixture(scope="module")
def demo_like(tmp_path_factory, tiny_cris):
    """An outputs folder laid out as `make study` leaves it, with a tiny CRIS finetuned for two
    epochs at p6 (a model that reads the words: conftest.tiny_cris) and MedShapes polyps."""
    run, data = tiny_cris
    outputs = tmp_path_factory.mktemp("outputs")
    shutil.copytree(data, outputs / "data")
    shutil.copytree(run, outputs / RUN)
    (outputs / RUN / "run.json").write_text(json.dumps({"status": "complete"}))
    return outputs


@pytest.mark.slow  # trains a tiny CRIS first
def test_the_widgets_follow_the_words_levels_and_images(demo_like):
    ex = Explorer(load_model(demo_like / RUN, device="cpu"), demo_like / "data", "synth_polyp")
    assert checkpoints(demo_like) == [demo_like / RUN]
    view = ExplorerWidget(ex, [], outputs=demo_like)  # outside an event loop: no debounce
    assert view.model.value == str(demo_like / RUN)
    assert view.prompt_a.value == ex.levels(0)["p6"] and "Dice A" in view.dice.value
    first = (view.dice.value, view.view.value)
    view.prompt_a.value = "two large polyp, located in bottom right of the image"
    assert view.dice.value != first[0] and view.view.value != first[1]
    view.level.value = "p1"
    assert view.prompt_a.value == ex.levels(0)["p1"]
    view.image.value = 3  # a level's words follow the level to the next image
    assert view.prompt_a.value == ex.levels(3)["p1"]
    view.prompt_a.value = "my own words"
    view.image.value = 4  # typed words stay
    assert view.prompt_a.value == "my own words"
    table = ex.level_table(0)
    assert list(table.level) == list(ex.levels(0)) and table.dice.between(0, 1).all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = condition()
        except Exception:  # the page is still building; ask again
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser check needs /usr/bin/chromium (apt-get install chromium chromium-driver)",
)
@pytest.mark.slow
def test_the_explorer_in_jupyterlab_follows_typing(demo_like, tmp_path):
    """JupyterLab serves notebooks/explore.ipynb; headless Chromium runs every cell, types a
    prompt into prompt A and sees the shown Dice and the mask image change; no cell errors."""
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(paths.REPO_ROOT / "notebooks" / "explore.ipynb", work / "explore.ipynb")
    port, token = _free_port(), "vlsm-test"
    env = {
        **os.environ,
        "VLSM_OUTPUTS": str(demo_like),
        "VLSM_DATA": str(demo_like / "data"),
        "HF_HUB_OFFLINE": "1",
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    lab = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--allow-root",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--LabApp.expose_app_in_browser=True", "--ServerApp.ip=127.0.0.1",
         "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = None
    try:
        _wait(lambda: urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2),
              90, "JupyterLab to start")  # fmt: skip
        service = webdriver.ChromeService(
            executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"
        )
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(120)
        driver.get(f"{base}/lab/tree/explore.ipynb?token={token}")
        _wait(lambda: driver.execute_script(
            "const a = window.jupyterapp; return !!(a && a.shell.currentWidget"
            " && a.shell.currentWidget.sessionContext"
            " && a.shell.currentWidget.sessionContext.session"
            " && a.shell.currentWidget.sessionContext.session.kernel)"),
            120, "the notebook and its kernel")  # fmt: skip
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        dice = _wait(lambda: driver.find_element(By.CSS_SELECTOR, ".vlsm-dice .dice-a"),
                     180, "the explorer's Dice")  # fmt: skip
        image = driver.find_element(By.CSS_SELECTOR, "img.vlsm-row")
        before = (dice.text, image.get_attribute("src"))
        box = driver.find_element(By.CSS_SELECTOR, ".vlsm-prompt-a input")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("two large polyp, located in bottom right of the image")
        _wait(lambda: driver.find_element(By.CSS_SELECTOR, ".vlsm-dice .dice-a").text
              != before[0], 60, "the Dice to follow the words")  # fmt: skip
        after = driver.find_element(By.CSS_SELECTOR, "img.vlsm-row").get_attribute("src")
        assert after != before[1], "the mask image did not change"
        _wait(lambda: driver.execute_script(
            "const n = window.jupyterapp.shell.currentWidget.content;"
            " return n.widgets.every(c => c.model.type !== 'code'"
            " || c.model.executionCount !== null)"), 120, "every cell to run")  # fmt: skip
        errors = driver.execute_script(
            "return Array.from(document.querySelectorAll("
            "'.jp-OutputArea-output[data-mime-type=\"application/vnd.jupyter.stderr\"]'),"
            " e => e.textContent).filter(t => /Error|Traceback/.test(t))"
        )
        assert not errors, errors
    finally:
        if driver is not None:
            driver.quit()
        lab.terminate()
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.kill()
