"""``sscl compare RUN_DIR...``: the runs of an ablation, paired by seed.

Each run directory gives its resolved config (``config.yaml``) and a figure: a metric of its
evaluation report (``eval/<corpus>-test/report.json`` by default, e.g. ``average_mAP``) or
``knn``, the kNN top-1 its pretraining ended with. Runs whose configs are equal but for
``run.seed`` and the settings that change no result (run names, threads, checkpoint cadence,
workers, timelines, the kNN monitor) form an arm. A run that finetunes another run's encoder
(``finetune.encoder=PATH``) is described by how that encoder was pretrained (its
``encoder.json``: ``encoder.pretrain.*``, ``encoder.model.*``, ...), so finetuning runs of
different pretraining arms compare as such.

The first arm on the command line is the control. For every other arm the table gives, per seed,
the control's figure, the arm's and their difference, then the mean +- sd (n - 1) of the
differences and how many are positive: a claim that an arm "helps" needs them positive in every
seed. An arm pairs on the seeds it shares with the control; its runs without a partner (an
unfinished ablation) are listed and counted, never silently left out. Refused, with the reason:
arms that differ in a key other than the compared ones (named with ``--key``; without it, arms
may differ in exactly one key), an arm sharing no seed with the control, two runs of one arm
with the same seed, a run without the figure.

An arm's label names the compared keys whose values tell it apart; a section an arm lacks
altogether (``encoder`` of a from-scratch run) shows as ``encoder=-``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

from sscl import presets
from sscl.errors import ConfigError
from sscl.rundir import RunDir

# Keys that change no result: they may differ inside an arm.
NEUTRAL = ("run.name", "run.stage", "run.seed", "run.threads", "run.cpu", "run.precision",
           "run.checkpoint_every_s", "run.checkpoint_every_steps", "run.keep_last",
           "run.log_every", "run.max_nonfinite", "run.dist_timeout_s", "data.engine",
           "data.loader.num_workers", "data.loader.prefetch", "data.loader.pin_memory",
           "data.loader.memory_budget", "data.loader.map_joints", "data.loader.dali_group",
           "finetune.num_workers", "probe", "evaluate.timelines", "pretrain.diagnostics_every",
           "finetune.encoder", "encoder.seed")


@dataclass
class Run:
    path: Path
    seed: int
    keys: dict  # flattened config (plus encoder.*), neutral keys removed
    value: float


def _flat(tree: dict, prefix: str = "") -> dict:
    """Flattened config keys; lists as JSON text, so that values compare and hash alike."""
    return {k: json.dumps(v) if isinstance(v, list) else v
            for k, v in presets.flatten(tree, prefix).items()}


def _neutral(key: str) -> bool:
    return any(key == n or key.startswith(n + ".") for n in NEUTRAL)


def encoder_provenance(run: RunDir, cfg: dict) -> dict:
    """``encoder.*`` keys: how the encoder a finetuning run started from was pretrained, when it
    is another run's (``finetune.encoder=PATH``; ``auto``, the run's own pretraining, is
    described by the run's own config)."""
    ft = cfg.get("finetune", {})
    if ft.get("protocol") == "scratch" or ft.get("encoder") in (None, "auto"):
        return {}
    path = Path(ft["encoder"])
    meta_file = path.with_suffix(".json")
    if not meta_file.is_file():
        raise ConfigError(f"{run.root}: its encoder {path} has no {meta_file.name}; compare "
                          f"needs it to tell how the encoder was pretrained")
    meta = json.loads(meta_file.read_text())
    keep = {k: meta[k] for k in ("pretrain", "optim", "model", "corpus", "split", "seed")
            if k in meta}
    return _flat(keep, "encoder.")


def figure(run: RunDir, metric: str, report: str | None) -> float:
    """The run's ``metric``: ``knn`` from pretraining, else from its evaluation report."""
    if metric == "knn":
        done = run.pretrain.done()
        if done is None or done.get("knn_last") is None:
            raise ConfigError(f"{run.root}: no kNN top-1 (pretrain/done.json lacks knn_last)")
        return float(done["knn_last"])
    reports = run.reports()
    if report is not None:
        reports = [r for r in reports if r.parent.name == report]
    elif len(reports) > 1:
        reports = [r for r in reports if r.parent.name.endswith("-test")] or reports
    if len(reports) != 1:
        found = ", ".join(r.parent.name for r in run.reports()) or "none"
        raise ConfigError(f"{run.root}: expected one evaluation report, found {found}; name one "
                          f"with --report")
    metrics = json.loads(reports[0].read_text())["metrics"]
    if metric not in metrics or not isinstance(metrics[metric], (int, float)):
        numbers = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
        raise ConfigError(f"{reports[0]}: no metric {metric!r}; numbers there: "
                          f"{', '.join(numbers)}")
    return float(metrics[metric])


def load_run(path: str, metric: str, report: str | None) -> Run:
    run = RunDir(Path(path))
    if not run.config_file.is_file():
        raise ConfigError(f"{path}: no config.yaml (not a run directory)")
    cfg = presets.to_dict(presets.from_dict(presets.load_preset(str(run.config_file))))
    keys = {**_flat(cfg), **encoder_provenance(run, cfg)}
    keys = {k: v for k, v in keys.items() if not _neutral(k)}
    return Run(run.root, int(cfg["run"]["seed"]), keys, figure(run, metric, report))


def group_arms(runs: list[Run], compared: list[str]) -> tuple[list[list[Run]], list[str]]:
    """Runs grouped into arms (first-seen order) and the keys the arms differ in.

    Raises:
        ConfigError: a difference outside the compared keys, missing or doubled seeds.
    """
    arms: list[list[Run]] = []
    for r in runs:
        for arm in arms:
            if arm[0].keys == r.keys:
                arm.append(r)
                break
        else:
            arms.append([r])
    if len(arms) < 2:
        raise ConfigError("all runs have the same config: nothing to compare (give the runs of "
                          "at least two arms)")
    every_key = set().union(*(arm[0].keys for arm in arms))
    differ = sorted(k for k in every_key
                    if len({json.dumps(arm[0].keys.get(k)) for arm in arms}) > 1)
    if compared:
        other = [k for k in differ if not any(k == c or k.startswith(c + ".") for c in compared)]
        if other:
            raise ConfigError(f"the runs differ in {', '.join(other)} besides the compared "
                              f"{', '.join(compared)}; compare runs that differ in those keys "
                              f"only, or add --key for each")
    elif len(differ) > 1:
        raise ConfigError(f"the arms differ in {len(differ)} keys ({', '.join(differ)}); name "
                          f"the compared ones with --key (e.g. --key {differ[0]})")
    control_seeds = {r.seed for r in arms[0]}
    for arm in arms:
        s = sorted(r.seed for r in arm)
        if len(set(s)) != len(s):
            raise ConfigError(f"two runs of one arm have the same seed: "
                              f"{', '.join(str(r.path) for r in arm)}")
        if not control_seeds & set(s):
            raise ConfigError(f"arm {label(arm, differ, arms)} has seeds {s}, the control "
                              f"{sorted(control_seeds)}: no seed to pair on")
    return arms, differ


def label(arm: list[Run], differ: list[str], arms: list[list[Run]]) -> str:
    """The compared keys whose values tell ``arm`` apart; sections it lacks as ``section=-``."""
    parts, absent = [], []
    for k in differ:
        if k not in arm[0].keys:
            section = k.split(".")[0]
            if section not in absent:
                absent.append(section)
            continue
        values = {json.dumps(a[0].keys[k]) for a in arms if k in a[0].keys}
        if len(values) > 1:
            parts.append(f"{k}={arm[0].keys[k]}")
    return ", ".join(parts + [f"{s}=-" for s in absent]) or "control"


def compare(paths: list[str], metric: str = "average_mAP", keys: list[str] | None = None,
            report: str | None = None) -> dict:
    """The paired comparison of ``paths`` (see the module docstring) as a JSON-able document."""
    arms, differ = group_arms([load_run(p, metric, report) for p in paths], keys or [])
    control = {r.seed: r for r in arms[0]}
    doc = {"metric": metric, "compared_keys": differ,
           "seeds": sorted({r.seed for arm in arms for r in arm}),
           "arms": [{"label": label(arm, differ, arms),
                     "runs": {str(r.seed): str(r.path) for r in arm},
                     "values": {str(r.seed): r.value for r in arm}} for arm in arms],
           "differences": [], "unpaired": []}
    for arm in arms[1:]:
        paired = [r for r in sorted(arm, key=lambda r: r.seed) if r.seed in control]
        seeds = {r.seed for r in paired}
        doc["unpaired"] += [str(r.path) for r in arm if r.seed not in control]
        doc["unpaired"] += [str(r.path) for r in arms[0]
                            if r.seed not in seeds and str(r.path) not in doc["unpaired"]]
        diffs = [r.value - control[r.seed].value for r in paired]
        n = len(diffs)
        mean = sum(diffs) / n
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else float("nan")
        doc["differences"].append({"arm": label(arm, differ, arms), "seeds": sorted(seeds),
                                   "per_seed": diffs, "mean": mean, "sd": sd,
                                   "positive": sum(d > 0 for d in diffs), "n": n})
    return doc


def table(doc: dict) -> str:
    arms, diffs = doc["arms"], doc["differences"]
    head = ["seed", arms[0]["label"]]
    for arm in arms[1:]:
        head += [arm["label"], "difference"]
    lines = [f"{doc['metric']}, paired by seed; control: {arms[0]['label']}",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for seed in doc["seeds"]:
        c = arms[0]["values"].get(str(seed))
        row = [str(seed), "-" if c is None else f"{c:.4f}"]
        for arm in arms[1:]:
            v = arm["values"].get(str(seed))
            row += ["-" if v is None else f"{v:.4f}",
                    "-" if v is None or c is None else f"{v - c:+.4f}"]
        lines.append("| " + " | ".join(row) + " |")
    summary = ["mean +- sd", ""]
    for d in diffs:
        summary += ["", f"{d['mean']:+.4f} +- {d['sd']:.4f} ({d['positive']}/{d['n']} positive)"]
    lines.append("| " + " | ".join(summary) + " |")
    if doc["unpaired"]:
        lines.append(f"unpaired, left out of the differences ({len(doc['unpaired'])}): "
                     + ", ".join(doc["unpaired"]))
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    doc = compare(args.runs, metric=args.metric, keys=args.key, report=args.report)
    print(json.dumps(doc, indent=1) if args.json else table(doc))
    return 0
