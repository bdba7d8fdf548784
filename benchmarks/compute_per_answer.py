"""Less compute per answer: what the adaptive seed rule, pruning and a measured precision save.

    python benchmarks/compute_per_answer.py [--json] [--quick]

- Seeds: the `dropout_gap` study (its `cpu` preset; `smoke` with --quick) with the fixed 3 seeds
  and with ``seeds=until(halfwidth=H, min=7, max=10)``: seeds and trials each spent, and the
  widest simultaneous interval the report printed on the study's metric each ended with.
- Pruning: a small TPE search of the learning rate on cifar10-mini, without a pruner and with
  ``pruner="median"``, in the same run: epochs trained and the best value each found.
- Precision: what ``precision=auto`` picks for each built-in model on this machine, with the
  timed fp32 and bf16 steps behind the choice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEARCH = """
from ablate import Study, sampler

study = Study(
    name="search", question="Which learning rate?",
    baseline=dict(dataset="cifar10-mini", model="resnet18", width=4, epochs=EPOCHS,
                  train_size=TRAIN, test_size=500, train_eval_size=200, batch_size=64,
                  val_size=500, keep_weights="none"),  # the search tunes on validation accuracy
    design=sampler("tpe", trials=TRIALS), seeds=1, PRUNER
)


def configure(trial):
    return {"lr": trial.suggest_float("lr", 1e-4, 1.0, log=True)}
"""


def run_study(path: Path, results: Path, preset: str | None = None) -> None:
    from typer.testing import CliRunner

    from ablate.cli.app import app

    arguments = ["run", str(path), "--results-dir", str(results), "--quiet"]
    arguments += ["--preset", preset] if preset else []
    outcome = CliRunner().invoke(app, arguments)
    if outcome.exit_code != 0:
        raise SystemExit(f"benchmark study {path.name} failed:\n{outcome.output}")


def trials_of(folder: Path) -> list[dict[str, Any]]:
    import pyarrow.dataset as ds

    return ds.dataset(folder / "trials", format="parquet").to_table().to_pylist()


def seeds(work: Path, preset: str, halfwidth: float) -> dict[str, Any]:
    from ablate.analysis import analyse_folder
    from ablate.analysis.notes import widest_half_width

    source = (REPO / "studies" / "dropout_gap.py").read_text()
    figures: dict[str, Any] = {"preset": preset, "halfwidth_points": halfwidth}
    for name, spec in (
        ("fixed", "seeds=3"),
        ("adaptive", f"seeds=until(halfwidth={halfwidth}, min=7, max=10)"),
    ):
        path = work / f"dropout_gap_{name}.py"
        path.write_text(
            source.replace(
                "from ablate import Preset, Study, choice", "from ablate import Preset, Study, choice, until"
            ).replace("seeds=3,", f"{spec},")
        )
        run_study(path, work / name, preset)
        report, _ = analyse_folder(work / name / "dropout_gap", "test_acc")
        widest = widest_half_width(report.findings, "test_acc")  # the printed intervals
        figures[name] = {
            "seeds": max(len(c.trials) for c in report.cells),
            "trials": len(trials_of(work / name / "dropout_gap")),
            "widest_halfwidth_points": widest * 100 if widest is not None else None,
        }
    return figures


def pruning(work: Path, trials: int, epochs: int, train: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"sampler": "tpe", "trials": trials, "epochs_per_trial": epochs}
    for name, pruner in (("no_pruner", ""), ("median", 'pruner="median",')):
        path = work / f"search_{name}.py"
        path.write_text(
            SEARCH.replace("EPOCHS", str(epochs))
            .replace("TRAIN", str(train))
            .replace("TRIALS", str(trials))
            .replace("PRUNER", pruner)
        )
        run_study(path, work / name)
        rows = trials_of(work / name / "search")
        finished = [r for r in rows if r["state"] == "complete"]
        figures[name] = {
            "epochs_trained": sum(r["epochs_done"] or 0 for r in rows),
            "pruned": sum(r["state"] == "pruned" for r in rows),
            "best_test_acc": max((r["test_acc"] for r in finished), default=None),
        }
    figures["epochs_saved"] = figures["no_pruner"]["epochs_trained"] - figures["median"]["epochs_trained"]
    return figures


def precision_choices(batch: int) -> list[dict[str, Any]]:
    import torch

    from ablate.components.discovery import load_plugins
    from ablate.components.setup import resolve
    from ablate.train.precision import choose_precision, cpu_has_native_bf16, measure

    registry = load_plugins().registry
    widths = {"resnet18": 16, "resnet9": 16, "resnet_c3": 16}
    choices = []
    for component in registry.of_kind("model"):
        if component.name == "timm":  # an optional extra that builds other libraries' models
            continue
        params = {
            "model": component.name,
            **({"width": widths[component.name]} if component.name in widths else {}),
        }
        setup = resolve(params, registry)
        model = setup.model.build(num_classes=10, image_shape=(3, 32, 32))
        # Measured afresh (not the choice this machine kept from an earlier run).
        chosen = (
            measure(model, torch.device("cpu"), batch, (3, 32, 32), 10)
            if cpu_has_native_bf16()
            else choose_precision("auto", torch.device("cpu"), model, batch, (3, 32, 32), 10, component.name)
        )
        choices.append(
            {
                "model": component.name,
                "width": widths.get(component.name),
                "precision": chosen.precision,
                "step_ms": chosen.step_ms,
            }
        )
    return choices


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (the smoke preset, a short search): a functional check",
    )
    parser.add_argument("--halfwidth", type=float, default=5.0, help="the adaptive rule's target, in points")
    parser.add_argument(
        "--parts", default="seeds,pruning,precision", help="which figures to take, comma-separated"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    sys.path.insert(0, str(REPO))
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if "seeds" in parts:
            figures["seeds"] = seeds(work, "smoke" if args.quick else "cpu", args.halfwidth)
        if "pruning" in parts:
            figures["pruning"] = pruning(
                work, 6 if args.quick else 20, 3 if args.quick else 8, 256 if args.quick else 1500
            )
        if "precision" in parts:
            figures["precision"] = precision_choices(16 if args.quick else 128)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    if "seeds" in figures:
        print_seeds(figures["seeds"])
    if "pruning" in figures:
        print_pruning(figures["pruning"])
    if "precision" in figures:
        print_precision(figures["precision"])
    return 0


def print_seeds(s: dict[str, Any]) -> None:
    print(f"seeds, dropout_gap {s['preset']} preset (target +-{s['halfwidth_points']:g} points):")
    for name in ("fixed", "adaptive"):
        entry = s[name]
        widest = (
            "n/a"
            if entry["widest_halfwidth_points"] is None
            else f"+-{entry['widest_halfwidth_points']:.2g} points"
        )
        print(f"  {name}: {entry['seeds']} seeds, {entry['trials']} trials, widest 95% interval {widest}")


def print_pruning(p: dict[str, Any]) -> None:
    print(f"pruning, a TPE search of {p['trials']} trials x {p['epochs_per_trial']} epochs:")
    for name in ("no_pruner", "median"):
        entry = p[name]
        print(
            f"  {name}: {entry['epochs_trained']} epochs trained, {entry['pruned']} pruned, best "
            f"test accuracy {entry['best_test_acc']:.1%}"
        )


def print_precision(choices: list[dict[str, Any]]) -> None:
    print("precision=auto per built-in model (fp32 / bf16 ms per step):")
    for entry in choices:
        timing = (
            "not measured"
            if entry["step_ms"] is None
            else f"{entry['step_ms']['fp32']:.1f} / {entry['step_ms']['bf16']:.1f}"
        )
        print(f"  {entry['model']}: {entry['precision']} ({timing})")


if __name__ == "__main__":
    sys.exit(main())
