"""Regenerate the reference pages that come from the code: the synopsis block of
docs/usage.md (from the argument parser) and docs/lines.md (from the line registry).

    .venv/bin/python scripts/gen_docs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from forensics.reports.reference import SYNOPSIS_END, SYNOPSIS_START, lines_markdown, synopsis_block

DOCS = Path(__file__).resolve().parent.parent / "docs"


def main() -> int:
    usage = DOCS / "usage.md"
    text = usage.read_text(encoding="utf-8")
    start, end = text.index(SYNOPSIS_START), text.index(SYNOPSIS_END) + len(SYNOPSIS_END)
    usage.write_text(text[:start] + synopsis_block() + text[end:], encoding="utf-8")
    (DOCS / "lines.md").write_text(lines_markdown(), encoding="utf-8")
    print(f"wrote {usage} and {DOCS / 'lines.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
