"""Logic written once for a sync and an async shell: a generator of steps, and its drivers.

Layer: ``upstream`` (the shells' half of the sans-IO pattern).

A method whose decisions need I/O half-way (a grant, then a verification; a poll, then a
sleep) is written once, as a generator that **yields** each piece of I/O as a
zero-argument callable (``partial(client.refresh, token)``) and is sent its result back,
or has its exception thrown in at the ``yield`` (any exception, a cancellation included,
so that the generator's ``finally`` blocks run at once). Its return value is the method's.
:func:`run` drives it in a sync shell; :func:`arun` in an async one, awaiting what a step
returns when it is awaitable. A step wrapped in :class:`Blocking` (a file, a keyring) is
called as is by :func:`run` and in a worker thread by :func:`arun`, so that it never
blocks an event loop. The drivers decide nothing: they call, await, and hand back.

"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import anyio.to_thread

__all__ = ["AwaitableInSyncShell", "Blocking", "Step", "Steps", "arun", "run"]

T = TypeVar("T")

#: One piece of I/O: called without arguments; its result (or exception) goes back in.
Step = Callable[[], Any]
#: A generator of steps whose return value is ``T``.
Steps = Generator[Step, Any, T]


class Blocking:
    """A step that blocks (a file, a keyring): :func:`arun` runs it in a worker thread."""

    __slots__ = ("call",)

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call

    def __call__(self) -> Any:
        return self.call()


class AwaitableInSyncShell(TypeError):
    """A step (``authorize``, an access check) returned an awaitable where nothing can
    await it: the awaitable is closed, never run, and this is thrown in its place."""


class _Drive:
    """Where a generator of steps stands: what goes back in next, and its return value."""

    __slots__ = ("failure", "result", "steps", "value")

    def __init__(self, steps: Steps[Any]) -> None:
        self.steps = steps
        self.result: Any = None
        self.failure: BaseException | None = None
        self.value: Any = None

    def next(self) -> Step | None:
        """The next step, given the last one's result or exception; ``None`` at the end."""
        result, failure = self.result, self.failure
        self.result = self.failure = None
        try:
            return self.steps.send(result) if failure is None else self.steps.throw(failure)
        except StopIteration as done:
            self.value = done.value
            return None


def run(steps: Steps[T]) -> T:
    """Drive ``steps`` in a sync shell: call each step, send its result (or throw its
    exception) back; the generator's return value. An awaitable result is refused
    (:class:`AwaitableInSyncShell`, thrown in; the awaitable is closed, never run)."""
    drive = _Drive(steps)
    while (step := drive.next()) is not None:
        try:
            result = step()
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()  # never awaited: no "coroutine was never awaited" warning
                raise AwaitableInSyncShell("an async callable cannot run in a sync shell")
            drive.result = result
        except BaseException as error:  # a cancellation too: the generator's finally runs
            drive.failure = error
    return drive.value  # type: ignore[no-any-return]


async def arun(steps: Steps[T]) -> T:
    """Drive ``steps`` in an async shell (asyncio or trio): as :func:`run`, awaiting a
    step's awaitable result, and running a :class:`Blocking` step in a worker thread."""
    drive = _Drive(steps)
    while (step := drive.next()) is not None:
        try:
            if isinstance(step, Blocking):
                drive.result = await anyio.to_thread.run_sync(step.call)
            else:
                result = step()
                drive.result = (await result) if inspect.isawaitable(result) else result
        except BaseException as error:  # a cancellation too: the generator's finally runs
            drive.failure = error
    return drive.value  # type: ignore[no-any-return]
