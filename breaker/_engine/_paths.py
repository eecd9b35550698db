"""The fast path, written once and generated into every way in.

Every way in (``Breaker.do``, ``do_async``, ``@circuit`` on functions and methods, sync
and async, and the `Guard`) admits a call, runs it with no lock held, and settles its
outcome. Admission and settling are the two snippets below. A closed breaker with nothing
to record but successes offers a *plain lane* (``Breaker._fast``, the current era): its
calls are admitted by reading one attribute and a success costs one increment (a
failure-rate window learns where those successes belong from the ticker). A closed
breaker that limits or times calls offers a *timed lane* (``_timed``): the limit's check
and, when it times them (``clocked``), two clock readings more, still no lock.
Everything else goes through ``Breaker._admit`` and ``Breaker._settle``.

A function call costs as much as the whole plain lane, so the snippets are not called
but compiled into each way in, from this one source. The generated code reads the
breaker's private fields; it is this module's, part of the engine.

Why a success's increment is safe without a lock: ``ticket is brk._fast`` and the
``+=`` that follows are bytecodes among which CPython with the GIL never switches
threads (it does so only at calls and backward jumps), so a success counts exactly
once, and only while its lane is still current. A lane that changed (a trip, a new
policy) sends the success the slow way, which sees the change. (On the timed lane the
clock is read before that check, for the same reason.)
"""

from __future__ import annotations

import functools
import inspect
import linecache
import logging
import textwrap
from collections.abc import Callable
from typing import Any, TypeVar

from breaker._engine._limits import Deadline, within
from breaker._engine._recording import judge
from breaker._exceptions import BreakerOpenError, RejectedError
from breaker._state import State

_log = logging.getLogger("breaker")

DONE: Any = object()
"""A guard's ticket once it has left: it cannot be entered again."""

F = TypeVar("F", bound=Callable[..., Any])

# Admission: produces ``ticket`` and ``t0`` (and, in async code, ``tmo``: the timeout);
# ``plain`` is what follows an admission on the plain lane (a guard returns there).
# On a clocked lane the clock is read first, so that the limit's check and the counting
# that follows it run with no call between them (no other thread can come in between).
# A lane's limit is 0 when the policy sets none; only a clocked lane counts its calls in
# flight (``n``), to spot the hung ones.
_ADMIT = """
ticket = brk._fast
if ticket is not None:
    brk._admitted += 1
    {plain}
else:
    ticket = brk._timed
    t0 = 0.0
    if ticket is not None and (
        (not ticket.clocked or (t0 := brk._clock()) < ticket.until)
        and (not ticket.limit or brk._admitted - brk._ok - brk._ended < ticket.limit)
    ):
        brk._admitted += 1
        if ticket.clocked:
            ticket.n += 1
        {lane_timeout}
    else:
        {slow}
"""

# What an open breaker's rejection costs is an outage's hot path: it raises here rather
# than in a method, a frame (and a traceback entry) fewer. ``_shut`` is when an open
# breaker in mode auto half-opens; minus infinity while anything else holds.
_REJECT = """
t0 = brk._shut - brk._clock()
if t0 > 0.0:
    brk._n_rejected += 1
    raise _Open(brk._name, _OPEN_STATE, t0)
{admit}
"""

# Settling a call that returned (``failed``: a failure_if verdict or record_failure()).
_SETTLE_OK = """
if {ok}ticket is brk._fast:
    brk._ok += 1
elif (
    {ok}(not ticket.clocked or brk._clock() - {t0} <= ticket.slow)
    and ticket is brk._timed
    and not brk._waiters
):
    brk._ok += 1
    if ticket.clocked:
        ticket.n -= 1
else:
    brk._settle(ticket, None, {failed}, {excl}, {t0}{tmo})
"""

_CALL = """
def make(brk, lookup, fn, excl, fallback, failure_if, warn):
    {async_}def {name}({params}):
        {rebind}
        {lookup}
        {admit}
        try:
            result = {call}
        except BaseException as exc:
            {error}
            raise
        {judge}
        {settle}
        return result
    return {name}
"""

# A guard admitted on the plain lane keeps its ticket and ``_t0 = None``: nothing times
# it and no timeout runs. Every other admission keeps ``_t0``, and ``__aenter__`` also
# ``_tmo`` and ``_deadline``.
_GUARD_ENTER = """
def make():
    {async_}def {name}(self):
        if self._ticket is not None:
            raise RuntimeError("a guard is single-use; call guard() again for each block")
        brk = self._breaker
        {admit}
        self._t0 = t0
        self._ticket = ticket
        {deadline}
        return self
    return {name}
"""

_GUARD_PLAIN = """
self._ticket = ticket
self._t0 = None
return self
"""

# The driver's exit says whether an exception counts as an error; __exit__ must return a
# false value, or the with statement would swallow the exception. A success admitted on
# the plain lane, its lane still current, settles first; then a guard never entered, or
# left. (In async code, an era admitted the slow way may become the plain lane while its
# block runs: its deadline must still be finished, hence ``_t0``.)
_GUARD_EXIT = """
def make():
    {async_}def {name}({params}):
        ticket = self._ticket
        brk = self._breaker
        if ticket is brk._fast and ticket is not None {plain}and exc is None and not self._failed:
            self._ticket = _DONE
            brk._ok += 1
            return False
        if ticket is None or ticket is _DONE:
            return False
        self._ticket = _DONE
        t0 = self._t0
        {timing}
        if exc is not None:
            {error}
        failed = self._failed
        {settle}
        return False
    return {name}
"""

# In async code, a call's timeout: enforced (> 0), measured only (< 0: mode shadow), none.
_ASYNC = {
    "plain_timeout": "tmo = None",
    "lane_timeout": "tmo = ticket.timeout",
    "slow_timeout": """
        tmo = brk._call_timeout()
        t0 = brk._clock() if tmo is not None and tmo < 0 else 0.0
        """,
}
_SYNC = {"plain_timeout": "", "lane_timeout": "", "slow_timeout": "t0 = 0.0"}


def _indent(snippet: str, spaces: int) -> str:
    lines = textwrap.dedent(snippet).strip("\n").splitlines()
    pad = " " * spaces
    return ("\n" + pad).join(lines)


def _admission(is_async: bool, admit: str | None = None, plain: str | None = None) -> str:
    """Return the admission snippet.

    ``admit`` replaces the slow path's admit call; ``plain`` what follows an admission on
    the plain lane (by default: setting ``t0`` and, async, ``tmo``).
    """
    parts = _ASYNC if is_async else _SYNC
    call = f"ticket = {'await brk._admit_async' if is_async else 'brk._admit'}()"
    slow = _REJECT.format(admit=call) + "\n" + textwrap.dedent(parts["slow_timeout"])
    if plain is None:
        plain = f"t0 = 0.0\n{parts['plain_timeout']}"
    return _ADMIT.format(
        plain=_indent(plain, 4),
        lane_timeout=parts["lane_timeout"],
        slow=_indent(admit.format(slow=_indent(slow, 4)) if admit else slow, 8),
    )


def _settling(*, is_async: bool, ok: str, failed: str, excl: str, t0: str, tmo: str) -> str:
    return _SETTLE_OK.format(
        ok=ok, failed=failed, excl=excl, t0=t0, tmo=f", {tmo}" if is_async else ""
    )


def _compile(source: str, name: str) -> Callable[..., Any]:
    source = "\n".join(line for line in source.splitlines() if line.strip()) + "\n"
    namespace: dict[str, Any] = {
        "_Rejected": RejectedError,
        "_Open": BreakerOpenError,
        "_OPEN_STATE": State.OPEN,
        "_judge": judge,
        "_fallback_args": _fallback_args,
        "_maybe_await": _maybe_await,
        "_within": within,
        "_Deadline": Deadline,
        "_DONE": DONE,
    }
    filename = f"<breaker fast path: {name}>"
    # Tracebacks through a guarded call show these lines, as for any source file.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    make: Callable[..., Any] = namespace["make"]
    return make


def _fallback_args(instance: object, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return args if instance is None else (instance, *args)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


@functools.cache
def _call_factory(
    shape: str, is_async: bool, lookup: bool, fallback: bool, failure_if: bool, warn: bool
) -> Callable[..., Any]:
    """Compile the factory of one way in.

    ``shape`` is how the callable is reached: ``"method"`` (``Breaker.do(self, fn, ...)``),
    ``"wrapt"`` (a wrapt wrapper: ``(fn, instance, args, kwargs)``) or ``"closure"``
    (``fn`` in the closure: ``(*args, **kwargs)``, for methods bound the way functions are).
    """
    params, fallback_args = {
        "method": ("self, fn, /, *args, **kwargs", "args"),
        "wrapt": ("fn, instance, args, kwargs", "_fallback_args(instance, args)"),
        "closure": ("*args, **kwargs", "args"),
    }[shape]
    if is_async:
        call = (
            "await (fn(*args, **kwargs) if tmo is None or tmo < 0 "
            "else _within(fn(*args, **kwargs), tmo, brk._name, brk._timing()))"
        )
    else:
        call = "fn(*args, **kwargs)"
    recover = f"fallback(exc, *{fallback_args}, **kwargs)"
    if is_async:
        recover = f"await _maybe_await({recover})"
    tmo = ", tmo" if is_async else ""
    if fallback:
        admit = f"""
            try:
                {{slow}}
            except _Rejected as exc:
                return {recover}
            """
        error = f"""
            if brk._settle(ticket, exc, False, excl, t0{tmo}):
                return {recover}
            """
    else:
        admit = None
        error = f"brk._settle(ticket, exc, False, excl, t0{tmo})"
    judge = "failed = _judge(failure_if, result)\n" if failure_if else ""
    if warn:  # a plain function that returned an awaitable: say so, once
        judge += "if warn is not None:\n    warn(result)\n    warn = None\n"
    if lookup:
        unguarded = "await fn(*args, **kwargs)" if is_async else "fn(*args, **kwargs)"
        head = f"""
            brk = lookup.get()
            if brk is None:
                return {unguarded}
            """
    else:
        head = "brk = self" if shape == "method" else ""
    source = _CALL.format(
        async_="async " if is_async else "",
        name={"method": "do_async" if is_async else "do", "wrapt": "wrapper"}.get(shape, "guarded"),
        params=params,
        rebind="nonlocal warn" if warn else "",
        lookup=_indent(head, 8),
        admit=_indent(_admission(is_async, admit and textwrap.dedent(admit)), 8),
        call=call,
        error=_indent(error, 12),
        judge=_indent(judge, 8),
        settle=_indent(
            _settling(
                is_async=is_async,
                ok="not failed and " if failure_if else "",
                failed="failed" if failure_if else "False",
                excl="excl",
                t0="t0",
                tmo="tmo",
            ),
            8,
        ),
    )
    return _compile(source, f"{shape}{' async' if is_async else ''}")


def method(stub: F) -> F:
    """Replace a Breaker method stub ``(self, fn, /, *args, **kwargs)`` by the fast path."""
    is_async = inspect.iscoroutinefunction(stub)
    make = _call_factory("method", is_async, False, False, False, False)
    built: Callable[..., Any] = make(None, None, None, None, None, None, None)
    functools.update_wrapper(built, stub)
    del built.__wrapped__  # type: ignore[attr-defined]
    return built  # type: ignore[return-value]


def wrapper_factory(
    shape: str, *, is_async: bool, lookup: bool, fallback: bool, failure_if: bool, warn: bool
) -> Callable[..., Any]:
    """Return ``make(brk, lookup, fn, excl, fallback, failure_if, warn)`` for a decorator."""
    return _call_factory(shape, is_async, lookup, fallback, failure_if, warn)


def _guard_method(name: str) -> Callable[..., Any]:
    is_async = name.startswith("__a") or name == "aenter"
    tmo = ", tmo" if name.startswith("__a") else ""
    settle = f"brk._settle(ticket, exc, False, self._exclude, t0{tmo})"
    timing = ""
    if "enter" in name:
        template = _GUARD_ENTER
        # An async block runs under its timeout: the deadline cancels the block's task.
        # (A driver's async admission does not: it passes the timeout to its client.)
        deadline = (
            """
            self._tmo = tmo
            self._deadline = (
                _Deadline(brk._name, tmo, brk._timing()) if tmo is not None and tmo > 0 else None
            )
            """
            if name == "__aenter__"
            else ""
        )
    else:
        template = _GUARD_EXIT
        deadline = ""
        if is_async:  # __aexit__ (the drivers' exit is sync: they apply no deadline)
            timing = """
                if t0 is None:
                    t0 = 0.0
                    tmo = None
                else:
                    tmo = self._tmo
                    deadline = self._deadline
                    if deadline is not None:
                        timed_out = deadline.finish(exc)
                        if timed_out is not None:
                            brk._settle(ticket, timed_out, False, self._exclude, t0, tmo)
                            raise timed_out from exc
                """
        else:
            timing = """
                if t0 is None:
                    t0 = 0.0
                """
    if name == "exit":  # the drivers' exit: whether the exception counts as an error
        params, error = "self, exc=None", f"return {settle}"
    else:
        params, error = "self, exc_type=None, exc=None, tb=None", f"{settle}\nreturn False"
    source = template.format(
        async_="async " if is_async else "",
        name=name,
        params=params,
        admit=_indent(_admission(is_async, plain=_GUARD_PLAIN if "enter" in name else None), 8),
        deadline=_indent(deadline, 8),
        timing=_indent(timing, 8),
        plain="and self._t0 is None " if name == "__aexit__" else "",
        error=_indent(error, 12),
        settle=_indent(
            _settling(
                is_async=is_async,
                ok="not failed and ",
                failed="failed",
                excl="self._exclude",
                t0="t0",
                tmo="tmo",
            ),
            8,
        ),
    )
    made: Callable[..., Any] = _compile(source, f"Guard.{name}")()
    return made


def guard(stub: F) -> F:
    """Replace a Guard method stub (``__enter__``, ``__exit__``, async too) by the fast path."""
    built = _guard_method(stub.__name__)
    functools.update_wrapper(built, stub)
    del built.__wrapped__  # type: ignore[attr-defined]
    return built  # type: ignore[return-value]
