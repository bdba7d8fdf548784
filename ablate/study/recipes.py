"""Designs between two recipes: the study's baseline (the source recipe) and a target that
differs in k settings (issue 28).

A *setting* is one key of ``target`` and moves as a whole: a plain value (``augment="crop_flip"``)
or a dict of keys that only make sense together (``model=dict(model="resnet9", width=16)``,
``schedule=dict(scheduler="cosine", lr=0.05)``). A *recipe* is the source with some settings
flipped to the target's values; it is named by what it flips (``source``, ``source+model``,
``target-schedule``, ``target``), and numbered by the bit mask of its flipped settings.

The designs are declared with :func:`ablate.study.factors.path` and
:func:`ablate.study.factors.leave_one_out`:

- a path: Fawcett & Hoos's ablation path, run rather than drawn from a surrogate. Round r
  trains each recipe that flips one more remaining setting, paired by seed with the recipe kept so
  far, and keeps the largest gain (chosen on validation accuracy: :mod:`ablate.run.paths`).
  About k(k+1)/2 recipes; racing stops a candidate that is clearly behind.
- a leave-one-out screen: the 2k + 2 recipes of a screen: the source, the target, each setting
  added alone to the source and removed alone from the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ablate.study.factors import AblationPath, Recipes, StudyError
from ablate.study.plan import PlannedTrial


def setting_values(target: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each setting's keys and target values (a plain value is a group of one key)."""
    return {
        name: dict(value) if isinstance(value, Mapping) else {name: value} for name, value in target.items()
    }


def recipe_params(baseline: Mapping[str, Any], target: Mapping[str, Any], mask: int) -> dict[str, Any]:
    """The source recipe with the settings of ``mask`` flipped to the target's values."""
    params = dict(baseline)
    for bit, values in enumerate(setting_values(target).values()):
        if mask >> bit & 1:
            params.update(values)
    return params


def recipe_name(settings: list[str], mask: int) -> str:
    """``source``, ``target``, else the shorter of ``source+a+b`` and ``target-c-d``."""
    full = (1 << len(settings)) - 1
    if mask == 0:
        return "source"
    if mask == full:
        return "target"
    flipped = [s for bit, s in enumerate(settings) if mask >> bit & 1]
    kept = [s for bit, s in enumerate(settings) if not mask >> bit & 1]
    return "source+" + "+".join(flipped) if len(flipped) <= len(kept) else "target-" + "-".join(kept)


def recipe_masks(settings: list[str]) -> dict[str, int]:
    """Recipe name -> mask, for every recipe between source and target."""
    return {recipe_name(settings, mask): mask for mask in range(1 << len(settings))}


def leave_one_out_masks(k: int) -> list[int]:
    """The screen's recipes: source, target, each setting alone, each removed (no repeats)."""
    full = (1 << k) - 1
    masks = [0, full] + [1 << bit for bit in range(k)] + [full ^ (1 << bit) for bit in range(k)]
    return list(dict.fromkeys(masks))


def check_recipes(design: Recipes, baseline: Mapping[str, Any]) -> None:
    """Every setting must change something: a target value equal to the source's is no step."""
    for name, values in setting_values(design.target).items():
        if all(key in baseline and baseline[key] == value for key, value in values.items()):
            raise StudyError(
                f"target: setting {name!r} gives the source's own value(s) "
                f"{', '.join(f'{k}={v!r}' for k, v in values.items())}: no step to measure",
                "design",
            )


def path_trial(mask: int, place: int, seeds: int) -> int:
    """The planned trial number of recipe ``mask`` at the seed in ``place`` (of ``seeds``): a
    path plans every recipe, each with every seed, in this order."""
    return mask * seeds + place


def recipe_trials(
    design: Recipes, baseline: Mapping[str, Any], seeds: tuple[int, ...]
) -> tuple[PlannedTrial, ...]:
    """A path plans every recipe between source and target (numbered by :func:`path_trial`),
    and trains those its rounds reach (:mod:`ablate.run.paths`); a leave-one-out
    screen plans its 2k + 2 recipes, seed-major like a grid."""
    settings = list(design.target)

    def trial(index: int, mask: int, seed: int) -> PlannedTrial:
        params = recipe_params(baseline, design.target, mask)
        return PlannedTrial(index, recipe_name(settings, mask), {}, params, seed)

    if isinstance(design, AblationPath):
        return tuple(
            trial(path_trial(mask, place, len(seeds)), mask, seed)
            for mask in range(1 << len(settings))
            for place, seed in enumerate(seeds)
        )
    masks = leave_one_out_masks(len(settings))
    return tuple(
        trial(place * len(masks) + number, mask, seed)
        for place, seed in enumerate(seeds)
        for number, mask in enumerate(masks)
    )
