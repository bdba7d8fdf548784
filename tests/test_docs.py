"""The documentation holds: the plugin guide runs as written, every hook, command, setting and
results column is on the site (generated from the code), the README stays the front door, and the
findings page is rebuilt from the results folders."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from ablate import hookspecs
from tests.conftest import REPO, run_smoke

README = REPO / "README.md"
DOCS = REPO / "docs"
GUIDE = DOCS / "plugins.md"


def reference() -> types.ModuleType:
    """docs/reference.py, the generator of the site's reference parts (an MkDocs hook)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def guide_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block in the guide's "Writing a plugin" section."""
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index("## Writing a plugin")
    section = text[start : text.index("\n## ", start)]
    return [
        (language, textwrap.dedent(code))
        for language, code in re.findall(r"```(\w+)\n(.*?)^\s*```", section, re.S | re.M)
    ]


def test_every_block_of_the_plugin_guide_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin module block becomes the module ``my_plugin``; the others run after it."""
    blocks = guide_blocks()
    assert [language for language, _ in blocks] == ["toml", "python", "python"]
    tomllib = pytest.importorskip("tomllib")
    entry_points = tomllib.loads(blocks[0][1])["project"]["entry-points"]["ablate"]
    assert entry_points == {"my_plugin": "my_plugin"}
    module = types.ModuleType("my_plugin")
    monkeypatch.setitem(sys.modules, "my_plugin", module)
    exec(compile(blocks[1][1], "docs/plugins.md (plugin module)", "exec"), module.__dict__)
    exec(compile(blocks[2][1], "docs/plugins.md (test kit)", "exec"), {"__name__": "guide_test"})


def _signatures() -> list[str]:
    hooks = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith(("register_", "on_"))]
    return [f"{hook.__name__}({', '.join(inspect.signature(hook).parameters)})" for hook in hooks]


def test_every_hook_is_explained_in_the_guide_and_listed_by_its_signature() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    generated = reference().hooks()
    for signature in _signatures():
        assert f"`{signature}`" in text, f"docs/plugins.md does not explain {signature}"
        assert f"### `{signature}`" in generated, f"the hooks reference lacks {signature}"


def test_the_reference_pages_are_generated_from_everything_they_describe() -> None:
    """Each generator covers every item of its source, and each marker has a generator."""
    import typer

    from ablate.cli.app import with_plugin_commands
    from ablate.store.schema import CLASS_FIELDS, EPOCH_FIELDS, TRIAL_FIELDS
    from ablate.study.settings import SETTINGS

    docs = reference()
    cli = docs.cli()
    group = typer.main.get_command(with_plugin_commands())
    context = group.context_class(group, info_name="ablate")  # type: ignore[attr-defined]
    for name in group.list_commands(context):  # type: ignore[attr-defined]
        assert f"### ablate {name}" in cli, name
        for param in group.get_command(context, name).params:  # type: ignore[attr-defined]
            for spelled in [] if getattr(param, "hidden", False) else getattr(param, "opts", []):
                if spelled.startswith("--") and spelled != "--help":
                    assert f"`{spelled}" in cli, f"ablate {name} {spelled}"
    settings = docs.settings()
    assert all(f"| `{s.name}` |" in settings for s in SETTINGS)
    for fields, table in (
        (TRIAL_FIELDS, docs.trials()),
        (EPOCH_FIELDS, docs.epochs()),
        (CLASS_FIELDS, docs.classes()),
    ):
        assert all(f"| `{c.name}` |" in table and c.meaning for c in fields)
    markers = {m for page in DOCS.glob("*.md") for m in docs.MARKER.findall(page.read_text())}
    assert markers == set(docs.GENERATORS), "a generator no page uses, or a marker without one"
    assert "<!-- generated" not in docs.expand((DOCS / "results.md").read_text())


def test_every_exit_status_and_public_module_is_documented() -> None:
    from ablate.errors import ExitCode
    from tests.test_layout import PUBLIC

    exits = (DOCS / "cli.md").read_text()
    assert all(f"\n| {code.value} |" in exits for code in ExitCode), "docs/cli.md's exit table"
    guide = GUIDE.read_text()
    assert all(f"| `{module}` |" in guide for module in PUBLIC), "docs/plugins.md's public API"


def test_the_readme_is_the_front_door() -> None:
    """At most about 200 lines, opening with the two commands, every link to a page that exists."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    commands = [line.strip() for line in text.splitlines() if line.startswith("    ")][:2]
    assert commands == [
        "pip install -e . && ablate run studies/dropout_gap.py",
        "pip install -e '.[test]' && pytest",
    ]
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (REPO / target).exists(), f"README links to {target}, which is not there"
    listed = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.MULTILINE))
    shipped = {path.stem for path in (REPO / "studies").glob("*.py") if not path.stem.startswith("_")}
    assert shipped - {"pretrain_source"} <= listed, f"the README's table leaves out {shipped - listed}"


def findings_builder() -> types.ModuleType:
    """docs/findings/build.py, loaded as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("findings_build", REPO / "docs" / "findings" / "build.py")
    assert spec is not None and spec.loader is not None
    findings = importlib.util.module_from_spec(spec)
    sys.modules["findings_build"] = findings  # dataclasses look their module up there
    try:
        spec.loader.exec_module(findings)
    finally:
        del sys.modules["findings_build"]
    return findings


def test_a_section_kept_from_before_the_current_rules_says_so() -> None:
    findings = findings_builder()
    old = ["## Q", "", "Measured: 30 of 30 planned trials.", "", "**Answer**", "- decided"]
    marked = findings.mark_earlier_rules(old)
    assert marked[:4] == [*old[:3], ""] and marked[4] == findings.EARLIER_RULES
    assert findings.mark_earlier_rules(marked) == marked  # once
    current = [
        "## Q",
        "Measured: 1 of 1.",
        "",
        "- Family: 2 hypotheses (...), decided together at family-wise level 0.05 by ...",
    ]
    assert findings.mark_earlier_rules(current) == current
    # A mark of older rules gives way to the current one, with no blank lines left behind.
    older = [*old[:3], "", "*Built under earlier verdict rules: before the short answer.*", *old[3:]]
    assert findings.mark_earlier_rules(older) == marked
    page = (REPO / "docs" / "findings.md").read_text()
    sections = page.split("\n## ")[1:]
    assert all(
        (findings.CURRENT_RULES in s) != (findings.EARLIER_RULES in s) for s in sections if "Measured:" in s
    )


def test_the_findings_page_is_rebuilt_from_the_results_folders(tmp_path: Path) -> None:

    import torch

    from ablate.train.precision import cpu_name

    run_smoke(tmp_path / "results")
    findings = findings_builder()
    page, figures = tmp_path / "findings.md", tmp_path / "figures"
    findings.build(tmp_path / "results", "smoke", page, figures)
    text = page.read_text()
    gap = text.split("## ")[1]  # dropout_gap's section: measured, with its Answer and figures
    assert "Measured: 18 of 18 planned trials" in gap and "**Answer**" in gap
    assert findings.CURRENT_RULES in gap and findings.EARLIER_RULES not in gap  # made by these rules
    # The short answer and the forest plot come before the Answer's list and the tables.
    assert gap.index("**Short answer.** ") < gap.index("dropout_gap-forest.png") < gap.index("**Answer**")
    # The study line above it names the preset: the short answer does not repeat it.
    assert "Preset `smoke`" not in gap.split("**Short answer.** ")[1].split("\n")[0]
    assert f"Ran on cpu ({cpu_name()}, " in gap  # the machine: its numerics differ (bf16 or not)
    assert f" with torch {torch.__version__}, in " in gap  # precision differs by machine
    assert "ablate run studies/dropout_gap.py --preset smoke" in gap
    drawn = sorted(figures.glob("dropout_gap-*.png"))
    assert drawn and all(0 < p.stat().st_size < findings.MAX_FIGURE_BYTES for p in drawn)
    assert all(f"figures/{p.name}" in gap for p in drawn)
    # Every other shipped question has its section, saying it has not run at this scale.
    assert text.count("**Not run yet at this scale**") == len(findings.QUESTIONS) - 1
    # Rebuilt where only other studies' folders are at hand, the measured section and its
    # figures stay as they were: the studies run on different machines.
    sources = findings.build(tmp_path / "elsewhere", "smoke", page, figures)
    assert page.read_text() == text and sorted(figures.glob("dropout_gap-*.png")) == drawn
    assert sources["dropout_gap"] == "kept" and sources["schedule"] == "not run"
    # A page of another preset never takes in that smoke section as its own.
    sources = findings.build(tmp_path / "elsewhere", "cpu", page, figures)
    assert sources["dropout_gap"] == "not run" and "Measured:" not in page.read_text()
    # Careless input to the script ends in one line, exit 2, and leaves the page alone.
    before = findings.PAGE.read_bytes()
    script = [sys.executable, str(REPO / "docs" / "findings" / "build.py")]
    for args, named in (
        (["--results-dir", str(tmp_path / "nowhere")], "no results folder at"),
        (["--preset", "huge"], "has no preset 'huge'"),
    ):
        done = subprocess.run(script + args, capture_output=True, text=True)
        assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert findings.PAGE.read_bytes() == before


def test_the_repository_holds_no_results(tmp_path: Path) -> None:
    """Results folders are outputs: a tracked journal or Parquet file (one was committed once,
    under ``s3:/``, by a results location that was taken for a local folder) fails here."""
    import shutil

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing tracked to check")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    shipped_data = "ablate_plugins/data/"  # the CIFAR-10 subset inside the package is data, not results
    results = [
        path
        for path in tracked
        if not path.startswith(shipped_data)
        and path.endswith((".parquet", ".journal", ".pt", ".safetensors"))
    ]
    assert results == []


def test_the_findings_say_what_the_verdicts_imply_only_when_they_support_it() -> None:
    """resume_jump: the jump is the rate restarting only when starting the schedule over is
    decided and losing the momentum is not; pretraining: the first epoch's gap, per start."""
    from types import SimpleNamespace

    from ablate.analysis.answer import DECIDED, UNDECIDED, Finding
    from ablate.analysis.contrasts import Contrast
    from ablate.analysis.stats import Interval, estimate_of

    findings = findings_builder()

    def jump(mode: str, value: float, verdict: str) -> Finding:
        contrast = Contrast("against the baseline", "resume", mode, "none", {mode: 1.0, "none": -1.0})
        estimate = estimate_of([value + d for d in (-0.01, 0.0, 0.01)], [0, 1, 2])
        return Finding(contrast, "jump_test@1", estimate, True, half_width=0.02, verdict=verdict)

    report = SimpleNamespace(
        findings=[jump("weights_scheduler", 0.004, UNDECIDED), jump("weights_only", -0.047, DECIDED)]
    )
    said = findings.resume_said(report)
    assert "by at most +0.4 points [-1.6, +2.4] (undecided, jump_test@1)" in said
    assert "(`weights_only`) by -4.7 [-6.7, -2.7] (decided" in said
    assert said.endswith("not from the lost momentum.")
    report.findings[0].verdict = DECIDED  # the momentum matters too: no such claim
    assert "not from the lost momentum" not in findings.resume_said(report)
    assert findings.resume_said(SimpleNamespace(findings=report.findings[:1])) is None

    def cell(init: str, dropout: float, gap: Interval) -> SimpleNamespace:
        return SimpleNamespace(levels={"init": init, "dropout": dropout}, summary={"gap_running_first": gap})

    cells = [
        cell("scratch", 0.0, Interval(-0.03, -0.05, -0.01, 6)),
        cell("pretrained", 0.0, Interval(0.24, 0.22, 0.26, 6)),
        cell("pretrained", 0.5, Interval(0.30, 0.28, 0.32, 6)),
    ]
    said = findings.pretraining_said(SimpleNamespace(cells=cells))
    assert said == (
        "Without dropout, from scratch test accuracy ends the first epoch 3.0 points below the "
        "running train accuracy (95 % interval -5.0 to -1.0); from the `pretrained` weights test accuracy "
        "ends the first epoch 24.0 points above the running train accuracy (95 % interval +22.0 to +26.0)."
    )
    cells[0] = cell("scratch", 0.0, Interval(-0.038, -0.107, 0.031, 6))  # the interval covers zero
    said = findings.pretraining_said(SimpleNamespace(cells=cells))
    assert said.startswith(
        "Without dropout, from scratch test accuracy after the first epoch is not shown to differ "
        "from the running train accuracy (-3.8 points, 95 % interval -10.7 to +3.1); "
    )

    # architecture: the study's own question (C3 against the residual block), per augmentation.
    from ablate.analysis.contrasts import ASKED

    def c3(augment: str, value: float, verdict: str) -> Finding:
        weights = {f"c3,{augment}": 1.0, f"r18,{augment}": -1.0}
        contrast = Contrast(ASKED, "model", "resnet_c3", "resnet18", weights, {"augment": augment})
        estimate = estimate_of([value + d for d in (-0.01, 0.0, 0.01)], [0, 1, 2])
        return Finding(contrast, "test_acc", estimate, True, half_width=0.02, verdict=verdict)

    params = [
        SimpleNamespace(levels={"model": m}, summary={"model_params": Interval(n, n, n, 6)})
        for m, n in (("resnet18", 176402), ("resnet_c3", 64338))
    ]
    asked = [c3("none", -0.023, DECIDED), c3("crop_flip", -0.042, DECIDED)]
    report = SimpleNamespace(findings=asked, cells=params)
    assert findings.architecture_said(report) == (
        "Test accuracy with `resnet_c3` in place of `resnet18` (the same layout, with 64,338 "
        "parameters against 176,402): 2.3 points lower with augment = none [-4.3, -0.3] (decided); "
        "4.2 points lower with augment = crop_flip [-6.2, -2.2] (decided). At this width and budget "
        "the C3 block did not match the residual block it replaces."
    )
    report.findings[1] = c3("crop_flip", 0.005, UNDECIDED)  # one open verdict: no conclusion
    said = findings.architecture_said(report)
    assert "not shown to differ with augment = crop_flip (+0.5 [-1.5, +2.5], undecided)." in said
    assert "At this width" not in said
    assert findings.architecture_said(SimpleNamespace(findings=[], cells=params)) is None


def test_a_path_s_findings_name_the_steps_that_cost_and_a_setting_that_changes_sign() -> None:
    from types import SimpleNamespace

    from ablate.analysis.answer import DECIDED, EXPLORATORY, UNDECIDED, Finding
    from ablate.analysis.contrasts import Contrast
    from ablate.analysis.paths import ALONE, STEP
    from ablate.analysis.stats import estimate_of

    findings = findings_builder()

    def found(kind: str, setting: str, value: float, verdict: str) -> Finding:
        contrast = Contrast(kind, setting, "new", "old", {"a": 1.0, "b": -1.0})
        estimate = estimate_of([value + d for d in (-0.01, 0.0, 0.01)], [0, 1, 2])
        return Finding(contrast, "test_acc", estimate, kind == STEP, half_width=0.01, verdict=verdict)

    steps = [found(STEP, "model", 0.09, DECIDED), found(STEP, "batch", -0.10, DECIDED)]
    steps += [found(STEP, "rate", 0.12, DECIDED), found(STEP, "augment", -0.02, UNDECIDED)]
    alone = [found(ALONE, "rate", -0.29, EXPLORATORY), found(ALONE, "batch", -0.20, EXPLORATORY)]
    said = findings.path_said(SimpleNamespace(findings=steps + alone, metric="test_acc"))
    assert said == (
        "Not every change of the target helps where the path took it: batch -10.0 [-11.0, -9.0] "
        "points lower test_acc there. The rate step changes sign with the recipe: -29.0 [-30.0, "
        "-28.0] points alone from the source (an exploratory interval), +12.0 [+11.0, +13.0] "
        "where the path took it, after model, batch."
    )  # augment is undecided, batch keeps its sign alone: neither is named beyond that
    assert findings.path_said(SimpleNamespace(findings=steps[:1] + alone, metric="test_acc")) is None


def test_the_page_counts_its_families_and_their_verdicts_under_benjamini_hochberg() -> None:
    findings = findings_builder()
    record = findings.FAMILY_RECORD
    sections = [
        ["## a", f"{record}0.03125* 0.03125* 0.5 -->"],
        ["## b", f"{record}0.001* 0.6 0.7 -->"],
        ["## c", "Measured: kept from earlier rules"],
    ]
    line = findings.page_line(sections)
    # 6 hypotheses: BH at 0.05 keeps p(k) <= k x 0.05 / 6: 0.001 (k = 1) passes, 0.03125 fails
    # at k = 2 and 3 (0.0167, 0.025): one of the three decided verdicts holds across the page.
    assert line == (
        "The page is 3 families, not one. Across the 2 measured under the current rules (6 "
        "hypotheses with an exact test), 1 of the 3 verdicts decided within their family also hold "
        "under Benjamini-Hochberg at 0.05 over all of them; the other section is kept from "
        "earlier rules or not run, and not counted."
    )
    assert findings.page_line([["## c"]]) == ""
    # Where every decided p is at the 6-seed floor, the line says more seeds would change it.
    floor = findings.page_line([["## a", f"{record}0.031* 0.031* 0.5 0.6 0.7 0.8 -->"]])
    assert "0 of the 2 verdicts" in floor and "nothing much below 2/64 = 0.031" in floor
    assert "more seeds per study would let it pass)." in floor
    # A kept section's typed words (its practical paragraph, its study's description) are the
    # current ones; what was measured stays.
    question = findings.QUESTIONS[0]
    head = ["## q", "", "Study `studies/dropout_gap.py`, preset `mid`: now this.", ""]
    old = [
        "Study `studies/dropout_gap.py`, preset `mid`: about an hour, sized to decide: ...",
        "Measured: ...",
        f"{findings.SHORT}Decided: a. Still open: b. Preset `mid`: about an hour, sized to decide: ...",
        f"{findings.MEANING}the cure is a schedule",
        "- x raises test_acc by 2.3 points [...], 2 of 6 seeds agree (4 identical), n = 6: undecided.",
        "<!-- family p: 0.5 -->",
    ]
    named = "Study `studies/dropout_gap.py`, preset `mid`"
    assert findings.refresh_typed(old, question, head, named) == [
        "Study `studies/dropout_gap.py`, preset `mid`: now this.",
        "Measured: ...",
        f"{findings.SHORT}Decided: a. Still open: b.",  # the study line says the preset, as it is now
        findings.MEANING + question.meaning,
        "- x raises test_acc by 2.3 points [...], 2 of 6 seeds agree (4 tied), n = 6: undecided.",
        "<!-- family p: 0.5 -->",
    ]


def test_the_sized_line_gives_points_for_accuracies_and_factors_for_ratios() -> None:
    """A swing's detectable effect is a log ratio: shown as a factor, never as "219.6 points"."""
    import math
    from types import SimpleNamespace

    findings = findings_builder()

    def finding(metric: str, detectable: float) -> SimpleNamespace:
        return SimpleNamespace(family=True, detectable=detectable, metric=metric)

    report = SimpleNamespace(
        findings=[
            finding("gap_running", 0.022),
            finding("gap_eval", 0.19),
            finding("swing_test", math.log(1.77)),
        ]
    )
    assert findings.sized(report) == (
        " Sized to detect effects of 2.2 to 19.0 points and factors of x1.77 (80 % power at these "
        "seeds, by comparison)."
    )
