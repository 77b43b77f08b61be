"""The lifecycle rules a campaign lives by: stages that name their failures, user code that is
blamed as such, and a cleanup that a Ctrl-C cannot cut short.

* ``Incomplete(stage, message, host, detail)``: the run could not complete; ``detail`` keeps the
  traceback of the system module's own code for the run's ``error.txt``;
* ``on_all(hosts, stage, action)``: one action on every host in parallel, each bounded by
  ``STAGE_TIMEOUT``; the first failing host (by name) is the one named, with how many more failed;
* ``user_call(name, awaitable)``: marks an exception from a system module's code (``UserCall``)
  so it stops the run at once, naming the call, instead of being waited out like an unreachable
  node (only ``OSError`` and ``TimeoutError`` mean "not reachable");
* ``Deferred.finish(step)``: runs a cleanup step to its end even if a cancellation (Ctrl-C) lands
  in it: the step runs again (healing, log collection, teardown are idempotent) and the
  cancellation is raised once every step has run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from raftlab.protocols import Host


class Incomplete(Exception):
    """The run could not complete: which stage, which host (if one), and why."""

    def __init__(self, stage: str, message: str, host: Host | None = None, detail: str = "") -> None:
        self.stage = stage
        self.host = host
        self.detail = detail  # a traceback from user code, kept in the run's error.txt
        self.message = message
        super().__init__(f"{stage}: {host + ': ' if host and not message.startswith(host) else ''}{message}")


class UserCall(Exception):
    """Wraps an exception raised by the system's own code with the call that raised it."""

    def __init__(self, call: str, error: Exception) -> None:
        self.call = call
        self.error = error
        super().__init__(str(error))


def where(e: Exception) -> str:
    return e.call if isinstance(e, UserCall) else "the system"


def format_traceback(e: BaseException) -> str:
    import traceback

    inner = e.error if isinstance(e, UserCall) else e
    return "".join(traceback.format_exception(inner))


async def user_call(name: str, action: Awaitable[Any]) -> Any:
    try:
        return await action
    except (OSError, TimeoutError):
        raise
    except Exception as e:
        raise UserCall(name, e) from e


STAGE_TIMEOUT = 120.0
"""Seconds one host may take to set up or tear down before the run stops naming it."""


async def on_all(hosts: Sequence[Host], stage: str, action: Callable[[Host], Any]) -> None:
    failures: dict[Host, str] = {}
    details: dict[Host, str] = {}

    async def one(host: Host) -> None:
        try:
            async with asyncio.timeout(STAGE_TIMEOUT):
                await action(host)
        except TimeoutError:
            failures[host] = f"{stage} did not finish within {STAGE_TIMEOUT:.0f}s"
        except Exception as e:
            # A DB's own error names its host; anything else is named by its type (a bug's AttributeError)
            failures[host] = str(e) if str(e).startswith(host) else f"{type(e).__name__}: {e}".rstrip(": ")
            details[host] = format_traceback(e)

    async with asyncio.TaskGroup() as tg:
        for h in hosts:
            tg.create_task(one(h))
    if failures:
        host = sorted(failures)[0]
        others = f" (and {len(failures) - 1} more hosts)" if len(failures) > 1 else ""
        raise Incomplete(stage, failures[host] + others, host, detail=details.get(host, ""))


class Deferred:
    """Holds back a cancellation (Ctrl-C) until every cleanup step has run to its end."""

    def __init__(self) -> None:
        self.cancelled = False

    async def finish(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step``; if a cancellation cuts it short, run it again (cleanup steps are idempotent:
        healing, log collection, teardown), and remember to raise the cancellation afterwards."""
        for _ in range(2):
            try:
                await step()
                return
            except asyncio.CancelledError:
                self.cancelled = True


def leaves(eg: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        out.extend(leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out
