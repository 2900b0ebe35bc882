"""The ``sscl`` console script.

Subcommands::

    sscl demo                         synthesize the demo corpus (once) and print its summary
    sscl data synth DEST              procedural NTU-25 corpus with exact frame labels
    sscl data convert FORMAT SRC DEST raw dataset -> corpus (FORMAT --help for its options)
    sscl data info CORPUS             sequences, frames, classes, layout, fps, splits, skipped
    sscl data validate CORPUS         full content check; exit 1 on problems

User mistakes print one ``error:`` line naming the file/field and exit with status 2.
SIGTERM ends a command like Ctrl-C does (exit 143): a corpus being written is removed, the
previous one at that name stays.
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from pathlib import Path

from sscl.errors import SsclError, SsclWarning


def _demo_path() -> Path:
    from sscl.data.corpus import cache_dir

    return cache_dir() / "demo" / "synthetic.zarr"


def cmd_demo(args: argparse.Namespace) -> int:
    from sscl.data.corpus import open_corpus
    from sscl.data.synthetic import SynthConfig, synthesize

    dest = _demo_path()
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        print(f"synthesizing the demo corpus into {dest} (once; cached under $SSCL_CACHE)")
        synthesize(dest, SynthConfig(), seed=0, progress=True)
    print(open_corpus(dest).summary())
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from sscl.data.corpus import open_corpus
    from sscl.data.synthetic import SynthConfig, synthesize

    cfg = SynthConfig()
    if args.sequences is not None:
        cfg = replace(cfg, num_sequences=args.sequences)
    synthesize(args.dest, cfg, seed=args.seed, overwrite=args.overwrite, progress=True)
    print(open_corpus(args.dest).summary())
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from sscl.data.formats import convert

    skip = {"cmd", "data_cmd", "func", "format", "src", "dest", "overwrite", "append", "quiet",
            "nonfinite"}
    options = {k: v for k, v in vars(args).items() if k not in skip}
    report = convert(args.format, args.src, args.dest, overwrite=args.overwrite,
                     append=args.append, progress=not args.quiet, nonfinite=args.nonfinite,
                     **options)
    print(report)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from sscl.data.corpus import open_corpus

    c = open_corpus(args.corpus, memory_budget=0)
    print(c.summary())
    if args.skipped:
        for s in c.skipped:
            print(f"skipped  {s['source_file']}: {s['reason']}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from sscl.data.corpus import validate

    problems = validate(args.corpus, progress=True)
    for p in problems:
        print(f"problem: {p}")
    if not problems:
        from sscl.data.corpus import open_corpus

        c = open_corpus(args.corpus, memory_budget=0)
        if not c.has_checksums:
            print("note: no checksums recorded (written by an older sscl): damage to chunk "
                  "contents cannot be found; convert again to add them")
        if c.attrs.get("nonfinite_masked"):
            print(f"note: {c.attrs['nonfinite_masked']} joint(s) with NaN/inf were masked as "
                  "missing when converting")
    print(f"{args.corpus}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    from sscl.data.formats import FORMATS, format_module

    p = argparse.ArgumentParser(prog="sscl", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    demo = sub.add_parser("demo", help="synthesize the demo corpus (once) and print its summary")
    demo.set_defaults(func=cmd_demo)

    data = sub.add_parser("data", help="corpus tools: synth, convert, info, validate")
    dsub = data.add_subparsers(dest="data_cmd", required=True)

    s = dsub.add_parser("synth", help="write the procedural NTU-25 corpus")
    s.add_argument("dest", help="corpus directory to create (e.g. synth.zarr)")
    s.add_argument("--sequences", type=int, default=None, help="number of sequences")
    s.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing corpus")
    s.set_defaults(func=cmd_synth)

    c = dsub.add_parser("convert", help="convert a raw dataset into a corpus")
    csub = c.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name in FORMATS:
        mod = format_module(name)
        doc = (mod.__doc__ or name).strip().split("\n")[0]
        fp = csub.add_parser(name, help=doc, description=mod.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        fp.add_argument("src", help="raw data (folder or file)")
        fp.add_argument("dest", help="corpus directory to create (e.g. kard.zarr)")
        fp.add_argument("--overwrite", action="store_true", help="replace an existing corpus")
        fp.add_argument("--append", action="store_true", help="add to an existing corpus")
        fp.add_argument("--quiet", action="store_true", help="no progress bars")
        fp.add_argument("--nonfinite", choices=("refuse", "mask"), default="refuse",
                        help="NaN/inf at a valid joint: refuse (default; the error counts them) "
                        "or mask (store the joint as missing; counted in the report)")
        mod.add_arguments(fp)
        fp.set_defaults(func=cmd_convert)

    i = dsub.add_parser("info", help="summarise a corpus")
    i.add_argument("corpus", help="corpus path or fsspec URL")
    i.add_argument("--skipped", action="store_true", help="list every skipped source item")
    i.set_defaults(func=cmd_info)

    v = dsub.add_parser("validate", help="check a corpus's content; exit 1 on problems")
    v.add_argument("corpus", help="corpus path or fsspec URL")
    v.set_defaults(func=cmd_validate)
    return p


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so context managers clean up (a corpus being written
    is removed)."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _format_warning(message, category, filename, lineno, line=None) -> str:
    if issubclass(category, SsclWarning):  # a note for the user, not a code location
        return f"warning: {message}\n"
    return _default_formatwarning(message, category, filename, lineno, line)


_default_formatwarning = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    formatted = warnings.formatwarning
    warnings.formatwarning = _format_warning
    try:
        return args.func(args)
    except SsclError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("error: terminated (SIGTERM); nothing was left half-written", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
        warnings.formatwarning = formatted


if __name__ == "__main__":
    sys.exit(main())
