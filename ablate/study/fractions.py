"""Two-level fractional factorial designs (2^(k-p)) of a given resolution.

A fraction runs 2^m cells instead of 2^k: m "base" factors take every combination and each of
the other k - m factors follows a product (an interaction) of base factors, its *generator*.
A design of resolution R confounds no effect of order i with one of order below R - i: at
resolution III main effects are clear of each other, at IV also of two-factor interactions,
at V two-factor interactions are clear of each other. With levels coded 0 and 1, a product is
the parity of the bits, so the cell where every factor sits at level 0 (the baseline) is
always in the fraction.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

RESOLUTIONS = (3, 4, 5)
MAX_FACTORS = 26  # the textbook's letters a-z; the generator search grows fast beyond


@dataclass(frozen=True)
class Fraction:
    """The chosen fraction: ``rows`` of 0/1 levels, one column per factor, in factor order."""

    base: int
    generators: tuple[frozenset[int], ...]  # per extra factor, the base factors it multiplies

    @property
    def rows(self) -> list[tuple[int, ...]]:
        rows = []
        for run in range(2**self.base):
            bits = tuple((run >> (self.base - 1 - i)) & 1 for i in range(self.base))
            extra = tuple(sum(bits[i] for i in word) % 2 for word in self.generators)
            rows.append(bits + extra)
        return rows


def _still_clear(chosen: list[frozenset[int]], new: frozenset[int], resolution: int) -> bool:
    """Whether adding generator ``new`` to ``chosen`` (already clear) keeps every word of the
    defining relation at ``resolution`` letters or more. A word is a product of generators
    with the generated factors' own letters; only the products that include ``new`` are new."""
    for count in range(len(chosen) + 1):
        for subset in itertools.combinations(chosen, count):
            product = new
            for word in subset:
                product = product ^ word
            if len(product) + count + 1 < resolution:
                return False
    return True


def _generators(
    base: int, extra: int, resolution: int, budget: int = 200_000
) -> tuple[frozenset[int], ...] | None:
    """A depth-first search for ``extra`` generators over ``base`` factors; None if none is
    found within ``budget`` steps. Longer words first: they leave more room to the rest."""
    candidates = [
        frozenset(c)
        for size in range(base, resolution - 2, -1)
        if size >= 2
        for c in itertools.combinations(range(base), size)
    ]
    steps = 0

    def extend(chosen: list[frozenset[int]], start: int) -> list[frozenset[int]] | None:
        nonlocal steps
        if len(chosen) == extra:
            return chosen
        for position in range(start, len(candidates)):
            steps += 1
            if steps > budget:
                return None
            if _still_clear(chosen, candidates[position], resolution):
                found = extend([*chosen, candidates[position]], position + 1)
                if found is not None:
                    return found
        return None

    found = extend([], 0)
    return None if found is None else tuple(found)


def fraction(factors: int, resolution: int) -> Fraction:
    """The smallest 2^(k-p) fraction of ``factors`` two-level factors at ``resolution``."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution}")
    if not 1 <= factors <= MAX_FACTORS:
        raise ValueError(f"a fractional design takes 1 to {MAX_FACTORS} factors, got {factors}")
    for base in range(1, factors + 1):
        if 2**base < factors + 1:  # fewer runs than effects to estimate
            continue
        generators = _generators(base, factors - base, resolution)
        if generators is not None:
            return Fraction(base, generators)
    raise AssertionError("unreachable: the full factorial has no generators")
