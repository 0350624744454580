"""A third-party evidence line plugs in through the ``unlearning_forensics.lines`` entry points."""

from __future__ import annotations

import sys
import textwrap


def test_an_entry_point_line_is_discovered(tmp_path, monkeypatch):
    from forensics.registry import ENTRY_POINT_GROUP, LINES, discover_lines

    package = tmp_path / "toy_plugin_line.py"
    package.write_text(textwrap.dedent('''
        from dataclasses import dataclass

        from forensics.evidence import Evidence
        from forensics.registry import register


        @dataclass
        class PluginConfig:
            #: how loud the plug-in is
            volume: int = 3


        @register("toy_plugin", question="Does a plug-in line load?", needs=("forget",), config=PluginConfig,
                  order=999, method="A line from another distribution.")
        def toy_plugin(ctx, config):
            return Evidence(line="toy_plugin", question="Does a plug-in line load?", status="descriptive",
                            effect=float(config.volume))
    '''))
    dist = tmp_path / "toy_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntoy = toy_plugin_line\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        lines, broken = discover_lines()
        assert "toy_plugin" in lines and not broken
        assert list(lines)[-1] == "toy_plugin"  # order 999: after every built-in line
        assert lines["toy_plugin"].config().volume == 3
    finally:
        LINES.pop("toy_plugin", None)
        sys.modules.pop("toy_plugin_line", None)


def test_a_broken_plug_in_is_reported_not_fatal(tmp_path, monkeypatch):
    from forensics.registry import ENTRY_POINT_GROUP, discover_lines

    (tmp_path / "broken_plugin_line.py").write_text("raise RuntimeError('plug-in exploded')\n")
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nbroken = broken_plugin_line\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        lines, broken = discover_lines()
        assert broken == {"broken_plugin_line": "RuntimeError: plug-in exploded"}
        assert "behaviour" in lines
    finally:
        sys.modules.pop("broken_plugin_line", None)
