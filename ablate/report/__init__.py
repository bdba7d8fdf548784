"""``ablate report``: a study's answer, with statistics, plots and one HTML page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablate.folder import StudyFolder
from ablate.report.analysis import Report, analyse, is_sampled
from ablate.report.load import ReportError, StudyResults, list_studies, load

__all__ = ["ReportError", "ReportFiles", "analyse_folder", "build", "list_studies", "write_files"]


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
    journal = StudyFolder(results.folder).journal
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


def analyse_folder(folder: Path, metric: str | None = None) -> tuple[Report, StudyResults]:
    """Read ``folder`` and answer its question; writes nothing."""
    results = load(folder)
    return analyse(results, metric, _importance(results)), results


def write_files(report: Report, results: StudyResults) -> ReportFiles:
    """Write the PNGs and ``report.html`` under ``<folder>/report/`` (atomically; a folder that
    cannot be written raises :class:`ablate.atomic.WriteError` naming the file)."""
    from ablate.atomic import write_text_atomic
    from ablate.report import plots, render

    out = StudyFolder(results.folder).report
    drawn = plots.draw_all(report, results, out)
    page = out / "report.html"
    write_text_atomic(page, render.html_page(report, drawn))
    return ReportFiles(report, results, drawn, page)


def build(folder: Path, metric: str | None = None) -> ReportFiles:
    """Analyse ``folder`` and write its PNGs and ``report.html`` under ``folder/report/``."""
    return write_files(*analyse_folder(folder, metric))
