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

User mistakes print one ``error:`` line naming the file/field and exit with status 2.
SIGTERM ends a command like Ctrl-C does (exit 143): a corpus being written is removed, the
previous one at that name stays.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import warnings

from sscl.errors import ConfigError, SsclError, SsclWarning


def cmd_demo(args: argparse.Namespace) -> int:
    from sscl.builders import demo_corpus
    from sscl.data.corpus import open_corpus

    print(open_corpus(demo_corpus(progress=True)).summary())
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


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _timelines(text: str) -> int:
    """``--timelines``: a count >= 0, or ``all`` (-1)."""
    if text == "all":
        return -1
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a count >= 0 or 'all', got {text!r}")
    return int(text)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sscl.evaluation import evaluate, evaluate_knn, summary_table
    from sscl.inference import find_localizer, run_directory
    from sscl.localize.postprocess import DecoderConfig

    weights = find_localizer(args.checkpoint)
    run = run_directory(weights)
    device = _device(args.device)
    doc = evaluate(weights, run / "eval", corpus=args.corpus, split=args.split,
                   decoder=args.decoder, timelines=args.timelines, device=device)
    m, out = doc["metrics"], doc["out_dir"]
    print(f"{doc['corpus']} {doc['split']}: {m['num_sequences']} sequences, "
          f"{m['num_ground_truth']} ground-truth segments, {m['num_detections']} detections")
    print(*summary_table(doc), sep="\n")
    f1 = ", ".join(f"F1@{k} {v:.1f}" for k, v in m["f1"].items())
    print(f"frame accuracy {m['frame_accuracy']:.1f} %, edit {m['edit']:.1f}, {f1}")
    if args.decoder != "auto":
        how = f"--decoder {args.decoder}"
    elif (out / "decoder_choice.json").is_file():
        how = "chosen on the validation sequences, see decoder_choice.json"
    else:
        how = "auto without validation sequences: the reference decoder"
    print(f"decoder: {DecoderConfig(**m['decoder']).describe()} ({how})")
    total = m["num_sequences"] + m["num_unlabelled_skipped"]
    n_png = total if args.timelines < 0 else min(args.timelines, total)
    print(f"report: {out / 'report.md'} (also report.json; {n_png} timeline PNGs in "
          f"{out / 'timelines'})")
    if args.knn:
        cfg = None
        if (run / "config.yaml").is_file():
            from sscl import config as config_mod

            cfg = config_mod.from_dict(config_mod.load_preset(str(run / "config.yaml")))
        knn = evaluate_knn(weights, out, corpus=args.corpus, split=args.split, run_config=cfg,
                           device=device)
        print(f"kNN top-1 (k={knn['k']}) of the finetuned backbone, {knn['train_split']} clips "
              f"-> {knn['test_split']} clips: {knn['top1']:.4f} ({out / 'knn.json'})")
    return 0


# `sscl predict`'s own option dests; everything else on its namespace is the converter's.
_PREDICT_KEYS = {"cmd", "func", "checkpoint", "input", "format", "sequence", "out", "timeline",
                 "decoder", "device", "converter_defaults"}


def cmd_predict(args: argparse.Namespace) -> int:
    from sscl.atomic import write_bytes_atomic
    from sscl.predict import run_predict, write_timelines

    options = {k: v for k, v in vars(args).items() if k not in _PREDICT_KEYS}
    if options and args.format is None:  # unreachable from argparse; a guard for callers
        raise ConfigError(f"converter options {sorted(options)} need --format")
    doc, preds = run_predict(args.checkpoint, args.input, fmt=args.format, options=options,
                             defaults=args.converter_defaults, sequences=args.sequence,
                             decoder=args.decoder, device=_device(args.device))
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    say = sys.stderr if args.out == "-" else sys.stdout
    if args.out == "-":
        sys.stdout.write(text)
    else:
        write_bytes_atomic(args.out, text.encode())
    for seq in doc["sequences"]:
        best = max(seq["segments"], key=lambda g: g["score"], default=None)
        top = (f"; best: {best['class']} {best['start_s']:.2f}-{best['end_s']:.2f} s "
               f"(score {best['score']:.3f})" if best else "")
        print(f"{seq['sequence']}: {seq['frames']} frames ({seq['seconds']:.1f} s), "
              f"{len(seq['segments'])} segments{top}", file=say)
    for note in doc["notes"]:
        print(f"note: {note}", file=say)
    print(f"decoder: {doc['decoder']['name']} ({doc['decoder_source']})", file=say)
    if args.out != "-":
        print(f"segments: {args.out}", file=say)
    if args.timeline:
        for png in write_timelines(args.timeline, doc, preds):
            print(f"timeline: {png}", file=say)
    return 0


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
    from sscl.data.formats import FORMATS, format_module

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
    pr.set_defaults(func=cmd_predict, converter_defaults=defaults)
    return pr


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``argv`` (default ``sys.argv[1:]``) selects the converter whose
    options ``sscl predict --format F`` takes."""
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

    ev = sub.add_parser("evaluate", help="score a trained localizer: mAP, frame metrics, "
                        "timelines into RUN_DIR/eval/<corpus>-<split>/")
    ev.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT",
                    help="run directory, its finetune/ folder or a localizer.safetensors "
                    "(reports go to the run directory's eval/, or beside a lone file)")
    ev.add_argument("--corpus", default=None,
                    help="corpus path or 'demo' (default: the finetuning corpus)")
    ev.add_argument("--split", default=None,
                    help="split tag (default: the finetuning test sequences)")
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
    ev.set_defaults(func=cmd_evaluate)

    add_predict_parser(sub, _predict_format(argv))
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
    args = build_parser(argv).parse_args(argv)
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
