"""Stage 5, a study's answer from its results folder: cells, paired contrasts, intervals and
verdicts.

``analyse_folder`` reads the folder and answers its question, writing nothing; the report
(:mod:`ablate.report`) renders what it finds, and the adaptive seed rule
(:mod:`ablate.run.seeds`) reads the widths of its intervals.
"""

from __future__ import annotations

from pathlib import Path

from ablate.analysis.findings import Report, analyse
from ablate.analysis.load import ReportError, StudyResults, is_sampled, list_studies, load
from ablate.store.folder import StudyFolder

__all__ = ["Report", "ReportError", "StudyResults", "analyse_folder", "list_studies"]


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
        study = optuna.load_study(
            study_name=results.description["name"], storage=JournalStorage(JournalFileBackend(str(journal)))
        )
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError, KeyError):  # too few trials, or one value per parameter
        return None


def analyse_folder(folder: Path, metric: str | None = None) -> tuple[Report, StudyResults]:
    """Read ``folder`` and answer its question; writes nothing."""
    results = load(folder)
    return analyse(results, metric, _importance(results)), results
