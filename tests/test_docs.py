"""The user documentation (README.md and docs/): its relative links resolve, the front page
stays short, and no page names a commit hash (test_structure keeps every file from pointing at
documents outside the repository)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README_MAX_LINES = 210
# Linked files that are not committed because a command writes them: `make study` (its
# statistics run) writes the demo's results page; the screenshot of outputs/index.html is taken
# from a browser after `make study`. Paths relative to the repository root.
GENERATED = {
    "docs/results/demo.md",
    "docs/img/outputs_index.png",
}
# [text](target) and ![alt](target); the target stops at whitespace or ')', so an optional
# "title" after it is left out.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HASH_IN_BACKTICKS = re.compile(r"`[0-9a-f]{7,40}`")


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _without_code_blocks(text: str) -> str:
    """The page without its fenced code blocks, where brackets are code, not links."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def links(text: str) -> list[str]:
    """Relative link targets of a Markdown text, anchors stripped; web and mail links left out."""
    found = []
    for target in LINK.findall(_without_code_blocks(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s), mailto, ...; or an anchor on the same page
        found.append(target.split("#", 1)[0])
    return found


def test_the_link_finder_finds_links_and_skips_web_links_and_code():
    sample = (
        'See [the data page](docs/data.md#checks) and ![a figure](img/x.png "title").\n'
        "Not [the web](https://example.org/a), not [a mail](mailto:a@b.c), not [here](#top).\n"
        "```\nprint([1](2))\n```\n"
    )
    assert links(sample) == ["docs/data.md", "img/x.png"]


def test_every_relative_link_resolves():
    missing = []
    for page in _pages():
        for target in links(page.read_text()):
            path = (page.parent / target).resolve()
            if path.exists():
                continue
            relative = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else None
            if relative not in GENERATED:
                missing.append(f"{page.relative_to(REPO)}: {target}")
    assert not missing, "links to nothing:\n" + "\n".join(missing)


def test_the_generated_files_are_linked_from_somewhere():
    linked = {
        (page.parent / target).resolve().relative_to(REPO).as_posix()
        for page in _pages()
        for target in links(page.read_text())
        if (page.parent / target).resolve().is_relative_to(REPO)
    }
    assert GENERATED <= linked, f"GENERATED names files no page links: {GENERATED - linked}"


def test_the_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_pages_name_no_commit_hashes():
    found = []
    for page in _pages():
        text = page.read_text()
        for hit in HASH_IN_BACKTICKS.findall(text):
            found.append(f"{page.relative_to(REPO)}: {hit}")
    assert not found, "\n".join(found)
