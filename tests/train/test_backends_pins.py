"""Pins on torch internals ablate must set (torch offers no public switch for them): each test
fails when torch renames or drops one, so the change is seen here, not in silently wrong runs."""

from __future__ import annotations

import warnings

import torch

from ablate.train.backends import NONDETERMINISTIC, compiled, nondeterministic_ops


def test_the_compile_switches_ablate_sets_still_exist() -> None:
    import torch._dynamo.config as dynamo
    import torch._inductor.config as inductor

    assert {"recompile_limit", "fail_on_recompile_limit_hit"} <= set(dynamo.get_config_copy())
    assert "deterministic" in inductor.get_config_copy()
    assert callable(torch.compiler.reset)


def test_compiling_sets_inductor_s_determinism_and_refuses_a_silent_fall_back_to_eager() -> None:
    import torch._dynamo.config as dynamo
    import torch._inductor.config as inductor

    saved = (inductor.deterministic, dynamo.fail_on_recompile_limit_hit)
    try:
        compiled(torch.nn.Linear(2, 2), True, "pin-test")
        assert inductor.deterministic and dynamo.fail_on_recompile_limit_hit
        compiled(torch.nn.Linear(2, 2), False, "pin-test")
        assert not inductor.deterministic
    finally:
        inductor.deterministic, dynamo.fail_on_recompile_limit_hit = saved


def test_an_op_without_a_deterministic_kernel_is_named_not_hidden() -> None:
    """torch's own wording under use_deterministic_algorithms(True, warn_only=True); a trial that
    ran such an op is recorded as not deterministic, with the op named."""
    message = (
        f"adaptive_avg_pool2d_backward_cuda {NONDETERMINISTIC}, but you set "
        "'torch.use_deterministic_algorithms(True, warn_only=True)'."
    )
    for _ in range(2):  # every trial hears it, not only the first of the process
        with nondeterministic_ops() as found:
            warnings.warn(message, UserWarning, stacklevel=1)
        assert found == {"adaptive_avg_pool2d_backward_cuda"}
    with warnings.catch_warnings(record=True) as others:
        warnings.simplefilter("always")
        with nondeterministic_ops() as found:
            warnings.warn("something else", UserWarning, stacklevel=1)
    assert not found and [str(w.message) for w in others] == ["something else"]
