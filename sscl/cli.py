"""The ``sscl`` console script.

Subcommands::

    sscl demo                         synthesize the demo corpus (once) and print its summary
    sscl data synth DEST              procedural NTU-25 corpus with exact frame labels
    sscl data convert FORMAT SRC DEST raw dataset -> corpus (FORMAT --help for its options)
    sscl data info CORPUS             sequences, frames, classes, layout, fps, splits, skipped
    sscl data validate CORPUS         full content check; exit 1 on problems
    sscl evaluate RUN_DIR|CHECKPOINT  mAP, frame metrics and timelines into RUN_DIR/eval/
    sscl predict CHECKPOINT INPUT     segments of a new recording (raw with --format F, or a
                                      corpus) as JSON, optionally a timeline PNG
    sscl compare RUN_DIR...           runs of an ablation paired by seed: differences, mean +- sd

User mistakes print one ``error:`` line naming the file/field and exit with status 2.
SIGTERM ends a command like Ctrl-C does (exit 143): a corpus being written is removed, the
previous one at that name stays.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

# Idle OpenMP threads sleep rather than spin, unless the user chose (why: sscl/train.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sscl.data.formats import FORMATS, format_module
from sscl.errors import SsclError, SsclWarning, Terminated, sigterm_raises

# The module and function of each command. A command's module is imported when the command
# runs, not here: the training and evaluation modules load torch (seconds), and `sscl --help`
# or `sscl data info` need none of it.
COMMANDS = {
    "demo": "sscl.commands.data:cmd_demo",
    "synth": "sscl.commands.data:cmd_synth",
    "convert": "sscl.commands.data:cmd_convert",
    "info": "sscl.commands.data:cmd_info",
    "validate": "sscl.commands.data:cmd_validate",
    "evaluate": "sscl.commands.evaluate:cmd_evaluate",
    "predict": "sscl.commands.predict:cmd_predict",
    "compare": "sscl.commands.compare:cmd_compare",
}


def _timelines(text: str) -> int:
    """``--timelines``: a count >= 0, or ``all`` (-1)."""
    if text == "all":
        return -1
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a count >= 0 or 'all', got {text!r}")
    return int(text)


class _Recorder:
    """Forwards a converter's ``add_argument`` calls to a parser group and records each
    option's default (so ``sscl predict`` tells the converter's options from its own)."""

    def __init__(self, target) -> None:
        self.target = target
        self.defaults: dict = {}

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = self.target.add_argument(*args, **kwargs)
        self.defaults[action.dest] = action.default
        return action


def _predict_format(argv: list[str] | None) -> str | None:
    """The ``--format`` of a ``predict`` command line (its converter's options depend on it)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "predict":
        return None
    for i, a in enumerate(argv):
        if a == "--":
            break
        if a == "--format" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--format="):
            return a.split("=", 1)[1]
    return None


def add_predict_parser(sub, fmt: str | None) -> argparse.ArgumentParser:
    """``sscl predict``, with the options of converter ``fmt`` when one is named."""
    pr = sub.add_parser(
        "predict", help="segments of a new recording with a trained localizer",
        description="Apply a trained localizer to a new recording: raw data in any supported "
        "format (--format F and that converter's options; `sscl predict --format F --help` "
        "lists them), or a corpus (default). The input must have the localizer's layout, "
        "persons and frame rate. Writes JSON segments (class, start/end in frames and "
        "seconds, score) and, with --timeline, a PNG per sequence.")
    pr.add_argument("checkpoint", metavar="CHECKPOINT",
                    help="run directory, its finetune/ folder or a localizer.safetensors")
    pr.add_argument("input", metavar="INPUT", help="raw data (with --format) or a corpus path")
    pr.add_argument("--format", choices=FORMATS, default=None,
                    help="converter of a raw INPUT (default: INPUT is a corpus)")
    pr.add_argument("--sequence", action="append", default=None, metavar="ID|INDEX",
                    help="score only this sequence (repeatable; default: all)")
    pr.add_argument("--out", default="predictions.json",
                    help="JSON to write (default %(default)s; '-': standard output)")
    pr.add_argument("--timeline", default=None, metavar="PNG",
                    help="timeline PNG (several sequences: PNG's stem + _<sequence id>)")
    pr.add_argument("--decoder", choices=("reference", "argmax"), default=None,
                    help="default: the decoder the run's evaluation chose, else reference")
    pr.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    defaults: dict = {}
    if fmt in FORMATS:
        mod = format_module(fmt)
        rec = _Recorder(pr.add_argument_group(f"options of the {fmt} converter"))
        mod.add_arguments(rec)
        defaults = rec.defaults
    pr.set_defaults(func="predict", converter_defaults=defaults)
    return pr


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``argv`` (default ``sys.argv[1:]``) selects the converter whose
    options ``sscl predict --format F`` takes."""
    p = argparse.ArgumentParser(prog="sscl", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    demo = sub.add_parser("demo", help="synthesize the demo corpus (once) and print its summary")
    demo.set_defaults(func="demo")

    data = sub.add_parser("data", help="corpus tools: synth, convert, info, validate")
    dsub = data.add_subparsers(dest="data_cmd", required=True)

    s = dsub.add_parser("synth", help="write the procedural NTU-25 corpus")
    s.add_argument("dest", help="corpus directory to create (e.g. synth.zarr)")
    s.add_argument("--sequences", type=int, default=None, help="number of sequences")
    s.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing corpus")
    s.set_defaults(func="synth")

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
        fp.set_defaults(func="convert")

    i = dsub.add_parser("info", help="summarise a corpus")
    i.add_argument("corpus", help="corpus path or fsspec URL")
    i.add_argument("--skipped", action="store_true", help="list every skipped source item")
    i.set_defaults(func="info")

    v = dsub.add_parser("validate", help="check a corpus's content; exit 1 on problems")
    v.add_argument("corpus", help="corpus path or fsspec URL")
    v.set_defaults(func="validate")

    ev = sub.add_parser("evaluate", help="score a trained localizer: mAP, frame metrics, "
                        "timelines into RUN_DIR/eval/<corpus>-<split>/")
    ev.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT",
                    help="run directory, its finetune/ folder or a localizer.safetensors "
                    "(reports go to the run directory's eval/, or beside a lone file)")
    ev.add_argument("--corpus", default=None,
                    help="corpus path or 'demo' (default: the finetuning corpus)")
    ev.add_argument("--split", default=None,
                    help="split tag (default: the finetuning test sequences; 'val': the "
                    "finetuning validation sequences)")
    ev.add_argument("--decoder", choices=("auto", "reference", "reference_code", "argmax"),
                    default="auto",
                    help="auto: chosen on the finetuning validation sequences (default); "
                    "reference_code: the reference decoder with the reference code's NMS overlap "
                    "(intersection over the other segment's length)")
    ev.add_argument("--timelines", type=_timelines, default=20, metavar="N|all",
                    help="timeline PNGs to draw (default 20; 'all': every sequence)")
    ev.add_argument("--knn", action="store_true",
                    help="also the kNN top-1 of the finetuned backbone on labelled clips")
    ev.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    ev.set_defaults(func="evaluate")

    add_predict_parser(sub, _predict_format(argv))

    cp = sub.add_parser(
        "compare", help="runs of an ablation paired by seed: per-seed differences, mean +- sd",
        description="Pair the runs of an ablation by run.seed and print each arm's difference "
        "to the control (the first arm given), per seed, with mean +- sd and the sign count. "
        "Runs whose configs differ only in run.seed (and settings that change no result) form "
        "an arm; arms may differ only in the compared key(s).")
    cp.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    cp.add_argument("--metric", default="average_mAP",
                    help="a number of the evaluation report (default average_mAP), or 'knn' "
                    "(the kNN top-1 pretraining ended with)")
    cp.add_argument("--key", action="append", default=None, metavar="KEY",
                    help="a config key (or section) the arms may differ in (repeatable); "
                    "default: the one key they differ in")
    cp.add_argument("--report", default=None, metavar="NAME",
                    help="the eval/NAME report to read (default: the one ending in -test)")
    cp.add_argument("--json", action="store_true", help="print the comparison as JSON")
    cp.set_defaults(func="compare")
    return p


def _format_warning(message, category, filename, lineno, line=None) -> str:
    if issubclass(category, SsclWarning):  # a note for the user, not a code location
        return f"warning: {message}\n"
    return _default_formatwarning(message, category, filename, lineno, line)


_default_formatwarning = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    module, function = COMMANDS[args.func].split(":")
    command = getattr(importlib.import_module(module), function)
    formatted = warnings.formatwarning
    warnings.formatwarning = _format_warning
    try:
        with sigterm_raises():
            return command(args)
    except SsclError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("error: terminated (SIGTERM); nothing was left half-written", file=sys.stderr)
        return 128 + 15
    finally:
        warnings.formatwarning = formatted


if __name__ == "__main__":
    sys.exit(main())
