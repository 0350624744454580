"""The evidence-line registry: every line is declared once, by :func:`register`.

A line is a function ``run(ctx, config) -> Evidence`` (``ctx``: the audit's
:class:`forensics.core.context.AuditContext`; ``config``: an instance of the line's config
dataclass) decorated with :func:`register`, which records everything the framework needs
to know about it: its name, its question, what it needs, its config class, the votes it
may cast and on which side of the control, its place in the report, and its method text.
Nothing else lists lines.

Discovery (:func:`discover_lines`) imports every module of the packages in
:data:`LINE_PACKAGES`, sub-packages included (so a new file or folder there is picked up as
it is: a line with private helpers is a folder, ``forensics/lines/remind/``) and every module a
third-party distribution names in the ``unlearning_forensics.lines`` entry-point group::

    [project.entry-points."unlearning_forensics.lines"]
    my_line = "my_package.my_line"
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from forensics.core.evidence import Evidence

#: What a line may declare it needs.
REQUIREMENTS = ("original", "unlearned", "reference", "forget", "retain", "holdout", "sequences")
#: Votes a line may cast.
VOTES = ("deleted", "suppressed", "not_forgotten", "modified", "unmodified")
#: What a line name may look like (it is used in ``--lines a,b`` and ``--set LINE.FIELD=...``).
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
#: Packages whose modules are scanned for lines.
LINE_PACKAGES = ("forensics.lines",)
#: Entry-point group through which other distributions add lines.
ENTRY_POINT_GROUP = "unlearning_forensics.lines"

#: Which side of the control a line's vote reads (and so how the bench scores it):
#: ``"above"``: only F above the control counts (score: the signed ``effect - control``);
#: ``"o_side"``: only a difference on the side where O shows its own contrast (score:
#: ``effect - control`` signed by O's side, read from ``details`` at ``o_side_path``);
#: ``"either"``: a gap either way (score: ``|effect - control|``; descriptive lines too).
Side = Literal["above", "o_side", "either"]

#: Roles a line may hold. ``"gate"``: the behaviour gate, the one line whose ``not_forgotten``
#: vote decides the verdict alone (:mod:`forensics.core.verdict`, step 1); it always runs, and
#: once it votes ``not_forgotten`` the runner skips the others. At most one line holds it.
ROLES = ("gate",)


@dataclass(frozen=True)
class LineSpec:
    """A registered evidence line (see :func:`register` for the fields)."""

    name: str
    question: str
    needs: tuple[str, ...]
    run: Callable[..., Evidence]
    config: type | None = None
    votes: tuple[str, ...] = ()
    side: Side = "either"
    o_side_path: tuple[str, ...] = ()
    order: int = 1000
    method: str = ""
    role: str | None = None
    profiles: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    budget: Callable[[Any], str] | None = None

    @property
    def module(self) -> str:
        """The module that defines the line's ``run`` function."""
        return self.run.__module__

    def missing(self, available: set[str]) -> list[str]:
        """The needs that ``available`` (input names) does not meet, in declaration order."""
        return [need for need in self.needs if need not in available]

    def default_config(self) -> Any:
        """A fresh default config object (None for a line without a config class)."""
        return self.config() if self.config is not None else None


class LineRegistrationError(ValueError):
    """A line declared wrongly or twice (a programming error, never bad user input)."""


#: Every registered line by name (filled as line modules are imported).
LINES: dict[str, LineSpec] = {}


def register(
    name: str,
    *,
    question: str,
    needs: tuple[str, ...],
    config: type | None = None,
    votes: tuple[str, ...] = (),
    side: Side = "either",
    o_side_path: tuple[str, ...] = (),
    order: int = 1000,
    method: str = "",
    role: str | None = None,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
    budget: Callable[[Any], str] | None = None,
) -> Callable[[Callable[..., Evidence]], Callable[..., Evidence]]:
    """Decorator: register ``run(ctx, config) -> Evidence`` as the evidence line ``name``.

    ``question``: the one-sentence question the line answers (report and results.json).
    ``needs``: inputs it requires, from :data:`REQUIREMENTS`; the audit records the line as
    "not run" when one is missing. ``config``: its config dataclass (fields documented
    with ``#:`` comments; ``forensics lines`` prints them). ``votes``: the votes it may
    cast (empty: descriptive). ``side``: which side of the control its vote reads (see
    :data:`Side`); ``o_side_path``: for ``side="o_side"``, the ``details`` keys leading to
    O's own contrast. ``order``: its place in the report (lower first). ``method``: a
    short, stable description of the procedure, printed in the report. ``role``: one of
    :data:`ROLES` or None. ``profiles``: per-profile overrides of the line's config fields
    (``{"quick": {"n_perm": 10, "probe.linear_c_grid": (0.1,)}}``; nested fields dotted),
    applied after the profile's ``n_boot`` / ``n_perm`` (:mod:`forensics.core.profiles`).
    ``budget``: ``config -> str``, one sentence on the model passes the line spends under that
    config (which models, sets, token positions, blocks, steps); ``forensics lines`` prints it
    per profile and ``benchmarks/audit.py`` beside each line's time and model-pass share.

    The function is returned wrapped: the :class:`Evidence` it returns gets ``line`` and
    ``question`` stamped from the registration where it leaves them empty, whether the runner
    or a caller runs it.

    Raises :class:`LineRegistrationError` for an unknown need, vote or side, a config that is not a
    dataclass, or a name already registered by another function.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise LineRegistrationError(f"line name {name!r}: use lower-case letters, digits and underscores")
    if side == "o_side" and not o_side_path:
        raise LineRegistrationError(f"line {name!r}: side='o_side' needs o_side_path (details keys to O's contrast)")
    unknown = sorted(set(needs) - set(REQUIREMENTS))
    if unknown:
        raise LineRegistrationError(f"line {name!r}: unknown requirements {unknown}; choose from {REQUIREMENTS}")
    bad_votes = sorted(set(votes) - set(VOTES))
    if bad_votes:
        raise LineRegistrationError(f"line {name!r}: unknown votes {bad_votes}; choose from {VOTES}")
    if side not in ("above", "o_side", "either"):
        raise LineRegistrationError(f"line {name!r}: side must be 'above', 'o_side' or 'either', not {side!r}")
    if role is not None and role not in ROLES:
        raise LineRegistrationError(f"line {name!r}: unknown role {role!r}; choose from {ROLES}")
    if config is not None and not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise LineRegistrationError(f"line {name!r}: config must be a dataclass, not {config!r}")

    def wrap(run: Callable[..., Evidence]) -> Callable[..., Evidence]:
        previous = LINES.get(name)
        if previous is not None and (previous.module, previous.run.__qualname__) != (run.__module__, run.__qualname__):
            raise LineRegistrationError(
                f"evidence line {name!r} is registered twice: by {previous.module}."
                f"{previous.run.__qualname__} and by {run.__module__}.{run.__qualname__}"
            )
        if role is not None:
            holder = next((s for s in LINES.values() if s.role == role and s.name != name), None)
            if holder is not None:
                raise LineRegistrationError(f"line {name!r}: the role {role!r} is held by {holder.name!r}")

        @functools.wraps(run)
        def stamped(*args: Any, **kwargs: Any) -> Evidence:
            evidence = run(*args, **kwargs)
            if isinstance(evidence, Evidence):
                evidence.line = evidence.line or name
                evidence.question = evidence.question or question
            return evidence

        LINES[name] = LineSpec(
            name=name,
            question=question,
            needs=tuple(needs),
            run=stamped,
            config=config,
            votes=tuple(votes),
            side=side,
            o_side_path=tuple(o_side_path),
            order=order,
            method=" ".join(method.split()),
            role=role,
            profiles={k: dict(v) for k, v in (profiles or {}).items()},
            budget=budget,
        )
        return stamped

    return wrap


def discover_lines() -> tuple[dict[str, LineSpec], dict[str, str]]:
    """Import every line module; return the registered lines in report order and the modules
    that failed to import (module -> one-line error). A broken module never stops an audit;
    a line declared twice does (:class:`LineRegistrationError`)."""
    broken: dict[str, str] = {}
    for package in LINE_PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            _import(info.name, broken)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except LineRegistrationError:
            raise
        except Exception as err:  # noqa: BLE001 - a broken plug-in must not stop the audit
            broken[entry.value] = one_line(err)
    ordered = sorted(LINES.values(), key=lambda spec: (spec.order, spec.name))
    return {spec.name: spec for spec in ordered}, broken


def _import(name: str, broken: dict[str, str]) -> None:
    try:
        importlib.import_module(name)
    except LineRegistrationError:
        raise
    except Exception as err:  # noqa: BLE001 - a broken line must not stop the audit
        broken[name] = one_line(err)


def one_line(err: BaseException) -> str:
    """``"ErrorType: first line of the message"``."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def gate_of(lines: Mapping[str, LineSpec]) -> str | None:
    """The name of the line that holds the ``"gate"`` role among ``lines`` (None: no gate)."""
    return next((name for name, spec in lines.items() if spec.role == "gate"), None)
