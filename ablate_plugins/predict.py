"""``ablate predict TARGET IMAGE...``: classify photos with a trial's kept weights.

TARGET is a weights file (``results/STUDY/weights/trial-00007-final.safetensors``) or a study
folder; for a folder, ``--trial N`` picks a trial, by default the best one by the study's metric.
Each image is converted to RGB, resized to the training images' size and normalised with the
training normalisation, as in training; the top classes are printed with their probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ablate import hookimpl

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def pick_weights(target: Path, trial: int | None) -> Any:
    """The kept weights TARGET names: a file, or a study folder's trial (default: the best by
    the study's metric, on the validation split when the trials have one)."""
    from ablate.store import weights

    if target.is_file() or target.suffix == ".safetensors":
        return weights.read(target)
    if not target.is_dir():
        raise weights.WeightsError(f"{target}: no such weights file or study folder")
    found = [k for k in weights.in_study(target, "final") or weights.in_study(target, "best")]
    if not found:
        raise weights.WeightsError(
            f"{target} has no kept weights (weights/*.safetensors): run the "
            "study with keep_weights='final' (the default) first"
        )
    if trial is not None:
        chosen = [k for k in found if k.sidecar["provenance"]["trial"] == trial]
        if not chosen:
            have = sorted(k.sidecar["provenance"]["trial"] for k in found)
            raise weights.WeightsError(
                f"{target}: trial {trial} has no kept weights; trials with weights: {have}"
            )
        return chosen[0]
    description = _description(target)
    metric = description.get("metric", "test_acc")
    sign = 1 if description.get("direction", "maximize") == "maximize" else -1

    def score(kept: Any) -> float:
        metrics = kept.sidecar.get("metrics", {})
        value = (
            metrics.get("val_acc")
            if metric == "test_acc" and metrics.get("val_acc") is not None
            else metrics.get(metric)
        )
        return sign * float(value) if value is not None else float("-inf")

    return max(found, key=score)


def _description(study_dir: Path) -> dict[str, Any]:
    try:
        described: dict[str, Any] = json.loads((study_dir / "study.json").read_text(encoding="utf-8"))
        return described
    except (OSError, ValueError):
        return {}


def image_paths(items: list[Path]) -> list[Path]:
    """The images named, with a folder standing for every image file under it."""
    paths: list[Path] = []
    for item in items:
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(item)
    return paths


def classify(model: Any, kept: Any, path: Path, top: int) -> list[tuple[str, float]]:
    """The ``top`` classes of one image with their probabilities."""
    import torch

    from ablate.data import load_image

    height, width = kept.sidecar["image_size"]
    pixels = torch.from_numpy(load_image(path, (width, height))).unsqueeze(0).float().div_(255)
    mean = torch.tensor(kept.sidecar["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(kept.sidecar["std"]).view(1, 3, 1, 1)
    with torch.inference_mode():
        logits = model(((pixels - mean) / std).contiguous(memory_format=torch.channels_last))
    probabilities = logits.float().softmax(1)[0]
    values, indices = probabilities.topk(min(top, len(kept.classes)))
    return [(kept.classes[i], float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)]


def predict(
    target: Annotated[Path, typer.Argument(help="a .safetensors weights file or a study folder")],
    images: Annotated[list[Path], typer.Argument(help="image files or folders of images")],
    trial: Annotated[
        int | None,
        typer.Option(help="for a study folder: the trial whose weights to use (default: the best)"),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="how many classes to show per image")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Classify images with a trial's kept weights: the top classes with probabilities."""
    from ablate.commands import err, out
    from ablate.components import get_plugins
    from ablate.data import UnreadableImage
    from ablate.store.weights import WeightsError, rebuild

    try:
        kept = pick_weights(target, trial)
        model = rebuild(kept, get_plugins().registry)
    except WeightsError as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    provenance = kept.sidecar.get("provenance", {})
    if not as_json:
        out.print(
            f"{kept.path.name}: {kept.sidecar['model']['name']}, study "
            f"{provenance.get('study')}, trial {provenance.get('trial')} "
            f"({provenance.get('cell')}, seed {provenance.get('seed')})",
            highlight=False,
        )
    results, failed = [], []
    for path in image_paths(images):
        try:
            ranked = classify(model, kept, path, top)
        except UnreadableImage as error:
            failed.append(path)
            err.print(f"[red]error:[/] {error}", highlight=False)
            continue
        results.append({"image": str(path), "top": [{"class": name, "probability": p} for name, p in ranked]})
        if not as_json:
            shown = ", ".join(f"{name} {p:.1%}" for name, p in ranked)
            out.print(f"{path}: {shown}", highlight=False)
    if as_json:
        print(
            json.dumps(
                {"weights": str(kept.path), "predictions": results, "unreadable": [str(p) for p in failed]},
                indent=2,
            )
        )
    if failed or not results:
        if not results and not failed:
            err.print("[red]error:[/] no image given: name image files or folders", highlight=False)
        raise typer.Exit(2)


@hookimpl
def register_commands(app: typer.Typer) -> None:
    app.command("predict")(predict)
