"""A report as text, Markdown, JSON or one self-contained HTML file, from the tables of
:mod:`.render`."""

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

from ablate.analysis.answer import Finding
from ablate.analysis.findings import DESCRIPTIONS, Report
from ablate.analysis.metrics import is_ratio
from ablate.report.render import legend, tables
from ablate.study.factors import MIN_SEEDS


def _finding_dict(finding: Finding) -> dict[str, Any]:
    c, e = finding.contrast, finding.estimate
    interval = finding.interval
    return {
        "label": c.label,
        "kind": c.kind,
        "factor": c.factor,
        "level": c.level,
        "baseline_level": c.baseline_level,
        "condition": dict(c.condition),
        "other": list(c.other) if c.other else None,
        "aliases": list(c.aliases),
        "weights": dict(c.weights),
        "metric": finding.metric,
        "family": finding.family,
        "verdict": finding.verdict,
        "note": finding.note,
        "estimate": None
        if e is None
        else {
            "value": e.value,
            "n": e.n,
            "se": e.se,  # over seeds
            "image_se": e.image_se,  # over test images (null when the trials did not record them)
            "df": e.df,
            "p": e.p,
            "p_sign_flip": e.p_sign_flip,
            "per_seed": list(e.per_seed),
            "ratio": math.exp(e.value) if is_ratio(finding.metric) else None,
        },
        "interval": None
        if interval is None
        else {"confidence": finding.confidence, "low": interval[0], "high": interval[1]},
        "p_adjusted": finding.p_adjusted,
        "detectable": finding.detectable,
        "seeds_to_decide": finding.seeds_to_decide,
        "seeds_for_delta": finding.seeds_for_delta,
        "diverged_seeds_left_out": list(finding.left_out),
    }


def to_dict(report: Report, plots: dict[str, Path] | None = None) -> dict[str, Any]:
    """Every number the tables show, as plain JSON-able data."""
    return {
        "study": report.study,
        "question": report.question,
        "summary": report.summary,
        "preset": report.preset,
        "metric": report.metric,
        "metrics": list(report.metrics),
        "within": list(report.within),
        "delta": report.delta,
        "design": report.design,
        "direction": report.direction,
        "counts": report.counts,
        "answer": report.answer,
        "missing": report.missing,
        "family": {
            "size": report.family_size,
            "rule": report.answer[0] if report.family_size else None,
            "min_seeds": MIN_SEEDS,
            "procedure": "max-T sign-flip test, each comparison with its own variance",
        },
        "swing_epochs": list(report.swing_epochs) if report.swing_epochs else None,
        "best_epoch_chosen_on": report.best_on,
        "ran_on": report.ran_on,
        "cells": [
            {
                "name": c.name,
                "baseline": c.baseline,
                "levels": c.levels,
                "params": c.params,
                "seeds": sorted(t["seed"] for t in c.trials),
                "diverged_seeds": c.diverged_seeds,
                "metrics": {m: asdict(i) for m, i in c.summary.items()},
            }
            for c in report.cells
        ],
        "findings": [_finding_dict(f) for f in report.findings],
        "importance": report.importance,
        "plots": {name: str(path) for name, path in (plots or {}).items()},
        "metric_descriptions": DESCRIPTIONS,
    }


def _headline(report: Report) -> list[str]:
    diverged = report.counts.get("diverged")
    lines = [
        f"{report.study} (preset {report.preset or '-'}): {report.counts['complete']} "
        f"complete trials{f', {diverged} diverged' if diverged else ''}, "
        f"{report.counts['attempts']} attempts"
    ]
    if report.question:
        lines.append(f"Question: {report.question}")
    if report.ran_on:
        lines.append(report.ran_on)
    return lines


def print_text(report: Report, console: Console) -> None:
    for line in _headline(report):
        console.print(line, highlight=False)
    console.print("\n[bold]Short answer[/]")
    for line in report.summary:
        console.print(f"  {line}", highlight=False)
    console.print("\n[bold]Answer[/]")
    for line in report.answer:
        console.print(f"  - {line}", highlight=False)
    for note in report.missing:
        console.print(f"  [yellow]missing:[/] {note}", highlight=False)
    for title, headers, rows in tables(report, brief=True):
        table = Table(*headers, title=title)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(legend(report), style="dim", highlight=False)
    console.print(
        "Exploratory rows for the other metrics: --format markdown, html or json.",
        style="dim",
        highlight=False,
    )
    if report.importance:
        console.print(
            "Parameter importance (Optuna): "
            + ", ".join(f"{k} {v:.2f}" for k, v in report.importance.items()),
            highlight=False,
        )


def markdown_table(headers: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


FIRST = ("forest", "waterfall")  # the figures of the answer, shown under the short answer


def markdown(report: Report, plots: dict[str, Path] | None = None) -> str:
    parts = [f"# {report.study}", *_headline(report)[1:], "", "## Short answer", ""]
    parts += [" ".join(report.summary)]
    for name in FIRST:  # the answer's figures, right under it
        if plots and name in plots:
            parts += ["", f"![{name}]({plots[name].name})"]
    parts += ["", "## Answer", ""]
    parts += [f"- {line}" for line in report.answer]
    parts += [f"- missing: {note}" for note in report.missing]
    for title, headers, rows in tables(report):
        parts += ["", f"## {title}", "", markdown_table(headers, rows)]
    parts += ["", legend(report)]
    if report.importance:
        parts += ["", "## Parameter importance", ""]
        parts += [f"- {k}: {v:.3f}" for k, v in report.importance.items()]
    if plots:
        parts += ["", "## Plots", ""] + [
            f"![{name}]({path.name})" for name, path in plots.items() if name not in FIRST
        ]
    return "\n".join(parts) + "\n"


def _html_table(headers: tuple[str, ...], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;
padding:4px 8px;text-align:left}th{background:#f3f3f3}img{max-width:100%}li{margin:.3em 0}
details{margin:.6em 0}summary{font-weight:600;font-size:110%;cursor:pointer}"""


def html_page(report: Report, plots: dict[str, Path]) -> str:
    """One HTML file that opens from disk: styles inline, images embedded as data URIs."""
    escape = html.escape
    answer = "".join(f"<li>{escape(line)}</li>" for line in report.answer)
    missing = "".join(f"<li>missing: {escape(note)}</li>" for note in report.missing)

    def image(name: str, path: Path) -> str:
        data = base64.b64encode(path.read_bytes()).decode()
        return f"<img alt='{escape(name)}' src='data:image/png;base64,{data}'>"

    images = "".join(
        f"<h3>{escape(name.replace('_', ' '))}</h3>{image(name, path)}"
        for name, path in plots.items()
        if name not in FIRST
    )
    forest = "".join(image(name, plots[name]) for name in FIRST if name in plots)
    summary = "".join(f"<p>{escape(line)}</p>" for line in report.summary)
    importance = "".join(f"<li>{escape(k)}: {v:.3f}</li>" for k, v in (report.importance or {}).items())
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(report.study)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(report.study)}</h1>"
        + "".join(f"<p>{escape(line)}</p>" for line in _headline(report))
        + f"<h2>Short answer</h2>{summary}{forest}"
        + f"<h2>Answer</h2><ul>{answer}{missing}</ul>"
        + "".join(  # the tables folded: the answer comes first, the evidence on request
            f"<details><summary>{escape(title)}</summary>" + _html_table(headers, rows) + "</details>"
            for title, headers, rows in tables(report)
        )
        + f"<p><small>{escape(legend(report))}</small></p>"
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
