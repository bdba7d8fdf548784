"""Stage 7, ``ablate report``: a study's answer (:mod:`ablate.analysis`) as tables
(:mod:`.render`), as text, Markdown, JSON and one HTML page (:mod:`.formats`), with its plots
(:mod:`.plots`: curves over epochs; :mod:`.endpoints`: where training ends; :mod:`.features`:
the best cell's filters and feature maps)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.analysis import Report, ReportError, StudyResults, analyse_folder, list_studies
from ablate.store.folder import StudyFolder

__all__ = ["ReportError", "ReportFiles", "analyse_folder", "build", "list_studies", "write_files"]


@dataclass(frozen=True)
class ReportFiles:
    report: Report
    results: StudyResults
    plots: dict[str, Path]
    html: Path

    @property
    def files(self) -> list[Path]:
        """Every file written: the page, the verdicts as Markdown and JSON, the plots."""
        return [
            self.html,
            self.html.with_name("report.md"),
            self.html.with_name("report.json"),
            *self.plots.values(),
        ]


def write_files(report: Report, results: StudyResults, registry: Any = None) -> ReportFiles:
    """Write the PNGs and ``report.html`` under ``<folder>/report/`` (atomically; a folder that
    cannot be written raises :class:`ablate.base.atomic.WriteError` naming the file).
    ``registry``: the components, to rebuild kept weights for the feature-map figure (the
    report loads no plugins itself; without it that figure is left out)."""
    from ablate.base.atomic import write_text_atomic
    from ablate.report import formats, plots

    out = StudyFolder(results.folder).report
    drawn = plots.draw_all(report, results, out, registry)
    page = out / "report.html"
    write_text_atomic(page, formats.html_page(report, drawn))
    # The verdicts as text and data too, for tools that keep a report (an MLflow run, say).
    write_text_atomic(out / "report.md", formats.markdown(report, drawn))
    write_text_atomic(out / "report.json", formats.to_json(report, drawn) + "\n")
    return ReportFiles(report, results, drawn, page)


def build(folder: Path, metric: str | None = None, registry: Any = None) -> ReportFiles:
    """Analyse ``folder`` and write its PNGs and ``report.html`` under ``folder/report/``."""
    report, results = analyse_folder(folder, metric)
    return write_files(report, results, registry)
