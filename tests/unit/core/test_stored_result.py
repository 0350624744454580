"""The audit context's cross-audit tier: a result computed once per audit, and once for every
audit that shares the cache folder."""

from __future__ import annotations

import numpy as np

from forensics.core.context import AuditContext


def _context(cache):
    return AuditContext(original=None, unlearned=None, forget=[], retain=[], cache_dir=cache)  # type: ignore[arg-type]


def test_stored_result_is_computed_once_per_cache_folder(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"recovery": np.float64(0.25), "curve": (1, 2)}

    first = _context(tmp_path).stored_result("power", {"model": "m", "config": "c"}, compute)
    again = _context(tmp_path).stored_result("power", {"model": "m", "config": "c"}, compute)  # another audit
    assert first == again == {"recovery": 0.25, "curve": [1, 2]} and len(calls) == 1
    other = _context(tmp_path).stored_result("power", {"model": "m2", "config": "c"}, compute)
    assert other == first and len(calls) == 2  # another key computes
    # a corrupt file is a miss, not an error
    for path in (tmp_path / "power").glob("*.json"):
        path.write_text("{half")
    _context(tmp_path).stored_result("power", {"model": "m", "config": "c"}, compute)
    assert len(calls) == 3


def test_without_a_cache_folder_the_result_lives_for_one_audit():
    calls = []
    ctx = _context(None)
    for _ in range(2):
        ctx.stored_result("power", {"k": 1}, lambda: calls.append(1) or {"x": 1})
    assert len(calls) == 1 and ctx.counts["power.computed"] == 1 and ctx.counts["power.served"] == 1
    _context(None).stored_result("power", {"k": 1}, lambda: calls.append(1) or {"x": 1})
    assert len(calls) == 2
