"""``sscl evaluate``: a trained localizer scored on a corpus split, reports into its run's
``eval/`` (``sscl.stages.evaluation``), and optionally the kNN top-1 of its backbone."""

from __future__ import annotations

import argparse

from sscl import presets
from sscl.localize.postprocess import DecoderConfig
from sscl.localize.report import map_table
from sscl.machine import default_device
from sscl.rundir import find_localizer, localizer_run
from sscl.stages.evaluation import evaluate, evaluate_knn


def cmd_evaluate(args: argparse.Namespace) -> int:
    weights = find_localizer(args.checkpoint)
    run = localizer_run(weights)
    device = default_device(args.device)
    doc = evaluate(weights, run, corpus=args.corpus, split=args.split, decoder=args.decoder,
                   timelines=args.timelines, device=device)
    m, out = doc["metrics"], doc["out_dir"]
    print(f"{doc['corpus']} {doc['split']}: {m['num_sequences']} sequences, "
          f"{m['num_ground_truth']} ground-truth segments, {m['num_detections']} detections")
    print(map_table({"sscl": doc["metrics"], **doc["baselines"]}))
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
        if run.config_file.is_file():
            cfg = presets.from_dict(presets.load_preset(str(run.config_file)))
        knn = evaluate_knn(weights, out, corpus=args.corpus, split=args.split, run_config=cfg,
                           device=device)
        print(f"kNN top-1 (k={knn['k']}) of the finetuned backbone, {knn['train_split']} clips "
              f"-> {knn['test_split']} clips: {knn['top1']:.4f} ({out / 'knn.json'})")
    return 0
