"""Stage 4, one trial trained: the loop (:mod:`.trainer`) and its epoch (:mod:`.epoch`), where
the images live (:mod:`.placement`, :mod:`.datasets`), the training state and its checkpoints
(:mod:`.state`, :mod:`.checkpoints`), where the model starts (:mod:`.init`), and the numerical
switches it runs under (:mod:`.backends`, :mod:`.precision`, :mod:`.allocator`,
:mod:`.step_memory`)."""

from ablate.train.epoch import prepare_batch, step_scheduler, train_epoch, train_step
from ablate.train.placement import DeviceData, trial_data
from ablate.train.precision import resolve_precision
from ablate.train.state import build_state
from ablate.train.trainer import TrialResult, fit

__all__ = [
    "DeviceData",
    "TrialResult",
    "build_state",
    "fit",
    "prepare_batch",
    "resolve_precision",
    "step_scheduler",
    "train_epoch",
    "train_step",
    "trial_data",
]
