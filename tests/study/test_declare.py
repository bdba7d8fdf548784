from __future__ import annotations

import re

import pytest

from ablate import Preset, Study, choice, sampler, uniform
from ablate.study.factors import StudyError
from tests.conftest import REPO


def make(**overrides: object) -> Study:
    fields = dict(
        name="s",
        question="q?",
        baseline=dict(model="resnet18", dropout=0.0, augment="crop_flip"),
        factors=dict(dropout=choice(0.0, 0.25, 0.5), augment=choice("none", "crop_flip")),
        seeds=3,
        presets=dict(small=Preset("small", dict(width=4), seeds=2)),
    )
    fields.update(overrides)
    return Study(**fields)  # type: ignore[arg-type]


def test_grid_is_every_combination_times_seeds_in_seed_major_order() -> None:
    plan = make().plan()
    assert plan.size == 18
    assert [t.seed for t in plan.trials[:6]] == [0] * 6
    assert [t.index for t in plan.trials] == list(range(18))
    cells = {t.cell for t in plan.trials}
    assert len(cells) == 6 and "dropout=0.25,augment=none" in cells
    assert plan.trials[1].params == dict(
        model="resnet18", dropout=0.0, augment="crop_flip", deterministic="on"
    )  # auto, decided for the study


def test_one_factor_at_a_time_varies_each_factor_alone_from_the_baseline() -> None:
    plan = make(design="oat", seeds=1).plan()
    assert [dict(t.levels) for t in plan.trials] == [
        dict(dropout=0.0, augment="crop_flip"),
        dict(dropout=0.25, augment="crop_flip"),
        dict(dropout=0.5, augment="crop_flip"),
        dict(dropout=0.0, augment="none"),
    ]


def test_preset_overrides_baseline_and_seeds_and_set_overrides_preset() -> None:
    plan = make().plan("small", {"width": 2})
    assert plan.seeds == (0, 1) and plan.size == 12
    assert plan.baseline["width"] == 2 and plan.preset == "small"


def test_set_on_a_factor_fixes_it() -> None:
    plan = make().plan(None, {"dropout": 0.5})
    assert plan.size == 6 and all(t.params["dropout"] == 0.5 for t in plan.trials)


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(StudyError, match="no preset 'big'; presets: small"):
        make().plan("big")


def test_fingerprint_changes_with_what_the_results_mean() -> None:
    study = make()
    assert study.plan().fingerprint() == make().plan().fingerprint()
    assert study.plan().fingerprint() != study.plan("small").fingerprint()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(metric="acc"), "metric 'acc'"),
        (dict(design="random"), "design 'random'"),
        (dict(factors=dict(lr=uniform(0.01, 0.1))), "needs design=sampler"),
        (dict(design="oat", factors=dict(width=choice(4, 8))), "no 'width'"),
        (dict(default_preset="huge"), "default_preset 'huge'"),
        (dict(name="a b"), "study name"),
        (dict(within=("width",)), "within must list factors of the study"),
        (dict(within="augment"), "within must list factors of the study"),
        (dict(factors=dict(dropout=choice(0.0, 0.5)), within=("dropout",)), "within needs two factors"),
    ],
)
def test_inconsistent_declarations_fail_early(fields: dict, message: str) -> None:
    with pytest.raises(StudyError, match=message):
        make(**fields)


def test_within_may_hold_every_factor_to_ask_each_within_the_others() -> None:
    assert make(within=("dropout", "augment")).within == ("dropout", "augment")


def test_sampler_design_has_a_trial_budget() -> None:
    plan = make(design=sampler("random", trials=5), factors=dict(lr=uniform(0.01, 0.1))).plan()
    assert plan.sampled and plan.size == 5 and plan.trials == ()


def test_study_records_where_it_was_declared() -> None:
    study = make()
    assert study.location[0] == __file__


def test_the_public_names_are_the_api_not_submodules_of_the_same_name() -> None:
    """``import ablate`` loads its names lazily; a submodule named like one of them (there was
    an ``ablate/fractional.py``) would shadow it once imported."""
    import importlib
    import pkgutil
    import types

    import ablate

    for module in pkgutil.walk_packages(ablate.__path__, "ablate."):
        if module.name not in ("ablate.__main__",):
            importlib.import_module(module.name)
    for name in ablate.__all__:
        assert not isinstance(getattr(ablate, name), types.ModuleType), name


def test_deterministic_auto_is_decided_once_for_every_cell_of_a_study() -> None:
    """resume_jump's `none` cell once trained with deterministic=False (cudnn.benchmark, the
    adaptive pool) and every other cell with True, so on a GPU its `full` control could never
    equal `none`. auto is now decided per study, and the trials row of every cell says it."""
    from ablate.study import load as studyfile

    resume = studyfile.load(REPO / "studies" / "resume_jump.py")
    plan = resume.plan("smoke")
    assert {t.params["deterministic"] for t in plan.trials} == {"on"}
    assert {t.params.get("resume", "none") for t in plan.trials} >= {"none", "full"}
    quiet = Study(
        name="s", question="?", baseline=dict(checkpoint_every=0), factors=dict(dropout=choice(0.0, 0.5))
    ).plan()
    assert {t.params["deterministic"] for t in quiet.trials} == {"off"}  # nothing to resume
    asked = Study(
        name="s",
        question="?",
        baseline=dict(deterministic="off"),
        factors=dict(resume=choice("none", "full")),
    ).plan()
    assert {t.params["deterministic"] for t in asked.trials} == {"off"}  # as set


def test_named_contrasts_must_compare_two_levels_of_a_listed_factor() -> None:
    base = dict(name="named", question="?", baseline={"model": "a"}, factors={"model": choice("a", "b", "c")})
    plan = Study(**base, contrasts=[("model", "c", "b")]).plan()  # type: ignore[arg-type]
    assert plan.contrasts == (("model", "c", "b"),) and plan.describe()["contrasts"] == [["model", "c", "b"]]
    # The contrasts change no trial: the fingerprint stays.
    assert plan.fingerprint() == Study(**base).plan().fingerprint()  # type: ignore[arg-type]
    averaged = Study(**base, contrasts=[("model", "c", "a", "averaged")]).plan()  # type: ignore[arg-type]
    assert averaged.contrasts == (("model", "c", "a", "averaged"),)
    for bad, words in (
        ([("width", 1, 2)], "for a factor given as choice"),
        ([("model", "c", "b", "pooled")], "or with 'averaged' fourth"),
        ([("model", "c", "c")], "two different levels of model"),
        ([("model", "c", "z")], "two different levels of model"),
        (("model", "c", "b"), "a list of (factor, level, versus) tuples"),
        (5, "a list of (factor, level, versus) tuples"),
        ("model", "a list of (factor, level, versus) tuples"),
    ):
        with pytest.raises(StudyError, match=re.escape(words)):
            Study(**base, contrasts=bad)  # type: ignore[arg-type]
