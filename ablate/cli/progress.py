"""Progress on the terminal: overall trials, and epochs within the running trial.

It is an ordinary plugin object: it follows the run through the same event hooks any plugin
can implement.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ablate import hookimpl
from ablate.events import AttemptState, EpochRecord, TrialInfo, TrialOutcome


class ProgressDisplay:
    """Two rich progress bars fed by the runner and the plugin events."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not enabled,
        )
        self.trials = self.progress.add_task("trials", visible=False)
        self.epochs = self.progress.add_task("epochs", visible=False)

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def log(self, message: str) -> None:
        self.progress.console.print(message, highlight=False)

    def begin(self, total: int, done: int) -> None:
        self.progress.update(self.trials, total=total, completed=done, visible=True)

    @hookimpl
    def on_trial_start(self, trial: TrialInfo) -> None:
        self.progress.update(
            self.epochs,
            total=trial.epochs,
            completed=0,
            visible=True,
            description=f"trial {trial.trial} epochs",
        )

    @hookimpl
    def on_epoch_end(self, trial: TrialInfo, epoch: EpochRecord) -> None:
        test = "diverged" if epoch.test_acc is None else f"test {epoch.test_acc:.1%}"
        self.progress.update(
            self.epochs, completed=epoch.epoch, description=f"trial {trial.trial} epochs ({test})"
        )

    @hookimpl
    def on_trial_end(self, trial: TrialInfo, outcome: TrialOutcome) -> None:
        metrics = outcome.metrics
        if outcome.state.is_result:
            self.progress.advance(self.trials)
        if outcome.state is AttemptState.COMPLETE:
            summary = (
                f"test {metrics['test_acc']:.1%}  train {metrics['train_acc']:.1%}  "
                f"train(eval) {metrics['train_eval_acc']:.1%}"
            )
        elif outcome.state is AttemptState.PRUNED:
            summary = f"pruned after epoch {metrics.get('epochs_done')}; recorded as a result, not retried"
        elif outcome.state is AttemptState.DIVERGED:
            summary = (
                f"diverged in epoch {metrics.get('diverged_epoch')} (loss "
                f"{metrics.get('train_loss')}); recorded as a result, not retried"
            )
        else:
            summary = outcome.state.value
        self.log(f"trial {trial.trial} (seed {trial.seed}, attempt {trial.attempt}): {summary}")
