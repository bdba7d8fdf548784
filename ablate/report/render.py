"""A report as text, Markdown, JSON or one self-contained HTML file."""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ablate.report.analysis import (
    CELL_METRICS,
    DESCRIPTIONS,
    DIVERGED,
    MAIN_EFFECT,
    Report,
    format_value,
)
from ablate.report.stats import Interval

CELL_HEADERS = {"test_acc": "test %", "train_acc": "train % run", "train_eval_acc": "train % eval",
                "gap_running": "gap run", "gap_eval": "gap eval", "swing_test": "swing",
                "best_epoch": "best ep", "seconds": "s", DIVERGED: "diverged %"}
EFFECT_HEADERS = ("factor", "level", "vs", "metric", "diff ± 95% CI", "p", "Holm p", "n")
LEGEND = ("Means over seeds ± the half-width of their 95 % t interval. 'train % run': train accuracy "
          "as seen during training (augmentation and dropout on); 'train % eval': in eval mode on "
          "unaugmented train images; 'gap run' = test - train run; 'gap eval' = train eval - test; "
          "'swing': mean epoch-to-epoch change of test accuracy, up or down, over the second half "
          "of training; accuracies, gaps and swings in percent (points).")


def _interval_text(metric: str, interval: Interval, signed: bool = False) -> str:
    """``mean ± half-width``: t intervals are symmetric, so this is exact and compact."""
    text = format_value(metric, interval.mean, signed)
    if interval.low is None or interval.high is None:
        return text
    return f"{text} ± {format_value(metric, (interval.high - interval.low) / 2)}"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def cell_metrics(report: Report) -> tuple[str, ...]:
    """The cell table's metrics: the share of diverged seeds only when some diverged."""
    return CELL_METRICS + ((DIVERGED,) if any(DIVERGED in c.summary for c in report.cells) else ())


def cell_rows(report: Report) -> list[list[str]]:
    return [[cell.label, str(len(cell.trials)),
             *(_interval_text(m, cell.summary[m]) for m in cell_metrics(report))]
            for cell in report.cells]


def effect_rows(report: Report) -> list[list[str]]:
    rows = []
    for effect in report.effects:
        d = effect.comparison.difference
        rows.append([effect.factor, str(effect.level), str(effect.baseline_level), effect.metric,
                     _interval_text(effect.metric, d, signed=True), _p(effect.comparison.p),
                     _p(effect.comparison.p_holm), str(d.n)])
    return rows


def tables(report: Report) -> list[tuple[str, tuple[str, ...], list[list[str]]]]:
    """The report's tables as (title, headers, rows), in the order every format shows them."""
    main = any(e.cell == MAIN_EFFECT for e in report.effects)
    effects = ("Main effects: each factor's level against its baseline level, averaged over the "
               "other factors, paired by seed" if main else "Effects against the baseline, paired by seed")
    headers = ("cell", "n", *(CELL_HEADERS[m] for m in cell_metrics(report)))
    shown = [("Cells (mean [95% CI] over seeds)", headers, cell_rows(report)),
             (effects, EFFECT_HEADERS, effect_rows(report))]
    if main:
        shown.append(("Confounding: in this fraction each main effect is measured together "
                      "with these two-factor interactions", ("factor", "confounded with"),
                      confounding_rows(report)))
    return shown


def confounding_rows(report: Report) -> list[list[str]]:
    factors = {e.factor: e.aliases for e in report.effects if e.cell == MAIN_EFFECT}
    return [[factor, ", ".join(aliases) or "no two-factor interaction"]
            for factor, aliases in factors.items()]


def to_dict(report: Report, plots: dict[str, Path] | None = None) -> dict[str, Any]:
    """Every number the tables show, as plain JSON-able data."""
    return {
        "study": report.study, "question": report.question, "preset": report.preset,
        "metric": report.metric, "direction": report.direction, "counts": report.counts,
        "verdict": report.verdict, "missing": report.missing,
        "cells": [{"name": c.name, "baseline": c.baseline, "levels": c.levels,
                   "params": c.params, "seeds": sorted(t["seed"] for t in c.trials),
                   "diverged_seeds": c.diverged_seeds,
                   "metrics": {m: asdict(i) for m, i in c.summary.items()}} for c in report.cells],
        "effects": [{"factor": e.factor, "level": e.level, "baseline_level": e.baseline_level,
                     "cell": e.cell, "metric": e.metric,
                     "difference": asdict(e.comparison.difference), "p": e.comparison.p,
                     "p_holm": e.comparison.p_holm, "aliases": list(e.aliases),
                     "diverged_seeds_left_out": list(e.left_out)}
                    for e in report.effects],
        "importance": report.importance,
        "plots": {name: str(path) for name, path in (plots or {}).items()},
        "metric_descriptions": DESCRIPTIONS,
    }


def _headline(report: Report) -> list[str]:
    diverged = report.counts.get("diverged")
    lines = [f"{report.study} (preset {report.preset or '-'}): {report.counts['complete']} "
             f"complete trials{f', {diverged} diverged' if diverged else ''}, "
             f"{report.counts['attempts']} attempts"]
    if report.question:
        lines.append(f"Question: {report.question}")
    return lines


def print_text(report: Report, console: Console) -> None:
    for line in _headline(report):
        console.print(line, highlight=False)
    console.print("\n[bold]Answer[/]")
    for line in report.verdict:
        console.print(f"  - {line}", highlight=False)
    for note in report.missing:
        console.print(f"  [yellow]missing:[/] {note}", highlight=False)
    for title, headers, rows in tables(report):
        table = Table(*headers, title=title)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(LEGEND, style="dim", highlight=False)
    if report.importance:
        console.print("Parameter importance (Optuna): " + ", ".join(
            f"{k} {v:.2f}" for k, v in report.importance.items()), highlight=False)


def _markdown_table(headers: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: Report, plots: dict[str, Path] | None = None) -> str:
    parts = [f"# {report.study}", *_headline(report)[1:], "", "## Answer", ""]
    parts += [f"- {line}" for line in report.verdict]
    parts += [f"- missing: {note}" for note in report.missing]
    for title, headers, rows in tables(report):
        parts += ["", f"## {title}", "", _markdown_table(headers, rows)]
    parts += ["", LEGEND]
    if report.importance:
        parts += ["", "## Parameter importance", ""]
        parts += [f"- {k}: {v:.3f}" for k, v in report.importance.items()]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{name}]({path.name})" for name, path in plots.items()]
    return "\n".join(parts) + "\n"


def _html_table(headers: tuple[str, ...], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;
padding:4px 8px;text-align:left}th{background:#f3f3f3}img{max-width:100%}li{margin:.3em 0}"""


def html_page(report: Report, plots: dict[str, Path]) -> str:
    """One HTML file that opens from disk: styles inline, images embedded as data URIs."""
    escape = html.escape
    verdict = "".join(f"<li>{escape(line)}</li>" for line in report.verdict)
    missing = "".join(f"<li>missing: {escape(note)}</li>" for note in report.missing)
    images = "".join(
        f"<h3>{escape(name.replace('_', ' '))}</h3><img alt='{escape(name)}' "
        f"src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"
        for name, path in plots.items())
    importance = "".join(f"<li>{escape(k)}: {v:.3f}</li>" for k, v in (report.importance or {}).items())
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(report.study)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(report.study)}</h1>"
        + "".join(f"<p>{escape(line)}</p>" for line in _headline(report))
        + f"<h2>Answer</h2><ul>{verdict}{missing}</ul>"
        + "".join(f"<h2>{escape(title)}</h2>" + _html_table(headers, rows)
                  for title, headers, rows in tables(report))
        + f"<p><small>{escape(LEGEND)}</small></p>"
        + (f"<h2>Parameter importance</h2><ul>{importance}</ul>" if importance else "")
        + f"<h2>Plots</h2>{images}</body></html>"
    )


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def to_json(report: Report, plots: dict[str, Path]) -> str:
    """The report as strict JSON (no NaN: a missing number is null)."""
    return json.dumps(_finite(to_dict(report, plots)), indent=2, default=str, allow_nan=False)
