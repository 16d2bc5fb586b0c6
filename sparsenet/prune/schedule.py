"""Schedules: plain functions from a step (or round) to a target sparsity."""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["iterative_targets", "polynomial_sparsity", "pruning_steps", "SCHEDULES"]

SCHEDULES = ("oneshot", "iterative", "gradual", "lottery")


def iterative_targets(final: float, rounds: int) -> list[float]:
    """Targets of `rounds` prune -> fine-tune rounds, each pruning the same fraction of what remains
    (Han et al. 2015): s_r = 1 - (1 - final)^(r / rounds). The last one is `final` exactly."""
    if rounds < 1:
        raise ConfigError(f"iterative schedule: expected rounds >= 1, found {rounds}")
    targets = [1.0 - (1.0 - final) ** (r / rounds) for r in range(1, rounds + 1)]
    targets[-1] = float(final)
    return targets


def polynomial_sparsity(step: int, *, initial: float, final: float, begin: int, steps: int,
                        frequency: int, power: int = 3) -> float:
    """Gradual pruning (Zhu & Gupta 2017): s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n Δt))^3 for
    t in [t0, t0 + n Δt], held constant between pruning steps (every Δt = `frequency` steps)."""
    if steps < 1 or frequency < 1:
        raise ConfigError(f"gradual schedule: expected steps >= 1 and frequency >= 1, found {steps}, {frequency}")
    if step < begin:
        return 0.0
    t = min(((step - begin) // frequency) * frequency, steps * frequency)
    return final + (initial - final) * (1.0 - t / (steps * frequency)) ** power


def pruning_steps(begin: int, steps: int, frequency: int) -> list[int]:
    """The steps t0, t0 + Δt, ..., t0 + n Δt at which a gradual schedule prunes."""
    return [begin + i * frequency for i in range(steps + 1)]
