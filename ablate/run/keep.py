"""A finished trial's kept weights (``keep_weights``), saved beside a sidecar with everything
it takes to rebuild the model without the study file (:mod:`ablate.store.weights`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ablate.components.setup import TrialSetup
from ablate.data import trial_classes
from ablate.store import weights
from ablate.study.plan import PlannedTrial

if TYPE_CHECKING:
    from ablate.run.attempt import AttemptContext


def keep_weights(
    ctx: AttemptContext,
    keep: tuple[str, ...],
    result: Any,
    row: dict[str, Any],
    setup: TrialSetup,
    data: Any,
    device_data: Any,
    planned: PlannedTrial,
) -> None:
    """Save a finished trial's kept weights with a sidecar that rebuilds the model."""
    if not keep:
        return
    folder = ctx.folder.weights
    weights.save_samples(folder, device_data.test_x, device_data.test_y)
    metrics = {
        k: row.get(k)
        for k in (
            "test_acc",
            "test_loss",
            "train_acc",
            "train_eval_acc",
            "val_acc",
            "best_test_acc",
            "best_epoch",
            "best_on",
        )
    }
    base = {
        "model": {"name": setup.model.component.name, "params": dict(setup.model.values)},
        "classes": list(trial_classes(data, setup.settings)),
        "image_size": list(data.train_images.shape[2:]),
        "mean": list(data.mean),
        "std": list(data.std),
        "metrics": metrics,
        "provenance": {
            "study": ctx.plan.name,
            "trial": planned.index,
            "attempt": row["attempt"],
            "seed": planned.seed,
            "cell": planned.cell,
            "preset": ctx.plan.preset,
            "fingerprint": ctx.plan.fingerprint(),
            "dataset": data.name,
            "data_fingerprint": data.fingerprint,
            "init": setup.settings["init"],
            **{k: ctx.provenance[k] for k in ("ablate_version", "torch_version", "git_revision")},
        },
    }
    if "final" in keep:
        weights.save(
            folder,
            planned.index,
            "final",
            result.model.state_dict(),
            {**base, "which": "final", "epoch": row.get("epochs_done")},
        )
    if "best" in keep and result.best_state is not None:
        weights.save(
            folder,
            planned.index,
            "best",
            result.best_state,
            {**base, "which": "best", "epoch": row.get("best_epoch")},
        )
