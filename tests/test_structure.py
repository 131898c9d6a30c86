"""The shape of the code base: packages by stage, imports that only point down the stages, no
import cycles inside vlsm_lib, files of a readable size."""

import ast
import re
from pathlib import Path

import vlsm_lib
from vlsm_lib.models import MODELS

PACKAGE = Path(vlsm_lib.__file__).parent
REPO = PACKAGE.parent
# A tripwire, not a design tool: the packages say where code goes; a file this long says a
# module holds more than one concept.
MAX_LINES = 600
# The stages in the order the data passes through them. A module imports from its own stage or
# an earlier one; "" is what every stage reaches: the run folder's contract (results, locks),
# files, paths and process lifetime.
STAGES = ("", "data", "models", "engine", "analysis", "reports", "grid", "notebook", "cli")
TOP_LEVEL = {"__init__.py", "files.py", "paths.py", "lifetime.py", "locks.py", "results.py"}
TOP_LEVEL |= set(STAGES[1:])


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """vlsm_lib modules that ``path`` imports anywhere (module level or inside functions).

    ``from a.b import c`` counts as an import of ``a.b.c`` when that is a module, else of
    ``a.b``; relative imports are resolved against the file's package.
    """
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(files)) for name, path in files.items()}
    # the registry imports the model families by name (importlib), which an AST cannot see
    graph["vlsm_lib.models"] |= {module for module, _, _ in MODELS.values()}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_import_cycle_in_vlsm_lib():
    graph = _graph()
    assert "vlsm_lib.models.weights" in graph["vlsm_lib.models"]  # the walker sees imports
    assert _cycle(graph) == []


def _stage(module: str) -> int:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else 0


def test_vlsm_lib_is_laid_out_by_stage():
    entries = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert entries == TOP_LEVEL
    for stage in STAGES[1:]:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc and len(doc) > 80, (
            f"vlsm_lib/{stage}/__init__.py says what it takes and hands on"
        )


# The package root's public facade (``vlsm_lib.load_model``), imported lazily on first use.
FACADE = {("vlsm_lib", "vlsm_lib.engine.predict")}


def test_imports_only_point_down_the_stages():
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _stage(target) > _stage(module) and (module, target) not in FACADE
    )
    assert not upward, "a module imports from a later stage:\n" + "\n".join(upward)


def test_the_stage_check_sees_an_upward_import():
    assert (
        _stage("vlsm_lib.grid.runner") > _stage("vlsm_lib.engine.train") > _stage("vlsm_lib.data")
    )
    assert _stage("vlsm_lib.results") == _stage("vlsm_lib") == 0


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_files_stay_readable():
    files = [*PACKAGE.rglob("*.py"), *(REPO / "benchmarks").glob("*.py")]
    long = {
        str(p.relative_to(REPO)): n
        for p in files
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines, split by concept: {long}"


def test_no_public_name_is_defined_twice_in_the_analysis():
    defined: dict[str, list[str]] = {}
    for path in sorted((PACKAGE / "analysis").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
                defined.setdefault(node.name, []).append(path.name)
    twice = {name: files for name, files in defined.items() if len(files) > 1}
    assert not twice, f"one name, one concept: {twice}"


# Pointers a reader holding only the repository cannot follow (built from parts, so that this
# file does not match itself).
DANGLING = re.compile(
    "|".join(["DESIGN " + "§", "spec " + "§", r"\bissue \d+\b", r"\.\./" + "shared"])
)


def test_no_reference_points_outside_the_repository():
    found = []
    for path in sorted(REPO.rglob("*")):
        parts = path.relative_to(REPO).parts
        if (
            not path.is_file()
            or parts[0] in {".git", ".venv", "outputs"}
            or path.suffix not in {".py", ".md", ".yaml", ".ipynb", ".toml", ".cff", ".txt", ""}
        ):
            continue
        for n, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
            if DANGLING.search(line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:80]}")
    assert not found, "say it in the repository's own words:\n" + "\n".join(found)
