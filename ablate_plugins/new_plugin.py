"""``ablate new-plugin NAME --kind KIND``: the skeleton of a plugin package, ready to install.

It writes ``NAME/`` with a ``pyproject.toml`` that declares the entry point in the ``ablate``
group, one documented component of the chosen kind, and a test that runs ablate's conformance
kit (:mod:`ablate.testing`) on it. ``pip install -e NAME`` installs it and ``pytest NAME`` passes
as generated; from there the author replaces the example's body with their own.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from typing import Annotated

import typer

from ablate import hookimpl
from ablate.components import KINDS

PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "An ablate plugin: the {kind} {component!r}"
requires-python = ">=3.10"
dependencies = ["ablate", "torch"]

[project.optional-dependencies]
test = ["pytest>=8"]

# ablate finds plugins through this entry-point group; the value is the module with the hooks.
[project.entry-points.ablate]
{component} = "{module}"

[tool.setuptools]
packages = ["{module}"]
"""

README = """# {dist}

An ablate plugin that registers the {kind} `{component}`.

    pip install -e .            # then `ablate plugins` lists {dist}:{component}
    pip install -e '.[test]' && pytest

In a study: {usage}.
"""

# One component per kind: short, correct, and passing the kit as generated.
COMPONENTS = {
    "model": '''import torch
from torch import nn

import ablate


def {component}(*, num_classes: int, width: int = 16, dropout: float = 0.0) -> nn.Module:
    """Three strided 3x3 conv + BatchNorm + ReLU layers, global average pool, dropout, linear.

    ``num_classes`` is context ablate passes in; ``width`` and ``dropout`` are parameters a
    study may set (keyword-only, with defaults; their types come from the defaults)."""
    layers: list[nn.Module] = []
    channels = 3
    for out in (width, 2 * width, 4 * width):
        layers += [nn.Conv2d(channels, out, 3, 2, 1, bias=False), nn.BatchNorm2d(out),
                   nn.ReLU(inplace=True)]
        channels = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(channels, num_classes))


@ablate.hookimpl
def register_models(register: ablate.Registrar) -> None:
    register("{component}", {component}, "three strided conv layers, global pool, linear",
             params={{"width": ablate.param("channels of the first layer (doubles per layer)", ge=1),
                     "dropout": ablate.param("dropout before the classifier", ge=0, lt=1)}})
''',
    "augmentation": '''import torch

import ablate


class RandomGray:
    """Turn each image gray with probability ``p``: one draw per image, from the trial's
    generator, on the batch's device."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = images.shape[0]
        chosen = torch.rand(n, generator=generator, device=images.device) < self.p
        weights = torch.tensor((0.299, 0.587, 0.114), device=images.device, dtype=images.dtype)
        gray = (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(images)
        return torch.where(chosen.view(n, 1, 1, 1), gray, images)


def {component}(*, p: float = 0.2) -> RandomGray:
    return RandomGray(p)


@ablate.hookimpl
def register_augmentations(register: ablate.Registrar) -> None:
    register("{component}", {component}, "turn images gray with probability p",
             params={{"p": ablate.param("probability that an image turns gray", ge=0, le=1)}})
''',
    "optimizer": '''from collections.abc import Iterable

import torch

import ablate


def {component}(*, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay. ``params`` is context ablate passes in."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@ablate.hookimpl
def register_optimizers(register: ablate.Registrar) -> None:
    register("{component}", {component}, "AdamW (decoupled weight decay)",
             params={{"lr": ablate.param("learning rate", gt=0),
                     "weight_decay": ablate.param("decoupled weight decay", ge=0)}})
''',
    "scheduler": '''import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

import ablate


def {component}(*, optimizer: torch.optim.Optimizer, epochs: int,
                warmup: int = 2) -> LRScheduler:
    """Linear warm-up over ``warmup`` epochs, then linear decay to zero at the last epoch.

    ``optimizer`` and ``epochs`` are context ablate passes in; ablate steps the scheduler once
    per epoch, after evaluation."""
    def factor(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        return max(0.0, (epochs - epoch) / max(1, epochs - warmup))

    return LambdaLR(optimizer, factor)


@ablate.hookimpl
def register_schedulers(register: ablate.Registrar) -> None:
    register("{component}", {component}, "linear warm-up, then linear decay to zero",
             params={{"warmup": ablate.param("epochs of linear warm-up", ge=0)}})
''',
    "dataset": '''from pathlib import Path

import torch

import ablate
from ablate.data import ImageData


def {component}(*, data_dir: Path | None, size: int = 16, images: int = 200) -> ImageData:
    """A synthetic two-class dataset (horizontal or vertical stripes), made from a fixed seed.

    ``data_dir`` is context ablate passes in (``--data-dir`` or ``$ABLATE_DATA``): a real
    dataset reads its files from there, decodes them once into uint8 tensors (N, 3, H, W) and
    returns them as an ImageData, as this one does with the images it draws."""
    generator = torch.Generator().manual_seed(0)

    def split(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(count) % 2
        stripes = (torch.arange(size) % 4 < 2).float() * 200
        pictures = torch.where(labels.view(-1, 1, 1) == 0, stripes.view(1, size, 1),
                               stripes.view(1, 1, size)).expand(count, size, size)
        noise = torch.randint(0, 40, (count, 3, size, size), generator=generator)
        return (pictures.unsqueeze(1) + noise).clamp(0, 255).to(torch.uint8), labels

    train_x, train_y = split(images)
    test_x, test_y = split(images // 4)
    return ImageData("{component}", train_x, train_y, test_x, test_y,
                     classes=("horizontal", "vertical"), mean=(0.5, 0.5, 0.5),
                     std=(0.25, 0.25, 0.25), fingerprint=f"{component}-{{size}}-{{images}}")


@ablate.hookimpl
def register_datasets(register: ablate.Registrar) -> None:
    register("{component}", {component}, "synthetic stripes, two classes",
             params={{"size": ablate.param("image side in pixels", ge=4),
                     "images": ablate.param("training images (a quarter as many for testing)",
                                            ge=8)}})
''',
}

USAGE = {
    "model": 'model="{component}", width=16',
    "augmentation": 'augment="crop_flip+{component}", p=0.2',
    "optimizer": 'optimizer="{component}", lr=1e-3',
    "scheduler": 'scheduler="{component}", warmup=2',
    "dataset": 'dataset="{component}"',
}

TEST = '''"""The plugin passes ablate's conformance kit, in-process and through its entry point."""

from importlib.metadata import entry_points

import pytest

import {module}
from ablate.testing import DISABLE_AUTOLOAD_ENV, check_component, load_plugins


def test_{component}_passes_the_ablate_kit(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process, so the test needs no install: ablate's built-ins plus this module.
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    plugins = load_plugins(extra={{"{dist}": {module}}})
    assert not plugins.failures, plugins.failures
    check_component(plugins.registry.get("{kind}", "{component}"))


def test_the_entry_point_names_this_module() -> None:
    names = {{ep.value for ep in entry_points(group="ablate") if ep.name == "{component}"}}
    if not names:
        pytest.skip("not installed: run `pip install -e .` to check the entry point too")
    assert names == {{"{module}"}}
'''


def _names(name: str) -> tuple[str, str, str]:
    """(distribution, module, component) for a NAME such as ``ablate-gray`` or ``my_aug``."""
    dist = name.strip()
    module = re.sub(r"[-.]+", "_", dist).lower()
    if not module.isidentifier() or keyword.iskeyword(module):
        raise ValueError(
            f"{name!r} does not make a Python module name: use letters, digits, "
            "'-' and '_', starting with a letter"
        )
    component = module.removeprefix("ablate_") or module
    return dist, module, component


def write_skeleton(name: str, kind: str, where: Path) -> Path:
    """Write the package for ``name`` under ``where``; returns its folder."""
    if kind not in KINDS:
        raise ValueError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    dist, module, component = _names(name)
    root = where / dist
    if root.exists():
        raise ValueError(f"{root} exists already: choose another NAME or --dir")
    values = {"dist": dist, "module": module, "component": component, "kind": kind}
    files = {
        root / "pyproject.toml": PYPROJECT.format(**values),
        root / "README.md": README.format(**values, usage=USAGE[kind].format(**values)),
        root / module / "__init__.py": f'"""ablate plugin {dist}: the {kind} {component!r}."""\n\n'
        + COMPONENTS[kind].format(**values),
        root / "tests" / f"test_{module}.py": TEST.format(**values),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def new_plugin(
    name: Annotated[str, typer.Argument(help="distribution name, e.g. ablate-gray")],
    kind: Annotated[str, typer.Option(help=f"what it registers: {', '.join(KINDS)}")] = "model",
    directory: Annotated[Path, typer.Option("--dir", help="where to write the package")] = Path("."),
) -> None:
    """Write a plugin package: pyproject with the entry point, one component, a kit test."""
    from ablate.commands import err, out

    try:
        root = write_skeleton(name, kind, directory)
    except (ValueError, OSError) as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    out.print(
        f"wrote {root}: `pip install -e {root}` installs it, `pytest {root}` checks it, "
        f"`ablate plugins` then lists it",
        highlight=False,
    )


@hookimpl
def register_commands(app: typer.Typer) -> None:
    app.command("new-plugin")(new_plugin)
