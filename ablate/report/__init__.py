"""``ablate report``: a study's answer, with statistics, plots and one HTML page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablate.report.analysis import Report, analyse, is_sampled
from ablate.report.load import ReportError, StudyResults, list_studies, load

__all__ = ["ReportError", "ReportFiles", "build", "list_studies"]


@dataclass(frozen=True)
class ReportFiles:
    report: Report
    results: StudyResults
    plots: dict[str, Path]
    html: Path


def _importance(results: StudyResults) -> dict[str, float] | None:
    """Optuna's parameter importance, for studies whose trials were proposed by a sampler."""
    if not is_sampled(results.description):
        return None
    journal = results.folder / "optuna.journal"
    if not journal.is_file():
        return None
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        study = optuna.load_study(study_name=results.description["name"],
                                  storage=JournalStorage(JournalFileBackend(str(journal))))
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError, KeyError):  # too few trials, or one value per parameter
        return None


def build(folder: Path, metric: str | None = None) -> ReportFiles:
    """Analyse ``folder`` and write its PNGs and ``report.html`` under ``folder/report/``."""
    from ablate.report import plots, render
    from ablate.results import write_text_atomic

    results = load(folder)
    report = analyse(results, metric, _importance(results))
    out = folder / "report"
    drawn = plots.draw_all(report, results, out)
    page = out / "report.html"
    write_text_atomic(page, render.html_page(report, drawn))
    return ReportFiles(report, results, drawn, page)
