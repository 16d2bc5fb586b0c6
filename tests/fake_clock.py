"""A deterministic clock for `sparsenet.timing`: time passes only when a test says so.

Pass ``timer=clock`` and ``sleep=clock.sleep`` to anything that times code; make work cost fake
seconds with `work` (a ready-made candidate) or `advance` (from inside a test's own layer).
`log` records, in order, the name of every call made through `work` and ``("sleep", s)`` for every
sleep, so a test can check what ran and when.
"""

from __future__ import annotations


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.log: list = []

    def __call__(self) -> float:
        return self.now

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
