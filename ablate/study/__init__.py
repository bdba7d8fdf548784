"""Stage 1, the question: a study file's declaration (:mod:`.declare`, :mod:`.factors`), the
trainer settings it may set (:mod:`.settings`), loading it by path (:mod:`.load`), and the plan a
preset resolves it to, with the fingerprint that says what its results mean (:mod:`.plan`,
:mod:`.fractions`)."""

from ablate.study.declare import Preset, Study
from ablate.study.factors import (
    choice,
    fractional,
    integer,
    leave_one_out,
    path,
    sampler,
    uniform,
    until,
)

__all__ = [
    "Preset",
    "Study",
    "choice",
    "fractional",
    "integer",
    "leave_one_out",
    "path",
    "sampler",
    "uniform",
    "until",
]
