"""The worked example of adding an evidence line (docs/architecture.md) runs as printed."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _example_source() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Adding a line") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_documented_line_example_registers_and_runs_in_an_audit(tiny_zoo):
    import forensics
    from forensics.core.registry import LINES, discover_lines

    module = types.ModuleType("readme_line_example")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(_example_source(), str(README), "exec"), module.__dict__)
    try:
        lines, _ = discover_lines()
        assert "final_norm" in lines and list(lines).index("final_norm") == len(lines) - 1  # order 200: last
        data = tiny_zoo / "data"
        result = forensics.audit(
            tiny_zoo / "models" / "original",
            tiny_zoo / "models" / "retrain",
            data / "forget.jsonl",
            data / "retain.jsonl",
            data / "holdout.jsonl",
            profile="quick",
            lines=["final_norm"],
            settings={"final_norm": {"n_boot": 50}},
            progress=False,
            seed=3,
        )
        evidence = result.line("final_norm")
        assert evidence.line == "final_norm" and evidence.question.startswith("Is U's last-layer")  # stamped
        assert evidence.status == "descriptive" and evidence.effect > 0 and evidence.control > 0
        low, high = evidence.ci
        assert low <= evidence.effect - evidence.control <= high
        assert "final_norm" in result.to_json()["evidence"][-1]["line"]
    finally:
        LINES.pop("final_norm", None)
        sys.modules.pop(module.__name__, None)
