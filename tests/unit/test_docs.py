"""The documentation cannot drift from the code: generated pages are current, every methods
reference and every repository path the code and docs cite resolves, the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: Where citations are looked for.
SOURCES = [*sorted((ROOT / "forensics").rglob("*.py")), ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_generated_pages_are_current():
    from forensics.reports.reference import SYNOPSIS_END, SYNOPSIS_START, lines_markdown, synopsis_block

    usage = _text(DOCS / "usage.md")
    block = usage[usage.index(SYNOPSIS_START) : usage.index(SYNOPSIS_END) + len(SYNOPSIS_END)]
    assert block == synopsis_block(), "docs/usage.md's synopsis is stale: run python scripts/gen_docs.py"
    assert _text(DOCS / "lines.md") == lines_markdown(), "docs/lines.md is stale: run python scripts/gen_docs.py"


def test_every_methods_reference_resolves():
    headings = re.findall(r"^## (.+)$", _text(DOCS / "methods.md"), re.M)
    numbered = {h.split(".", 1)[0] for h in headings if re.match(r"\d+\.", h)}
    cited = []
    for path in SOURCES:
        text = _text(path)
        assert "METHODS section" not in text, f"{path.relative_to(ROOT)} cites a methods file the repository lacks"
        for number in re.findall(r"docs/methods\.md §(\d+)", text):
            cited.append(number)
            assert number in numbered, f"{path.relative_to(ROOT)} cites docs/methods.md §{number}, which does not exist"
        for name in re.findall(r'docs/methods\.md, "([^"]+)"', text):
            assert name in headings, f'{path.relative_to(ROOT)} cites docs/methods.md, "{name}", which does not exist'
    assert len(cited) >= 10


def test_every_cited_repository_path_exists():
    pattern = re.compile(r"(?<![\w/.-])((?:forensics|docs|tests|benchmarks|scripts|notebooks)/[\w/.-]*\w)")
    missing = set()
    for path in SOURCES:
        for cited in pattern.findall(_text(path)):
            target = ROOT / cited
            if not target.exists() and not cited.endswith("/") and "*" not in cited and "<" not in cited:
                missing.add(f"{path.relative_to(ROOT)}: {cited}")
    assert not missing, sorted(missing)


def test_readme_is_short_and_routes_into_docs():
    readme = _text(ROOT / "README.md")
    assert len(readme.splitlines()) <= 250
    for page in ("usage.md", "lines.md", "methods.md", "architecture.md", "zoos.md", "decisions.md"):
        assert f"docs/{page}" in readme and (DOCS / page).is_file(), page


def test_every_relative_markdown_link_resolves():
    broken = []
    for page in [ROOT / "README.md", *sorted(DOCS.rglob("*.md")), ROOT / "notebooks" / "README.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", _text(page)):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            if not (page.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
