"""A third-party evidence line plugs in through the ``unlearning_forensics.lines`` entry points."""

from __future__ import annotations

import sys
import textwrap


def _install_plugin(folder, monkeypatch, dist: str, module: str, source: str) -> None:
    """A module and a distribution whose entry point names it in the lines group, on sys.path."""
    from forensics.core.registry import ENTRY_POINT_GROUP

    (folder / f"{module}.py").write_text(source)
    info = folder / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nentry = {module}\n")
    monkeypatch.syspath_prepend(str(folder))


def test_an_entry_point_line_is_discovered(tmp_path, monkeypatch):
    from forensics.core.registry import LINES, discover_lines

    _install_plugin(
        tmp_path,
        monkeypatch,
        "toy_plugin",
        "toy_plugin_line",
        textwrap.dedent("""
        from dataclasses import dataclass

        from forensics.core.evidence import Evidence
        from forensics.core.registry import register


        @dataclass
        class PluginConfig:
            #: how loud the plug-in is
            volume: int = 3


        @register("toy_plugin", question="Does a plug-in line load?", needs=("forget",), config=PluginConfig,
                  order=999, method="A line from another distribution.")
        def toy_plugin(ctx, config):
            return Evidence(line="toy_plugin", question="Does a plug-in line load?", status="descriptive",
                            effect=float(config.volume))
    """),
    )
    try:
        lines, broken = discover_lines()
        assert "toy_plugin" in lines and not broken
        assert list(lines)[-1] == "toy_plugin"  # order 999: after every built-in line
        assert lines["toy_plugin"].config().volume == 3
    finally:
        LINES.pop("toy_plugin", None)
        sys.modules.pop("toy_plugin_line", None)


def test_a_broken_plug_in_is_reported_not_fatal(tmp_path, monkeypatch):
    from forensics.core.registry import discover_lines

    _install_plugin(
        tmp_path, monkeypatch, "broken_plugin", "broken_plugin_line", "raise RuntimeError('plug-in exploded')\n"
    )
    try:
        lines, broken = discover_lines()
        assert broken == {"broken_plugin_line": "RuntimeError: plug-in exploded"}
        assert "behaviour" in lines
    finally:
        sys.modules.pop("broken_plugin_line", None)
