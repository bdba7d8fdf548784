"""The CPU allocator tuning: freed activations stay in the process, so steps stop page-faulting."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from ablate.train.allocator import keep_freed_memory

STEPS = """
import resource, sys, torch
from ablate.train.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
torch.manual_seed(0)
torch.set_num_threads(1)
# 40 MiB activations: above glibc's largest dynamic mmap threshold (32 MiB). With smaller ones
# glibc may learn from earlier frees to keep them in the heap, and the untuned count then
# swings between hundreds and tens of thousands of faults from run to run.
model = torch.nn.Sequential(torch.nn.BatchNorm2d(40), torch.nn.ReLU(), torch.nn.BatchNorm2d(40))
images = torch.randn(64, 40, 64, 64, requires_grad=True)
def step():
    model(images).sum().backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc")


def faults_per_step(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True, timeout=120
    )
    return float(done.stdout.split()[-1])


@pytest.mark.slow
@glibc_only
def test_tuned_steps_reuse_freed_memory_instead_of_faulting_it_back() -> None:
    plain, tuned = faults_per_step("plain"), faults_per_step("tuned")
    # Untuned, every step faults its activations back in (thousands of pages).
    assert plain > 1000
    # Tuned, they stay in the heap: none here when the machine is quiet. A kernel that reclaims
    # idle pages on its own (DAMON runs on this project's machines) takes back up to about a
    # seventh of them between steps when it is busy, hence the margin.
    assert tuned < plain / 4


@glibc_only
def test_tuning_applies_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every trial asks for the tuning; glibc is told once (the page-fault test above checks
    that what it is told takes effect)."""
    import ablate.train.allocator as allocator

    calls: list[bool] = []
    real_tune = allocator._tune_glibc

    def tune() -> bool:
        calls.append(real_tune())
        return calls[-1]

    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator, "_tune_glibc", tune)
    assert [keep_freed_memory() for _ in range(3)] == [True] * 3
    assert calls == [True]
