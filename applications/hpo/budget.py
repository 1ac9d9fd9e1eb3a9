"""The wall-clock budget every search method runs under.

Methods are compared at equal wall time, so the clock must count the same things for all of them:
inner training, hypergradients, trial evaluations on the validation set. Reporting work that no
method needs to make its decisions (test-set metrics, history bookkeeping) runs inside
:meth:`Budget.paused` and is not charged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Budget:
    """A stopwatch with a limit in seconds and an optional cap on the number of steps.

    Args:
        seconds: Wall-clock allowance; a method stops starting new steps once it is spent, and a step
            under way stops inside its inner solve or hypergradient (:meth:`time_up`).
        max_steps: Optional cap on steps (outer steps or trials), e.g. for quick tests.

    Example:
        >>> budget = Budget(30.0)
        >>> while not budget.exhausted(step):
        ...     work()
        ...     with budget.paused():
        ...         report()
    """

    def __init__(self, seconds: float, max_steps: int | None = None) -> None:
        self.seconds = seconds
        self.max_steps = max_steps
        self._start = time.perf_counter()
        self._paused_total = 0.0

    def elapsed(self) -> float:
        """Seconds charged so far (wall time minus paused time)."""
        return time.perf_counter() - self._start - self._paused_total

    def exhausted(self, steps_done: int) -> bool:
        """Whether no further step may start after ``steps_done`` steps."""
        if self.max_steps is not None and steps_done >= self.max_steps:
            return True
        return self.time_up()

    def time_up(self) -> bool:
        """Whether the seconds are spent: what inner solves and hypergradients ask between their iterations
        (their ``should_stop``), so that one long step cannot carry a run far past its budget."""
        return self.elapsed() >= self.seconds

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Run the enclosed block without charging its time to the budget."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._paused_total += time.perf_counter() - start
