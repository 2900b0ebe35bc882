"""``sscl demo`` and ``sscl data synth|convert|info|validate``: the corpus tools."""

from __future__ import annotations

import argparse
from dataclasses import replace

from sscl.data.corpus import open_corpus, validate
from sscl.data.demo import demo_corpus
from sscl.data.formats import convert
from sscl.data.synthetic import SynthConfig, synthesize


def cmd_demo(args: argparse.Namespace) -> int:
    print(open_corpus(demo_corpus(progress=True)).summary())
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    cfg = SynthConfig()
    if args.sequences is not None:
        cfg = replace(cfg, num_sequences=args.sequences)
    synthesize(args.dest, cfg, seed=args.seed, overwrite=args.overwrite, progress=True)
    print(open_corpus(args.dest).summary())
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    skip = {"cmd", "data_cmd", "func", "format", "src", "dest", "overwrite", "append", "quiet",
            "nonfinite"}
    options = {k: v for k, v in vars(args).items() if k not in skip}
    report = convert(args.format, args.src, args.dest, overwrite=args.overwrite,
                     append=args.append, progress=not args.quiet, nonfinite=args.nonfinite,
                     **options)
    print(report)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    c = open_corpus(args.corpus, memory_budget=0)
    print(c.summary())
    if args.skipped:
        for s in c.skipped:
            print(f"skipped  {s['source_file']}: {s['reason']}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    problems = validate(args.corpus, progress=True)
    for p in problems:
        print(f"problem: {p}")
    if not problems:
        c = open_corpus(args.corpus, memory_budget=0)
        if not c.has_checksums:
            print("note: no checksums recorded (written by an older sscl): damage to chunk "
                  "contents cannot be found; convert again to add them")
        if c.attrs.get("nonfinite_masked"):
            print(f"note: {c.attrs['nonfinite_masked']} joint(s) with NaN/inf were masked as "
                  "missing when converting")
    print(f"{args.corpus}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0
