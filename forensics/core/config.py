"""Line configuration: from a line's config dataclass, a profile and the user's overrides
to the config object the line runs with; parsing ``--set LINE.FIELD=VALUE``; field docs.

Two field names are conventions every line config may follow:

- ``seed`` (:data:`SEED_FIELD`): receives the audit's seed, in the config and in every
  nested config dataclass that has it (an SAE's training config ...);
- ``n_boot`` / ``n_perm`` (:data:`RESAMPLING_FIELDS`): bootstrap draws and permutations,
  set by the profile on the top-level config.

Field documentation is the ``#:`` comment block above a field (the Sphinx convention).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from forensics.core.errors import ForensicsInputError
from forensics.core.profiles import Profile
from forensics.core.registry import LineSpec

SEED_FIELD = "seed"
RESAMPLING_FIELDS = ("n_boot", "n_perm")


def line_config(line: LineSpec, profile: Profile, seed: int, overrides: Mapping[str, Any] | None = None) -> Any:
    """The config object ``line`` runs with (None for a line without a config class).

    Order: the class defaults; ``seed`` everywhere it exists; the profile's ``n_boot`` /
    ``n_perm``; the line's own overrides for this profile (``LineSpec.profiles``), then the
    profile's per-line overrides (``Profile.lines``; fields the config lacks are skipped, see
    :func:`profile_problems`); then ``overrides`` (``{"field.sub": value}``, checked:
    an unknown field or a wrong type raises :class:`ForensicsInputError`).
    """
    if line.config is None:
        if overrides:
            raise ForensicsInputError(f"line {line.name!r} has no configuration to --set")
        return None
    config = _with_fields(line.config(), {SEED_FIELD: seed}, nested=True)
    top = {knob: getattr(profile, knob) for knob in RESAMPLING_FIELDS if getattr(profile, knob) is not None}
    config = _with_fields(config, top, nested=False)
    for key, value in [*line.profiles.get(profile.name, {}).items(), *profile.lines.get(line.name, {}).items()]:
        if _field_path_ok(config, key.split(".")):
            config = _set_path(config, key.split("."), value)
    for key, value in (overrides or {}).items():
        config = _set_path(config, key.split("."), value, strict=f"{line.name}.{key}")
    return config


def profile_problems(lines: Mapping[str, LineSpec], profiles: Mapping[str, Profile]) -> list[str]:
    """Per-line profile overrides that name a field the line's config lacks (a profile gone
    stale when a line changed), as ``"profile: line.field"``."""
    problems = []
    declared = [(p, name, ov) for name, spec in lines.items() for p, ov in spec.profiles.items()]
    declared += [(p.name, name, ov) for p in profiles.values() for name, ov in p.lines.items()]
    for profile_name, name, overrides in declared:
        spec = lines.get(name)
        if spec is None or spec.config is None:
            continue
        problems += [
            f"{profile_name}: {name}.{key}" for key in overrides if not _field_path_ok(spec.config(), key.split("."))
        ]
    return problems


def parse_overrides(items: list[str], lines: Mapping[str, LineSpec]) -> dict[str, dict[str, Any]]:
    """``["LINE.FIELD=VALUE", ...]`` -> ``{line: {"field": value}}``, values parsed and
    type-checked against the field's annotation (see :func:`parse_value`).

    Raises :class:`ForensicsInputError` (one line) for a malformed item, an unknown line or
    field, or a value of the wrong type.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, text = item.partition("=")
        line_name, dot, path = target.strip().partition(".")
        if not sep or not dot or not path:
            raise ForensicsInputError(f"--set {item!r}: expected LINE.FIELD=VALUE")
        spec = lines.get(line_name)
        if spec is None:
            raise ForensicsInputError(f"--set {item!r}: unknown evidence line {line_name!r}; known: {', '.join(lines)}")
        if spec.config is None:
            raise ForensicsInputError(f"--set {item!r}: line {line_name!r} has no configuration")
        owner, name = _resolve(spec.config(), path.split("."), f"{line_name}.{path}")
        hint = typing.get_type_hints(type(owner))[name]
        out.setdefault(line_name, {})[path] = parse_value(text.strip(), hint, f"{line_name}.{path}")
    return out


def parse_value(text: str, hint: Any, where: str) -> Any:
    """``text`` as a value of type ``hint`` (int, float, bool, str, Path, tuples and
    ``X | None`` of these): a Python literal (``3``, ``0.5``, ``(1, 2)``, ``'a'``),
    ``true`` / ``false``, ``none``, or for tuples a comma-separated list. Raises
    :class:`ForensicsInputError` naming ``where`` when the value does not fit."""
    lowered = text.lower()
    if lowered in ("none", "null"):
        value: Any = None
    elif lowered in ("true", "false"):
        value = lowered == "true"
    else:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, RecursionError, MemoryError):  # not a literal: the text itself
            value = text
    ok = False
    if isinstance(value, str) and "," in value:  # a comma list first: a tuple of str takes the whole text too
        ok, converted = _coerce(tuple(part.strip() for part in value.split(",") if part.strip()), hint)
    if not ok:
        ok, converted = _coerce(value, hint)
    if not ok:
        raise ForensicsInputError(f"--set {where}={text}: expected {_type_name(hint)}")
    return converted


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint), value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            ok, converted = _coerce(value, option)
            if ok:
                return True, converted
        return False, None
    if hint is type(None):
        return value is None, None
    if hint is typing.Any:
        return True, value
    if origin is tuple:
        args = typing.get_args(hint)
        items = value if isinstance(value, (tuple, list)) else (value,) if not isinstance(value, (dict, set)) else None
        if items is None:
            return False, None
        inner = args[0] if args else typing.Any
        converted = []
        for item in items:
            ok, c = _coerce(item, inner)
            if not ok:
                return False, None
            converted.append(c)
        return True, tuple(converted)
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if hint is str:
        return isinstance(value, str), value
    if hint is Path:
        return isinstance(value, (str, Path)), Path(value) if isinstance(value, (str, Path)) else None
    if isinstance(hint, type) and isinstance(value, hint):  # e.g. a nested config object passed as it is
        return True, value
    return False, None


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is not None:  # tuple[int, ...], int | None ...
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def field_docs(cls: type) -> dict[str, str]:
    """``{field: doc}`` from the ``#:`` comment lines directly above each field of ``cls``."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    docs: dict[str, str] = {}
    for node in cast(ast.ClassDef, ast.parse(source).body[0]).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            comment = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#:"):
                comment.insert(0, lines[row].strip()[2:].strip())
                row -= 1
            if comment:
                docs[node.target.id] = " ".join(comment)
    return docs


def describe_config(cls: type, prefix: str = "", values: Any = None) -> list[tuple[str, str, str, str]]:
    """``(field path, type, value, doc)`` for every field of a config dataclass, nested config
    dataclasses flattened as ``outer.inner``. ``values``: a config object whose values to show
    (default: the class defaults)."""
    rows = []
    hints = typing.get_type_hints(cls)
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__):  # inherited fields (VoteMinimum ...) keep their docs
        if dataclasses.is_dataclass(base):
            docs.update(field_docs(base))
    shown = values if values is not None else cls()
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        value = getattr(shown, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            rows += describe_config(type(value), f"{prefix}{f.name}.", value)
            continue
        rows.append((prefix + f.name, _type_name(hints.get(f.name, type(value))), repr(value), docs.get(f.name, "")))
    return rows


# --------------------------------------------------------------------------- helpers


def _with_fields(config, values: Mapping[str, Any], nested: bool):
    names = {f.name for f in dataclasses.fields(config) if f.init}
    changes = {k: v for k, v in values.items() if k in names}
    if nested:
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if f.init and f.name not in changes and dataclasses.is_dataclass(value) and not isinstance(value, type):
                changes[f.name] = _with_fields(value, values, nested=True)
    return dataclasses.replace(config, **changes) if changes else config


def _field_path_ok(config, path: list[str]) -> bool:
    for part in path:
        if not (dataclasses.is_dataclass(config) and part in {f.name for f in dataclasses.fields(config) if f.init}):
            return False
        config = getattr(config, part)
    return True


def _resolve(config, path: list[str], where: str) -> tuple[Any, str]:
    """The dataclass that owns the last field of ``path``, and that field's name."""
    for i, part in enumerate(path):
        names = [f.name for f in dataclasses.fields(config) if f.init]
        if part not in names:
            raise ForensicsInputError(
                f"--set {where}: {type(config).__name__} has no field {part!r}; fields: {', '.join(names)}"
            )
        if i == len(path) - 1:
            return config, part
        config = getattr(config, part)
        if not dataclasses.is_dataclass(config):
            raise ForensicsInputError(f"--set {where}: {part!r} is not a nested configuration")
    raise ForensicsInputError(f"--set {where}: empty field path")


def _set_path(config, path: list[str], value: Any, strict: str | None = None):
    if strict is not None:
        owner, name = _resolve(config, path, strict)
        hint = typing.get_type_hints(type(owner))[name]
        ok, value = _coerce(value, hint)
        if not ok:
            raise ForensicsInputError(f"--set {strict}: expected {_type_name(hint)}")
    if len(path) > 1:
        value = _set_path(getattr(config, path[0]), path[1:], value)
    return dataclasses.replace(config, **{path[0]: value})
