"""The ``forensics`` command line.

Bad input of any kind ends with one line, ``error: <reason>``, on stderr and exit code 2;
never a traceback, never a half-written output folder.

Commands:
  forensics zoo build --out DIR [--size tiny|small] [--seed N] [--world attributes|bio]
  forensics check --original O [--unlearned U] [--forget F.jsonl] [--retain R.jsonl]
                  [--holdout H.jsonl] [--sequences S.jsonl] [--device] [--dtype] [--chat-template]
  forensics memprobe --model DIR --memorised M.jsonl --matched C.jsonl --paraphrase B.jsonl --out DIR
  forensics audit --original O --unlearned U --forget F.jsonl --retain R.jsonl [--holdout H.jsonl]
                  [--reference REF] [--sequences S.jsonl] --out DIR [--device] [--dtype] [--seed N]
                  [--profile quick|standard|thorough] [--redact] [--cache DIR] [--lines a,b]
                  [--set LINE.FIELD=VALUE ...] [--all-lines] [--chat-template]
  forensics lines [NAME ...]
  forensics demo [--zoo DIR] [--size small|tiny] [--out DIR] [--profile ...]
  forensics bench --zoo DIR --out DIR [--seeds 0,1,2] [--size small|tiny] [--world attributes|bio] [--profile ...]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from forensics.errors import ForensicsInputError
from forensics.registry import LineRegistrationError

DEFAULT_ZOO = Path("zoo")
DEFAULT_DEMO_OUT = Path("demo_reports")


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other bad input."""

    def error(self, message: str):  # noqa: D401 - argparse API
        """Print ``error: <message>`` and exit with status 2 (argparse's usage errors)."""
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The ``forensics`` argument parser with every sub-command."""
    parser = _Parser(prog="forensics", description="Forensic audit of machine unlearning.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    zoo = sub.add_parser("zoo", help="the model-organism zoo")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True, parser_class=_Parser)
    build = zoo_sub.add_parser("build", help="train the zoo of small models with ground truth")
    build.add_argument("--out", required=True, type=Path, help="output folder")
    build.add_argument("--size", choices=("tiny", "small"), default="small")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--world", choices=("attributes", "bio"), default="attributes",
                       help="attributes: closed-vocabulary facts (default); bio: free-text questions about authors")

    data = sub.add_parser("data", help="fact sets")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    imp = data_sub.add_parser("import", help="convert a TOFU-, WMDP- or JSONL-shaped file into a fact set")
    imp.add_argument("source", type=Path, help="JSON array or JSONL of records")
    imp.add_argument("--format", required=True, choices=("tofu", "wmdp", "jsonl"))
    imp.add_argument("--out", required=True, type=Path, help="folder for <source name>.jsonl")
    imp.add_argument("--prompt-template", default="Question: {question}\nAnswer:",
                     help="the prompt around each question ({question} is replaced)")
    imp.add_argument("--subject-field", help="record field naming each fact's subject (default: none)")
    imp.add_argument("--chat-template", type=Path, metavar="CHECKPOINT",
                     help="render prompts in this checkpoint's chat template (then do not pass --chat-template "
                          "to audit)")

    check = sub.add_parser("check", help="validate models and data sets without auditing")
    check.add_argument("--original", required=True, type=Path)
    check.add_argument("--unlearned", type=Path)
    for name in ("forget", "retain", "holdout", "sequences"):
        check.add_argument(f"--{name}", type=Path)
    _device_args(check)
    _chat_args(check)

    memprobe = sub.add_parser("memprobe", help="leave-one-out cross-sequence memorisation probe")
    memprobe.add_argument("--model", required=True, type=Path)
    memprobe.add_argument("--memorised", required=True, type=Path, help="M: sequences the model memorised")
    memprobe.add_argument("--matched", required=True, type=Path, help="C: M with distinctive tokens swapped")
    memprobe.add_argument("--paraphrase", required=True, type=Path, help="B: a further paraphrase of C")
    memprobe.add_argument("--out", required=True, type=Path)
    memprobe.add_argument("--seed", type=int, default=0)
    _device_args(memprobe)

    audit = sub.add_parser("audit", help="audit an unlearned model against its original: verdict and reports")
    audit.add_argument("--original", required=True, type=Path, help="the model before unlearning")
    audit.add_argument("--unlearned", required=True, type=Path, help="the model after unlearning")
    audit.add_argument("--forget", required=True, type=Path, help="F: facts that were to be forgotten (JSONL)")
    audit.add_argument("--retain", required=True, type=Path, help="R: facts that were to be kept (JSONL)")
    audit.add_argument("--holdout", type=Path,
                       help="H: facts of the same form no model saw, the control (without it: INCONCLUSIVE)")
    audit.add_argument("--reference", type=Path, help="a model retrained without F (a second control)")
    audit.add_argument("--sequences", type=Path, help="sequence set (JSONL): extra text for training the SAE on O")
    audit.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")
    audit.add_argument("--seed", type=int, default=0)
    audit.add_argument("--profile", choices=("quick", "standard", "thorough"), default="standard")
    audit.add_argument("--redact", action="store_true", help="replace fact text by ids in the reports")
    audit.add_argument("--lines", help="comma-separated evidence lines to run (default: every line the inputs "
                                       "allow; behaviour always runs)")
    audit.add_argument("--all-lines", action="store_true",
                       help="run every line even when the behaviour gate already decided NOT_FORGOTTEN "
                            "(by default the others are skipped: they cannot change that verdict)")
    audit.add_argument("--set", action="append", default=[], metavar="LINE.FIELD=VALUE", dest="settings",
                       help="override one field of a line's configuration (repeatable; after the profile; "
                            "`forensics lines` lists the fields)")
    audit.add_argument("--cache", type=Path,
                       help="activation / resume cache to keep and share (default: .OUT.cache beside --out, "
                            "deleted after a successful run)")
    _device_args(audit)
    _chat_args(audit)

    lines = sub.add_parser("lines", help="list the evidence lines: question, needs, votes and configuration fields")
    lines.add_argument("names", nargs="*", help="only these lines")
    lines.add_argument("--profile", choices=("quick", "standard", "thorough"),
                       help="show the values this profile runs each line with (default: the config defaults)")

    demo = sub.add_parser("demo", help="build the small zoo (cached) and audit two of its models")
    demo.add_argument("--zoo", type=Path, default=DEFAULT_ZOO, help="zoo folder (built if missing)")
    demo.add_argument("--size", choices=("tiny", "small"), default="small")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", type=Path, default=DEFAULT_DEMO_OUT, help="where the demo's reports go")
    demo.add_argument("--profile", choices=("quick", "standard", "thorough"), default="standard")
    demo.add_argument("--models", default="rmu,retrain", help="comma-separated zoo models to audit")
    _device_args(demo)

    bench = sub.add_parser("bench", help="meta-evaluation: audit every zoo model per seed; verdict accuracy, "
                                         "faithfulness and robustness of each line")
    bench.add_argument("--zoo", required=True, type=Path, help="folder of per-seed zoos (seed<N>/, built if missing)")
    bench.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")
    bench.add_argument("--seeds", default="0,1,2", help="comma-separated zoo seeds")
    bench.add_argument("--size", choices=("tiny", "small"), default="small")
    bench.add_argument("--world", choices=("attributes", "bio"), default="attributes",
                       help="zoo world: attributes (closed vocabulary) or bio (free-text questions)")
    bench.add_argument("--profile", choices=("quick", "standard", "thorough"), default="standard")
    bench.add_argument("--models", help="comma-separated zoo models to audit (default: all with a ground truth)")
    bench.add_argument("--lines", help="comma-separated evidence lines (default: all)")
    bench.add_argument("--no-perturb", action="store_true", help="skip the quantized / relearned deleted models")
    _device_args(bench)
    return parser


def _chat_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chat-template", action="store_true",
                        help="render every fact prompt as a user turn in the original checkpoint's own chat "
                             "template (for chat-tuned models; recorded in the report)")


def _device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))


def cmd_data_import(args) -> int:
    """Convert a public-format file into a fact set (:mod:`forensics.importers`)."""
    from forensics.importers import import_facts
    from forensics.loading import load_tokenizer

    tokenizer = load_tokenizer(args.chat_template) if args.chat_template else None
    target, facts = import_facts(args.source, args.out, args.format, args.prompt_template, args.subject_field,
                                 tokenizer)
    subjects = len({f.subject for f in facts if f.subject})
    print(f"{len(facts)} facts written to {target}" + (f" ({subjects} subjects)" if subjects else
                                                        " (no subjects: each fact is its own group)"))
    return 0


def cmd_zoo_build(args) -> int:
    """Build (or reuse) the model-organism zoo in ``--out``."""
    from forensics.zoo import build_zoo

    build_zoo(args.out, size=args.size, seed=args.seed, progress=True, world=args.world)
    print(f"zoo written to {args.out}")
    return 0


def cmd_check(args) -> int:
    """Load and validate exactly as an audit does (:func:`forensics.inputs.load_inputs`), then report."""
    from forensics.inputs import load_inputs

    inputs = load_inputs(args.original, args.unlearned, args.forget, args.retain, args.holdout,
                         sequences=args.sequences, device=args.device, dtype=args.dtype,
                         chat_template=args.chat_template)
    original = inputs.original
    prompts = [f.prompt for f in (inputs.forget or inputs.retain or inputs.holdout or [])[:4]]
    agree = {}
    if prompts:  # the check a careful auditor runs by hand: our logits against transformers' on their prompts
        from forensics.agreement import prompt_agreement

        agree = {role: prompt_agreement(m, prompts) for role, m in (("original", original),
                                                                     ("unlearned", inputs.unlearned)) if m}
    tail = (f"; logits equal transformers' on {len(prompts)} of your prompts (max difference "
            f"{agree['original']:.1g} of the logit scale)" if prompts else "")
    print(f"original   {original.path}: {original.architecture}, {original.n_layers} layers, ok{tail}")
    if inputs.unlearned is not None:
        tail = (f"; logits equal transformers' (max difference {agree['unlearned']:.1g})" if prompts else "")
        print(f"unlearned  {inputs.unlearned.path}: matches the original's architecture, shapes and vocabulary{tail}")
    if inputs.chat_template:
        print(f"chat template of {inputs.chat_template['source']}: prompts become "
              f"{inputs.chat_template['example']!r}")
    for name in ("forget", "retain", "holdout"):
        if inputs.records.get(name):
            print(f"{name:<10} {getattr(args, name)}: {inputs.records[name]['n']} facts")
    if inputs.records.get("sequences"):
        print(f"sequences  {args.sequences}: {inputs.records['sequences']['n']} sequences")
    for warning in inputs.warnings:
        print(f"  warning: {warning}")
    return 0


def cmd_memprobe(args) -> int:
    """Per-depth memorisation gap of one model against its random-init twin."""
    from forensics.data import load_sequences
    from forensics.loading import load_model
    from forensics.output import atomic_output_dir, check_output_dir
    from probes.memprobe import (
        MemorisationConfig, memorisation_gap, memprobe_figure, memprobe_table, random_init_twin,
    )

    check_output_dir(args.out)
    pools = [[s.text for s in load_sequences(path)[0]] for path in (args.memorised, args.matched, args.paraphrase)]
    loaded = load_model(args.model, args.device, args.dtype)
    config = MemorisationConfig(seed=args.seed)
    result = memorisation_gap(loaded, *pools, config)
    control = memorisation_gap(random_init_twin(loaded, seed=args.seed), *pools, config)
    rows = memprobe_table(result, control, config)
    with atomic_output_dir(args.out) as out:
        (out / "memprobe.json").write_text(json.dumps(
            {"model": str(args.model), "n_keys": result["n_keys"], "prefixes": list(config.prefixes),
             "seed": args.seed, "per_depth": rows}, indent=2))
        header = "depth,true_loo,pure_loo,gap,gap_ci_low,gap_ci_high,control_gap,gap_minus_control\n"
        (out / "memprobe.csv").write_text(header + "".join(
            f"{r['depth']},{r['true_loo']:.4f},{r['pure_loo']:.4f},{r['gap']:.4f},{r['gap_ci'][0]:.4f},"
            f"{r['gap_ci'][1]:.4f},{r['control_gap']:.4f},{r['gap_minus_control']:.4f}\n" for r in rows))
        (out / "memprobe.png").write_bytes(memprobe_figure(rows, f"{args.model.name}: {result['n_keys']} keys"))
    print(f"{'depth':>5} {'true':>6} {'pure':>6} {'gap':>7} {'95% CI':>17} {'random':>7}")
    for r in rows:
        print(f"{r['depth']:>5} {r['true_loo']:>6.3f} {r['pure_loo']:>6.3f} {r['gap']:>+7.3f} "
              f"[{r['gap_ci'][0]:+.3f}, {r['gap_ci'][1]:+.3f}] {r['control_gap']:>+7.3f}")
    print(f"written to {args.out}")
    return 0


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["forensics", *sys.argv[1:]])


def cmd_audit(args) -> int:
    """Audit U against O (:func:`forensics.pipeline.audit`), print the verdict and the line summary."""
    from forensics.config import parse_overrides
    from forensics.pipeline import audit
    from forensics.registry import discover_lines

    settings = parse_overrides(args.settings, discover_lines()[0]) if args.settings else None
    result = audit(
        original=args.original, unlearned=args.unlearned, forget=args.forget, retain=args.retain,
        holdout=args.holdout, reference=args.reference, sequences=args.sequences, out=args.out,
        device=args.device, dtype=args.dtype, seed=args.seed, profile=args.profile, redact=args.redact,
        cache_dir=args.cache, command=_command_line(), settings=settings, all_lines=args.all_lines,
        chat_template=args.chat_template,
        lines=[n.strip() for n in args.lines.split(",") if n.strip()] if args.lines else None,
    )
    _print_result(result)
    return 0


def _print_result(result, indent: str = "") -> None:
    v = result.verdict
    print(f"{indent}verdict: {v.label} (confidence {v.confidence})")
    print(f"{indent}  {v.reason}")
    for e in result.evidence:
        seconds = result.timings.get(e.line, {}).get("seconds", 0.0)
        vote = e.vote or ("not run" if e.status == "not_run" else e.status if e.status != "ok" else "no vote")
        cached = " (cached)" if result.timings.get(e.line, {}).get("cached") else ""
        print(f"{indent}  {e.line:<22} {vote:<14} {seconds:7.1f} s{cached}")
    if result.out is not None:
        for name in ("report.html", "report.pdf", "results.json"):
            if (result.out / name).exists():
                print(f"{indent}  {result.out / name}")


def cmd_demo(args) -> int:
    """Build (or reuse) the zoo, then audit a suppressed model and the retrained one against `original`.

    Reports go to ``--out``/<model>/; a previous demo report there is replaced. Activations
    and the SAE of `original` are cached in ``--out``/.cache and shared by both audits.
    """
    import shutil
    import time

    from forensics.loading import load_model
    from forensics.pipeline import audit
    from forensics.zoo import build_zoo

    started = time.time()
    build_zoo(args.zoo, size=args.size, seed=args.seed, progress=True)
    labels = json.loads((args.zoo / "labels.json").read_text())
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for name in names:
        if name not in labels or name == "original":
            raise ForensicsInputError(f"unknown zoo model {name!r}; choose from {', '.join(sorted(labels))}")
    for name in names:
        previous = args.out / name
        if previous.exists():
            if not (previous / "results.json").is_file():
                raise ForensicsInputError(f"{previous} exists and is not a demo report; choose another --out")
            shutil.rmtree(previous)
    original = load_model(args.zoo / "models" / "original", args.device, args.dtype)
    data = args.zoo / "data"
    results = {}
    for name in names:
        print(f"\n== auditing `{name}` against `original` (profile {args.profile})", flush=True)
        results[name] = audit(
            original=original, unlearned=args.zoo / "models" / name, forget=data / "forget.jsonl",
            retain=data / "retain.jsonl", holdout=data / "holdout.jsonl", out=args.out / name,
            device=args.device, dtype=args.dtype, seed=args.seed, profile=args.profile,
            cache_dir=args.out / ".cache", command=_command_line() + f"  # model {name}",
        )
        _print_result(results[name], indent="  ")
    print(f"\nDemo summary ({time.time() - started:.0f} s):")
    for name, result in results.items():
        truth = labels[name].get("ground_truth", "?")
        print(f"  {name:<10} verdict {result.verdict.label:<14} ({result.verdict.confidence:<6})  "
              f"ground truth {truth:<14} report {result.out / 'report.html'}")
    return 0


def cmd_bench(args) -> int:
    """Run the meta-evaluation bench (:func:`forensics.bench.run_bench`) and print its tables."""
    from forensics.bench import BenchConfig, run_bench
    from reports.bench import text_tables

    def names(text):
        return tuple(n.strip() for n in text.split(",") if n.strip()) if text else None

    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    except ValueError:
        raise ForensicsInputError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    config = BenchConfig(seeds=seeds, size=args.size, world=args.world, profile=args.profile, device=args.device, dtype=args.dtype,
                         models=names(args.models), lines=names(args.lines), perturb=not args.no_perturb)
    bench = run_bench(args.zoo, args.out, config)
    print(text_tables(bench))
    print(f"written to {args.out}")
    return 0


def cmd_lines(args) -> int:
    """Print each evidence line: question, needs, votes, side of the control, method and config fields."""
    from forensics.config import describe_config, line_config
    from forensics.profiles import PROFILES
    from forensics.registry import discover_lines

    registry, broken = discover_lines()
    unknown = sorted(set(args.names) - set(registry))
    if unknown:
        raise ForensicsInputError(f"unknown evidence line(s) {', '.join(unknown)}; known: {', '.join(registry)}")
    for name, spec in registry.items():
        if args.names and name not in args.names:
            continue
        print(f"{name}  ({spec.module})")
        print(f"  question: {spec.question}")
        print(f"  needs:    {', '.join(spec.needs)}")
        print(f"  votes:    {', '.join(spec.votes) or 'none (descriptive)'}; control side: {spec.side}")
        print(f"  method:   {spec.method}")
        if spec.config is not None:
            shown = f"profile {args.profile}" if args.profile else "defaults"
            print(f"  config ({spec.config.__name__}, {shown}; set with --set {name}.FIELD=VALUE):")
            values = line_config(spec, PROFILES[args.profile], seed=0) if args.profile else None
            for path, kind, default, doc in describe_config(spec.config, values=values):
                print(f"    {path:<28} {kind:<18} {default:<14} {doc}")
        print()
    for module, error in broken.items():
        print(f"not loaded: {module}: {error}")
    return 0


COMMANDS = {"zoo": cmd_zoo_build, "data": cmd_data_import, "check": cmd_check, "memprobe": cmd_memprobe, "audit": cmd_audit,
            "lines": cmd_lines, "demo": cmd_demo, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0, 2 for bad input, 130 when interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ForensicsInputError, LineRegistrationError) as err:  # bad input, or a plug-in declared wrongly
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
