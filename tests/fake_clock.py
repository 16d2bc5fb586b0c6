"""A deterministic clock for `sparsenet.timing`, and layers whose work costs fake seconds on it.

Pass ``timer=clock`` and ``sleep=clock.sleep`` to anything that times code; make work cost fake
seconds with `FakeClock.work` (a ready-made candidate) or with the metered layers below (a real
forward pass, then fake seconds by the weight's format). `log` records, in order, every call made
through them (a name or a format spec) and ``("sleep", s)`` for every sleep, so a test can check
what ran and when. Copies of a model (deepcopy) keep the one clock, as they would the real one.
"""

from __future__ import annotations

import numpy as np

from sparsenet.nn import Conv2d, Linear, Sequential


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.log: list = []

    def __call__(self) -> float:
        return self.now

    def __deepcopy__(self, memo):
        return self

    def sleep(self, seconds: float) -> None:
        self.log.append(("sleep", seconds))
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def work(self, name: str, cost):
        """A function of no arguments that logs `name` and costs `cost` seconds per call: a number,
        or a list consumed one entry per call (call 0 first: warm-up and calibration included)."""
        costs = iter(cost) if isinstance(cost, (list, tuple)) else None

        def fn():
            self.log.append(name)
            self.now += next(costs) if costs is not None else cost
        return fn

    def calls(self) -> list[str]:
        """The logged calls without the sleeps."""
        return [e for e in self.log if isinstance(e, str)]


class _Metered:
    """Layer mix-in: each forward runs for real, then costs fake seconds on `clock` by the weight's
    format spec (e.g. 'csr'): `cost` is {spec: seconds} or a function of the spec. The spec is
    logged on the clock; `calls`, if given, records each call (spec, layer, nbytes, shape, dtype)."""

    def meter(self, clock, cost, calls=None):
        self.clock, self.cost, self.calls = clock, cost, calls
        return self

    def lower(self, builder, inputs):  # in a plan, a generic step: its (metered) forward runs
        return builder.generic(self, inputs)

    def forward(self, x):
        out = super().forward(x)
        spec = self.weight.spec
        if self.calls is not None:
            self.calls.append(dict(spec=spec, layer=self.name, nbytes=self.weight.nbytes, shape=np.shape(x),
                                   dtype=np.asarray(x).dtype))
        self.clock.log.append(spec)
        self.clock.advance(self.cost(spec) if callable(self.cost) else self.cost[spec])
        return out


class MeteredLinear(_Metered, Linear):
    pass


class MeteredConv2d(_Metered, Conv2d):
    pass


class MeteredSequential(Sequential):
    """A model whose forward costs `cost(model)` fake seconds in all, whatever its layers cost alone:
    layers can interact in a model (BLAS and Numba threads competing for the cores)."""

    def meter(self, clock, cost):
        self.clock, self.cost = clock, cost
        return self

    def lower(self, builder, inputs):  # in a plan, one generic step: the metered forward below
        return builder.generic(self, inputs)

    def forward(self, x):
        start = self.clock.now
        out = super().forward(x)
        self.clock.now = start + self.cost(self)
        return out
