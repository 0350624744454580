"""The layering rules of the Architecture section: lines import the framework only, lines are
declared once, files stay small."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("forensics",)
MAX_LINES = 550  # ruff-formatted lines (450 before the formatter: its line breaks add about 15%)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_evidence_lines_import_neither_each_other_nor_the_zoo():
    from forensics.core.registry import discover_lines

    lines, broken = discover_lines()
    assert not broken
    line_modules = {spec.module for spec in lines.values()}
    for module in sorted(line_modules):
        path = ROOT / (module.replace(".", "/") + ".py")
        imported = _imports(path)
        others = {m for m in imported if m in line_modules and m != module}
        assert not others, f"{module} imports the evidence line module(s) {sorted(others)}"
        zoo = {m for m in imported if m == "forensics.zoo" or m.startswith("forensics.zoo.")}
        assert not zoo, f"{module} imports the zoo ({sorted(zoo)})"


def test_the_framework_does_not_import_evidence_lines():
    from forensics.core.registry import discover_lines

    line_modules = {spec.module for spec in discover_lines()[0].values()}
    for path in sorted((ROOT / "forensics").rglob("*.py")):
        if "lines" in path.relative_to(ROOT / "forensics").parts or "zoo" in path.parts:
            continue
        bad = _imports(path) & line_modules
        assert not bad, f"{path.relative_to(ROOT)} imports evidence line module(s) {sorted(bad)}"


def test_every_line_declares_config_votes_side_and_method():
    from forensics.core.registry import discover_lines

    for name, spec in discover_lines()[0].items():
        assert spec.config is not None, name
        assert spec.method and len(spec.method) < 900, name
        # every built-in line says which tokens it reads and whether familiarity with F's
        # subjects alone could move it (issue: right for the right reason)
        if spec.module.split(".")[0] == "forensics":
            assert "span" in spec.method.lower() and "familiar" in spec.method.lower(), name
        assert spec.side in ("above", "o_side", "either"), name
        if spec.side == "o_side":
            assert spec.o_side_path, name


def test_no_source_file_is_over_the_size_limit():
    too_long = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > MAX_LINES:
                too_long[str(path.relative_to(ROOT))] = n
    assert not too_long, f"files over {MAX_LINES} lines: {too_long}"


def test_every_voting_line_declares_its_minimum_sample():
    from forensics.core.minimum import VoteMinimum
    from forensics.core.registry import discover_lines

    for name, spec in discover_lines()[0].items():
        if set(spec.votes) & {"deleted", "suppressed", "not_forgotten"}:
            assert issubclass(spec.config, VoteMinimum), name


def test_the_shared_layers_import_no_application_layer():
    """compute/, inputs/, probing/ and sae/ serve the lines and the framework; they never import a
    line, the command line, the bench or the zoo (docs/architecture.md)."""
    shared = ("compute", "inputs", "probing", "sae")
    banned = ("forensics.lines", "forensics.cli", "forensics.metaeval", "forensics.zoo")
    for layer in shared:
        for path in sorted((ROOT / "forensics" / layer).rglob("*.py")):
            bad = {m for m in _imports(path) if m.startswith(banned)}
            assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
