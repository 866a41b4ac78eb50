"""Code and docs point at documents the repository holds, and the architecture page is true.

Issue 16 found code citing "DESIGN 4.1", "DESIGN.md section 6" and "the seed
plan": documents that live outside the repository, so a maintainer reading a
docstring could not follow it. ``docs/architecture.md`` is the project's own
page for layers, contracts and the cycle; these tests keep every package,
``scripts/`` and ``docs/`` off outside documents, and every module path the
architecture page cites pointing at a file that exists (a module moved or
renamed without its row in the page fails here).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# Besides every top-level package: so a package added or moved is scanned too.
OTHER_DIRS = ("scripts", "docs")
OTHER_FILES = ("README.md", ".env.example")
SKIPPED_DIRS = {"__pycache__", ".venv", "tests", "node_modules"}

# What a citation of a document outside the repository looks like.
OUTSIDE_DOCUMENTS = (
    # Upper case: lower-case "design" is ordinary prose, the document's name is not.
    ("a DESIGN section", re.compile(r"\bDESIGN\b")),
    ("DESIGN.md", re.compile(r"\bdesign\.md\b", re.IGNORECASE)),
    ("the seed plan", re.compile(r"\bseed plan\b", re.IGNORECASE)),
    ("a path outside the repository", re.compile(r"\.\./shared/|/work/shared\b")),
)
# A repository path to a Python file, as docs cite them: `vali_utils/cycle.py`.
MODULE_PATH = re.compile(r"(?<![\w./-])((?:[A-Za-z_][\w-]*/)+[\w-]+\.py)\b")
# A relative Markdown link target: [miner.md](miner.md).
MARKDOWN_LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)#\s]+)(?:#[^)]*)?\)")


def outside_references(text: str) -> list[tuple[int, str]]:
    """(line number, what) for each line of ``text`` citing a document outside the repo."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        found.extend((number, what) for what, pattern in OUTSIDE_DOCUMENTS if pattern.search(line))
    return found


def cited_module_paths(text: str) -> set[str]:
    """Every ``dir/module.py`` path cited in ``text``."""
    return set(MODULE_PATH.findall(text))


def missing_paths(paths: set[str], root: Path) -> list[str]:
    """The cited paths with no file under ``root``, sorted."""
    return sorted(p for p in paths if not (root / p).is_file())


def scanned_files(root: Path) -> list[Path]:
    """Text files of every top-level package, ``scripts/`` and ``docs/``, and the top files."""
    tops = [d for d in root.iterdir() if d.is_dir() and (d / "__init__.py").is_file()]
    tops += [root / d for d in OTHER_DIRS if (root / d).is_dir()]
    files = [root / f for f in OTHER_FILES if (root / f).is_file()]
    for top in tops:
        if top.name in SKIPPED_DIRS:
            continue
        for path in sorted(top.rglob("*")):
            if path.is_file() and not SKIPPED_DIRS & set(path.relative_to(root).parts):
                files.append(path)
    return files


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None  # a binary file cites nothing


# --- the repository ------------------------------------------------------------------------


def test_no_file_cites_a_document_outside_the_repository():
    offenders = []
    for path in scanned_files(ROOT):
        text = read_text(path)
        if text is None:
            continue
        for number, what in outside_references(text):
            offenders.append(f"{path.relative_to(ROOT)}:{number}: {what}")
    assert not offenders, (
        "cite docs/architecture.md (or another docs/ page) instead:\n" + "\n".join(offenders)
    )


def test_the_scan_covers_the_packages_scripts_and_docs():
    scanned = {p.relative_to(ROOT).parts[0] for p in scanned_files(ROOT)}
    expected = {"common", "config", "consensus", "scraping", "vali_utils", "data_api", "neurons"}
    assert expected | {"scripts", "docs", "README.md"} <= scanned
    assert "tests" not in scanned


def test_every_module_path_in_the_architecture_page_exists():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    cited = cited_module_paths(text)
    assert len(cited) > 50, "the page's module table should be read by this test"
    assert not missing_paths(cited, ROOT), (
        "docs/architecture.md cites modules that do not exist (update the module table): "
        f"{missing_paths(cited, ROOT)}"
    )


def test_every_relative_link_in_the_architecture_page_exists():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    links = MARKDOWN_LINK.findall(text)
    assert links
    assert not [t for t in links if not (ARCHITECTURE.parent / t).exists()]


def test_the_readme_links_the_architecture_page():
    assert "docs/architecture.md" in (ROOT / "README.md").read_text(encoding="utf-8")


# --- the checks themselves -----------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        '"""Wire contracts between validators and miners (DESIGN 4.1)."""',
        "# Benchmarks for the figures in DESIGN.md section 6.",
        "Defaults are the seed plan's numbers.",
        "`../shared/reference/bittensor-11.md` lists the calls",
        "see /work/shared/STYLE.md",
        "offered_rps (500/s, the DESIGN target)",
    ],
)
def test_a_citation_of_an_outside_document_is_found(line):
    found = outside_references(f"first line\n{line}\n")
    assert found and {number for number, _ in found} == {2}


@pytest.mark.parametrize(
    "line",
    [
        "by design, a miner cannot write another's prefix",
        "Commit, then reveal (docs/architecture.md §3.7).",
        "the seed of the plan is the block's",
        "shared/ memory between workers",
    ],
)
def test_ordinary_prose_is_not_a_citation(line):
    assert outside_references(line) == []


def test_cited_paths_are_found_and_missing_ones_reported(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "epochs.py").write_text("")
    text = "the clock (`common/epochs.py`), the cycle in vali_utils/cycle.py; see README.md"
    cited = cited_module_paths(text)
    assert cited == {"common/epochs.py", "vali_utils/cycle.py"}
    assert missing_paths(cited, tmp_path) == ["vali_utils/cycle.py"]
