"""Rebuild ``docs/findings.md`` and its figures from the studies' ``mid`` results folders.

    python docs/findings/build.py [--results-dir results]

Every number and figure on the page comes from the results folders (through the same analysis
as ``ablate report``); nothing is typed by hand but the questions in the users' words and what
each kind of answer means for a training script. A study without a complete ``mid`` run gets a
section that says so, with the command that would fill it.

Each study's section is kept beside its figures (``docs/findings/<study>.md``) and rebuilt only
when the results folder holds a run of that study at the page's preset: the studies take hours
each, so they are run on different machines and sessions, and rebuilding the page on one that
holds only some of the results folders must not throw the others' measured sections away.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "findings.md"
FIGURES = REPO / "docs" / "findings"
MAX_FIGURE_BYTES = 200_000
PRESET = "mid"  # the scale the page reports (--preset picks another, e.g. smoke in the tests)
DATA = "../shared/datasets/cifar10"  # where this project's machines keep CIFAR-10


@dataclass(frozen=True)
class Question:
    study: str  # the file under studies/
    asked: str  # the question in the users' words
    figures: tuple[str, ...]  # plots of ablate.report.plots.PLOTS, in order of preference
    meaning: str  # how to read the answer for one's own script (no numbers: those are measured)
    # The answer to the users' own question in their words, built from the measured report
    # (None where the numbers do not support it): what the verdicts imply but do not say.
    said: Callable[[Any], str | None] | None = None


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _interval(finding: Any) -> str:
    low, high = finding.interval or (None, None)
    return "" if low is None else f" [{_points(low)}, {_points(high)}]"


def resume_said(report: Any) -> str | None:
    """resume_jump: is the jump the rate restarting or the lost momentum? The mode that loses
    only the momentum keeps the schedule; the two that start the schedule over lose it too."""
    from ablate.analysis.answer import NEGLIGIBLE, OPEN, SETTLED

    jumps = [
        f
        for f in report.findings
        if f.family and f.estimate is not None and f.metric.startswith("jump_test@")
    ]

    def largest(modes: tuple[str, ...]) -> Any:
        found = [f for f in jumps if f.contrast.level in modes]
        return max(found, key=lambda f: abs(f.estimate.value)) if found else None

    momentum, restarted = largest(("weights_scheduler",)), largest(("weights_only", "weights_optimizer"))
    if momentum is None or restarted is None:
        return None
    text = (
        f"Losing only the momentum (`weights_scheduler`, the users' own segments) moves test "
        f"accuracy across a restart by at most {_points(momentum.estimate.value)} points"
        f"{_interval(momentum)} ({momentum.verdict}, {momentum.metric}); starting the schedule over "
        f"(`{restarted.contrast.level}`) by {_points(restarted.estimate.value)}{_interval(restarted)} "
        f"({restarted.verdict}, {restarted.metric})."
    )
    if restarted.verdict in SETTLED and momentum.verdict in NEGLIGIBLE + OPEN:
        text += " The jump comes from the learning rate restarting, not from the lost momentum."
    return text


def pretraining_said(report: Any) -> str | None:
    """pretraining: where does test accuracy stand against running train accuracy after the
    first epoch, with pretrained weights and without?"""
    parts = []
    for cell in report.cells:
        first = cell.summary.get("gap_running_first")
        init = cell.levels.get("init")
        if first is None or first.low is None or cell.levels.get("dropout") not in (0, 0.0):
            continue
        start = "from scratch" if init == "scratch" else f"from the `{init}` weights"
        interval = f"95 % interval {_points(first.low)} to {_points(first.high)}"
        if first.low <= 0 <= first.high:  # no side is shown: the words claim none
            parts.append(
                f"{start} test accuracy after the first epoch is not shown to differ from the "
                f"running train accuracy ({_points(first.mean)} points, {interval})"
            )
            continue
        side = "above" if first.mean > 0 else "below"
        parts.append(
            f"{start} test accuracy ends the first epoch {abs(first.mean) * 100:.1f} points "
            f"{side} the running train accuracy ({interval})"
        )
    if not parts:
        return None
    return "Without dropout, " + "; ".join(parts) + "."


def architecture_said(report: Any) -> str | None:
    """architecture: can the C3 block replace the residual block? The study's own comparison
    (resnet_c3 against resnet18, the same layout) on test accuracy within each augmentation,
    with the two models' parameters; a conclusion only where every such verdict agrees."""
    from ablate.analysis.answer import SETTLED
    from ablate.analysis.contrasts import ASKED

    asked = [
        f
        for f in report.findings
        if f.family and f.contrast.kind == ASKED and f.metric == "test_acc" and f.interval
    ]
    if not asked:
        return None
    first = asked[0].contrast
    parts = []
    for finding in asked:
        where = ", ".join(f"{k} = {v}" for k, v in finding.contrast.condition.items())
        value, verdict = finding.estimate.value, finding.verdict
        if verdict in SETTLED:
            side = "higher" if value > 0 else "lower"
            parts.append(f"{abs(value) * 100:.1f} points {side} with {where}{_interval(finding)} ({verdict})")
        else:
            shown = f"{_points(value)}{_interval(finding)}, {verdict}"
            parts.append(f"not shown to differ with {where} ({shown})")
    params = {
        cell.levels.get(first.factor): cell.summary["model_params"].mean
        for cell in report.cells
        if "model_params" in cell.summary
    }
    sizes = (
        f", with {params[first.level]:,.0f} parameters against {params[first.baseline_level]:,.0f}"
        if first.level in params and first.baseline_level in params
        else ""
    )
    text = (
        f"Test accuracy with `{first.level}` in place of `{first.baseline_level}` (the same "
        f"layout{sizes}): " + "; ".join(parts) + "."
    )
    signs = {finding.estimate.value > 0 for finding in asked}
    if all(f.verdict in SETTLED for f in asked) and len(signs) == 1:
        verb = "beat" if signs == {True} else "did not match"
        text += f" At this width and budget the C3 block {verb} the residual block it replaces."
    return text


def path_said(report: Any) -> str | None:
    """recipe_path, finetune_path: which of the target's changes lower the metric where the path
    took them, and which give the other sign alone from the source than on the path (the
    settings' interaction, by name)."""
    from ablate.analysis.answer import SETTLED
    from ablate.analysis.paths import ALONE, STEP

    def measured(kind: str) -> list[Any]:
        return [
            f
            for f in report.findings
            if f.contrast.kind == kind and f.metric == report.metric and f.estimate is not None
        ]

    steps, alone = measured(STEP), {f.contrast.factor: f for f in measured(ALONE) if f.interval}
    metric, parts = report.metric, []
    lowered = [f for f in steps if f.verdict in SETTLED and f.estimate.value < 0]
    if lowered:
        named = " and ".join(
            f"{f.contrast.factor} {_points(f.estimate.value)}{_interval(f)}" for f in lowered
        )
        parts.append(
            "Not every change of the target helps where the path took it: "
            f"{named} points lower {metric} there."
        )
    for place, step in enumerate(steps):
        single = alone.get(step.contrast.factor)
        if step.verdict not in SETTLED or single is None or single.interval[0] * single.interval[1] <= 0:
            continue
        if (single.estimate.value > 0) == (step.estimate.value > 0):
            continue
        before = ", ".join(f.contrast.factor for f in steps[:place])
        parts.append(
            f"The {step.contrast.factor} step changes sign with the recipe: {_points(single.estimate.value)}"
            f"{_interval(single)} points alone from the source (an exploratory interval), "
            f"{_points(step.estimate.value)}{_interval(step)} where the path took it"
            + (f", after {before}." if before else ".")
        )
    return " ".join(parts) or None


QUESTIONS = (
    Question(
        "dropout_gap",
        "Why is my test accuracy above my train accuracy early on, and why does "
        "the gap widen after the first learning-rate decay? Is it dropout? Augmentation?",
        ("gaps", "interaction"),
        "`train_acc` as most scripts print it is measured during the epoch, with dropout and "
        "augmentation on and the weights still moving; `gap_eval` compares like with like "
        "(train images measured in eval mode, unaugmented). An effect on `gap_running` that "
        "`gap_eval` shows negligible would be an artefact of the running average; one that "
        "is only undecided on `gap_eval` is not shown absent. Dropout and crop + flip that "
        "narrow `gap_running` do it by lowering the running train accuracy it is measured "
        "with, not by raising test accuracy; whether they help is their effect on `test_acc`.",
    ),
    Question(
        "resume_jump",
        "Why does accuracy jump when I stop training and reload my checkpoint?",
        ("restarts", "learning_curves"),
        "`full` (everything restored) is the control and must show no jump; each naive mode "
        "shows what losing one piece of state costs at a restart. If your script restores "
        "only the weights, the mode with the same name is your situation. A mode that "
        "starts the schedule over also spends more epochs at the first, highest rate, so "
        "its final accuracy differs for that reason alone: judge the restart by the jumps.",
        resume_said,
    ),
    Question(
        "color_jitter",
        "Does colour jitter help when the test images have none?",
        ("final_metric", "interaction"),
        "Read the effect of jitter on `test_acc` within each augmentation. The test images "
        "are unjittered, so this says nothing about robustness to colour shifts, which this "
        "study does not measure.",
    ),
    Question(
        "oscillation",
        "Why does my test accuracy swing from epoch to epoch with small batches?",
        ("interaction", "learning_curves"),
        "The swing is measured over the last half of training, leaving out changes across a "
        "step of the rate; a smaller batch at the same learning rate takes more, noisier "
        "steps. The study compares a cosine schedule with a constant rate at each batch "
        "size; it does not try a larger batch with a rescaled rate.",
    ),
    Question(
        "pretraining",
        "Does pretraining help on 32x32 images?",
        ("learning_curves",),
        "Offline, pretraining here means weights trained on other CIFAR-10 classes "
        "(`pretrain_source`); with internet access the `full` preset compares ImageNet "
        "weights. Test accuracy above the running train accuracy after the first epoch is "
        "the users' symptom: the running figure averages over an epoch whose weights were "
        "still far from the final ones.",
        pretraining_said,
    ),
    Question(
        "schedule",
        "Which learning-rate schedule should I use?",
        ("learning_curves",),
        "Every pair of schedules is compared on final test accuracy at the same epoch "
        "budget; the plateau schedule steps on a validation split held out of the training "
        "images, never on the test set. A schedule that wins only at the budget of this run "
        "may lose at yours.",
    ),
    Question(
        "architecture",
        "Which architecture, and can a YOLO-style C3 block replace a residual "
        "block? How much of the gap does crop + flip close for each?",
        ("interaction", "final_metric"),
        "Each model's gain over the tutorial CNN is given with and without crop + flip, and "
        "what crop + flip does for each model: a gap that closes for one model and not "
        "another is an interaction, reported as such. C3 against the residual block it "
        "replaces (resnet_c3 against resnet18, the same layout) is asked directly, within "
        "each augmentation; its parameters and seconds per epoch are in the cell table.",
        architecture_said,
    ),
    Question(
        "recipe_path",
        "I changed five things from the tutorial CNN to ResNet-9 and gained 30 points: which "
        "of them made the difference?",
        ("learning_curves",),
        "Each step's gain holds where the path took it: after the steps before it. Where the "
        "settings' gains alone do not add up to the total, they interact, and the same change "
        "may be worth more or less in another recipe. Both recipes train for the same epochs, "
        "so the path measures the five changes, not training longer.",
        path_said,
    ),
    Question(
        "finetune_path",
        "Fine-tuning a pretrained ResNet-18 beats training from scratch: is it the weights, or "
        "the dropout head, the augmentation, the schedule or the smaller rate that came with them?",
        ("learning_curves",),
        "Offline, the pretrained start is a CIFAR ResNet-18 trained on the other five classes "
        "(`pretrain_source`), not ImageNet weights. Each step's gain holds after the steps "
        "before it; a setting that helps alone may add nothing once the pretrained start is in.",
        path_said,
    ),
    Question(
        "five_epochs",
        "Can a ResNet-18 pass 50 % test accuracy in 5 epochs?",
        ("learning_curves",),
        "The answer is how many seeds pass the target, the cell's mean with its interval, "
        "and the range one more run would fall in (a prediction interval), at this width and "
        "data: a mean above the target is a claim about the average run, not about yours.",
    ),
)


def study_plan(name: str, preset: str):  # type: ignore[no-untyped-def]
    from ablate.study import load as studyfile

    study = studyfile.load(REPO / "studies" / f"{name}.py")
    return study, study.plan(preset, {})


def command(name: str, preset: str) -> str:
    return f"ablate run studies/{name}.py --preset {preset} --data-dir {DATA}"


def save_figure(figure, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Write ``figure`` as a PNG under MAX_FIGURE_BYTES, lowering the resolution until it fits."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    try:
        for dpi in (90, 72, 56, 42):
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
            if buffer.tell() <= MAX_FIGURE_BYTES:
                path.write_bytes(buffer.getvalue())
                return
        raise SystemExit(f"{path.name}: over {MAX_FIGURE_BYTES} bytes even at 42 dpi")
    finally:
        plt.close(figure)


def study_line(question: Question, plan) -> str:  # type: ignore[no-untyped-def]
    """The line that names the study and preset a section was measured at."""
    return f"Study `studies/{question.study}.py`, preset `{plan.preset}`"


def heading(question: Question, study, plan, preset_name: str) -> list[str]:  # type: ignore[no-untyped-def]
    preset = study.presets.get(preset_name)
    return [
        f"## {question.asked}",
        "",
        study_line(question, plan) + (f": {preset.description}." if preset else "."),
        "",
        f"    {command(question.study, preset_name)}",
        "",
    ] + (
        [
            f"It runs {', '.join(f'`studies/{r}`' for r in preset.requires)} first, at the same "
            "preset, where its results are missing.",
            "",
        ]
        if preset and preset.requires
        else []
    )


def measured_section(
    question: Question,
    head: list[str],
    plan,
    results_dir: Path,  # type: ignore[no-untyped-def]
    figures: Path,
) -> list[str] | None:
    """The section (under ``head``) of a study measured at ``plan``'s preset in
    ``results_dir``, its figures (re)drawn into ``figures``; None when that folder holds no
    such run."""
    from ablate.analysis import ReportError, analyse_folder
    from ablate.report.formats import markdown_table
    from ablate.report.plots import PLOTS
    from ablate.report.render import legend, tables

    lines = list(head)
    folder = results_dir / plan.name
    try:
        report, results = analyse_folder(folder)
    except ReportError:
        report = None
    complete = report.counts["complete"] + report.counts["diverged"] if report else 0
    if report is None or report.preset != plan.preset or complete == 0:
        return None
    for old in figures.glob(f"{question.study}-*.png"):
        old.unlink()
    first = results.complete[0] if results.complete else {}
    images = first.get("param_train_size")
    # The test images a trial was scored on, from its per-class counts: a class subset
    # (pretraining's classes 5-9) tests on part of the test set with test_size left at 0 ("all").
    test_images = sum(
        row.get("count") or 0
        for row in results.classes
        if (row["trial"], row["attempt"]) == (first.get("trial"), first.get("attempt"))
    ) or first.get("param_test_size")
    seeds = len({t["seed"] for t in results.complete})
    # A path's race trains fewer than it plans: it is finished when it reached the target.
    unfinished = not report.path_done if report.path_done is not None else complete < plan.size
    most = "at most " if report.path_done is not None else ""
    lines += [
        f"Measured: {complete} of {most}{plan.size} planned trials, {seeds} "
        f"{'seed' if seeds == 1 else 'seeds'} per cell "
        f"at most, {_images(images, 'training')} and {_images(test_images, 'test')} "
        f"images per trial."
        + (f" {report.ran_on}" if report.ran_on else "")
        + sized(report)
        + (" **The run is not finished: the answer below is provisional.**" if unfinished else ""),
        "",
        SHORT + without_preset(" ".join(report.summary)),
        "",
    ]
    for name, alt in (("forest", "the question's comparisons"), ("waterfall", "the path's steps")):
        figure = PLOTS[name](report, results)
        if figure is not None:
            path = figures / f"{question.study}-{name}.png"
            save_figure(figure, path)
            lines += [f"![{question.study}: {alt}]({figures.name}/{path.name})", ""]
    lines += ["**Answer**", ""]
    lines += [f"- {line}" for line in report.answer]
    shown = tables(report)
    family = [t for t in shown if t[0].startswith("The Answer's family")]
    for title, headers, rows in [shown[0], *family]:
        lines += ["", f"*{title}*", "", markdown_table(headers, rows)]
    lines += ["", legend(report), ""]
    for name in question.figures:
        figure = PLOTS[name](report, results) if report.cells else None
        if figure is None:
            continue
        path = figures / f"{question.study}-{name}.png"
        save_figure(figure, path)
        lines += [f"![{question.study}: {name}]({figures.name}/{path.name})", ""]
    said = question.said(report) if question.said else None
    return lines + [
        *([f"*What the numbers say.* {said}", ""] if said else []),
        f"{MEANING}{question.meaning}",
        "",
        family_record(report),
        "",
    ]


MEANING = "*What it means for your script.* "  # typed, not measured: kept sections take the current text


SHORT = "**Short answer.** "


def without_preset(answer: str) -> str:
    """A short answer without its closing sentence on the preset: on the page the study line
    above it says that, in the study file's current words, while the run stored the words it
    was planned with (a preset's timing is corrected once it has been measured)."""
    return answer.split(" Preset `", 1)[0]


def refresh_typed(lines: list[str], question: Question, head: list[str], named: str) -> list[str]:
    """A kept section with the current typed words: its practical paragraph, and the line that
    describes its study and preset (``named``, then the study file's words), not its measured
    parts."""
    described = next(line for line in head if line.startswith(named))

    def current(line: str) -> str:
        if line.startswith(MEANING):
            return f"{MEANING}{question.meaning}"
        if line.startswith(SHORT):
            return without_preset(line)
        if line.startswith("- "):  # a verdict's seeds at zero were "identical" until December 2026
            return re.sub(r"seeds agree \((\d+) identical\)", r"seeds agree (\1 tied)", line)
        return described if line.startswith(named) else line

    return [current(line) for line in lines]


def sized(report: Any) -> str:
    """What the seeds could detect: the range of the family's 80 % power effects, in points for
    accuracies and gaps, as factors for ratio metrics (a swing: its detectable effect is a log
    ratio, and a "point" of it means nothing)."""
    import math

    from ablate.analysis.metrics import is_accuracy, is_ratio

    def span(values: list[float], shown: Any) -> str:
        low, high = shown(min(values)), shown(max(values))
        return low if low == high else f"{low} to {high}"

    family = [f for f in report.findings if f.family and f.detectable]
    points = [f.detectable * 100 for f in family if is_accuracy(f.metric) and not is_ratio(f.metric)]
    ratios = [f.detectable for f in family if is_ratio(f.metric)]
    parts = [f"{span(points, lambda v: f'{v:.1f}')} points"] if points else []
    parts += [f"factors of {span(ratios, lambda v: f'x{math.exp(v):.2f}')}"] if ratios else []
    if not parts:
        return ""
    return f" Sized to detect effects of {' and '.join(parts)} (80 % power at these seeds, by comparison)."


# Each measured section ends with its family's adjusted p values in a comment (invisible on the
# page): the page-wide line counts them without the results folders of kept sections.
FAMILY_RECORD = "<!-- family p: "


def family_record(report: Any) -> str:
    from ablate.analysis.answer import SETTLED

    values = [
        f"{f.p_adjusted:.6g}{'*' if f.verdict in SETTLED else ''}"
        for f in report.findings
        if f.family and f.p_adjusted is not None
    ]
    return FAMILY_RECORD + " ".join(values) + " -->"


def page_line(sections: list[list[str]], alpha: float = 0.05) -> str:
    """One line for the whole page: each study is a family of its own; how many of the verdicts
    decided within a family also hold under Benjamini-Hochberg over every hypothesis on the page
    (on the families' adjusted p values, which only makes it stricter)."""
    from ablate.analysis.stats import benjamini_hochberg

    p_values: list[float] = []
    decided: list[bool] = []
    counted = 0
    for lines in sections:
        record = next((line for line in lines if line.startswith(FAMILY_RECORD)), None)
        if record is None:
            continue
        counted += 1
        for item in record.removeprefix(FAMILY_RECORD).removesuffix("-->").split():
            p_values.append(float(item.rstrip("*")))
            decided.append(item.endswith("*"))
    if not counted:
        return ""
    survive = benjamini_hochberg(p_values, alpha)
    held = sum(d and s for d, s in zip(decided, survive, strict=True))
    left = len(sections) - counted
    smallest = min((p for p, d in zip(p_values, decided, strict=True) if d), default=None)
    why = (  # where more seeds, not other verdicts, would change the count
        f" (the smallest of their p values is {smallest:.2g}: at 6 seeds an exact test gives "
        f"nothing much below 2/64 = 0.031, and over {len(p_values)} hypotheses Benjamini-Hochberg "
        "asks for less; more seeds per study would let it pass)"
        if smallest is not None and smallest >= 0.01 and held < sum(decided)
        else ""
    )
    return (
        f"The page is {len(sections)} families, not one. Across the {counted} measured under the "
        f"current rules ({len(p_values)} hypotheses with an exact test), {held} of the {sum(decided)} "
        f"verdicts decided within their family also hold under Benjamini-Hochberg at {alpha:g} over "
        "all of them"
        + why
        + (
            "; the other section is kept from earlier rules or not run, and not counted."
            if left == 1
            else f"; the {left} other sections are kept from earlier rules or not run, and not counted."
            if left
            else "."
        )
    )


EARLIER_RULES = (
    "*Built under earlier verdict rules: this section's intervals use one error pooled over all "
    "cells and Bonferroni over the family (with the sign-flip test of each comparison alone as a "
    "gate). The current rules give each comparison its own variance and decide the family with "
    "one max-T sign-flip test (CHANGELOG.md, docs/verdicts.md); where cells differ in noise, "
    "some verdicts here would change. Its measurements stand; the command above re-runs it under "
    "the current rules.*"
)
CURRENT_RULES = "decided together at family-wise level"  # in every family line the current rules write


def mark_earlier_rules(lines: list[str]) -> list[str]:
    """A kept section whose verdicts were made before the current rules, marked as such below
    its Measured line (once, replacing an older mark): its verdict words may differ from what a
    re-run would print."""
    if any(CURRENT_RULES in line for line in lines) or EARLIER_RULES in lines:
        return lines
    for i in reversed(range(len(lines))):  # an older mark, with the blank line set before it
        if lines[i].startswith("*Built under earlier verdict rules"):
            del lines[i - 1 if i and lines[i - 1] == "" else i : i + 1]
    at = next((i for i, line in enumerate(lines) if line.startswith("Measured:")), 1)
    return [*lines[: at + 1], "", EARLIER_RULES, *lines[at + 1 :]]


def not_run_section(head: list[str], plan) -> list[str]:  # type: ignore[no-untyped-def]
    return head + [
        f"**Not run yet at this scale** ({plan.size} trials planned). The command above runs it "
        "(resumable: run it again after a stop); then `python docs/findings/build.py` fills this "
        "section.",
        "",
    ]


def _images(count: object, split: str) -> str:
    if not count:
        return f"all {split}"
    return f"{int(count):,} {split}"  # type: ignore[call-overload]


def build(
    results_dir: Path, preset: str = PRESET, page: Path = PAGE, figures: Path = FIGURES
) -> dict[str, str]:
    """Write ``page`` and its figures (in ``figures``, beside it) from ``results_dir``: a study
    found there at ``preset`` gets its section and figures rebuilt; any other keeps the section
    last built for it at that preset (``figures/<study>.md``) or, if it never ran, says so.
    Returns each study's section as "measured", "kept" or "not run"."""
    # Each study file loaded once, all before anything is written: a preset one lacks
    # (StudyError) leaves the page and its figures as they were.
    studies = [(question, *study_plan(question.study, preset)) for question in QUESTIONS]
    sources: dict[str, str] = {}
    figures.mkdir(parents=True, exist_ok=True)
    parts = [
        "# Findings",
        "",
        "What ablate's studies answer at a scale this project's 2-core CPU can run: the "
        f"`{preset}` presets, on CIFAR-10 (`--data-dir {DATA}`). Every number and figure "
        "below is regenerated from the results folders by `python docs/findings/build.py` "
        "(the same analysis as `ablate report`); a section without a run says so. Effects "
        "are differences in percentage points; each verdict of a study's family rests on its "
        "simultaneous interval (95 % over the family, printed beside it), the "
        "cells' intervals are 95 % ones, and each study is a family of its own: the page holds "
        'several families, not one. "decided" follows the rules in '
        "[Reports and how verdicts are made](verdicts.md). Sections built before a change of those "
        "rules say so.",
        "",
    ]
    sections: list[list[str]] = []
    for question, study, plan in studies:
        kept = figures / f"{question.study}.md"
        head = heading(question, study, plan, preset)
        lines = measured_section(question, head, plan, results_dir, figures)
        earlier = kept.read_text(encoding="utf-8") if kept.is_file() else ""
        if lines is not None:
            kept.write_text("\n".join(lines), encoding="utf-8")
            sources[question.study] = "measured"
        elif (named := study_line(question, plan)) in earlier:  # another preset's never mixes in
            lines = refresh_typed(mark_earlier_rules(earlier.split("\n")), question, head, named)
            sources[question.study] = "kept"
        else:
            lines = not_run_section(head, plan)
            sources[question.study] = "not run"
        sections.append(lines)
    line = page_line(sections)
    if line:
        parts += [line, ""]
    for lines in sections:
        parts += lines
    page.write_text("\n".join(parts), encoding="utf-8")
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=REPO / "results")
    parser.add_argument("--preset", default=PRESET)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if not args.results_dir.is_dir():
        print(
            f"error: no results folder at {args.results_dir}: pass --results-dir where "
            "`ablate run` wrote the studies' results",
            file=sys.stderr,
        )
        return 2
    from ablate.study.factors import StudyError

    try:
        sources = build(args.results_dir, args.preset)
    except StudyError as error:  # a preset a shipped study lacks
        print(f"error: {error}", file=sys.stderr)
        return 2
    said = {
        kind: [study for study, how in sources.items() if how == kind]
        for kind in ("measured", "kept", "not run")
    }
    print(
        f"wrote {PAGE.relative_to(REPO)} and {len(list(FIGURES.glob('*.png')))} figures; "
        + "; ".join(f"{kind}: {', '.join(names)}" for kind, names in said.items() if names)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
