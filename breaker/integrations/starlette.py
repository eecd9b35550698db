"""Starlette and FastAPI: answer rejected calls with 503 and Retry-After, and serve breaker status.

::

    app = Starlette(routes=[...])  # or FastAPI()
    install(app, status_path="/breakers", provider=provider)

A handler that lets a `breaker.RejectedError` escape (from ``@circuit``, a guard,
or a client integration, whose rejections are subclasses) answers
``503 Service Unavailable`` with ``Retry-After`` (whole seconds, rounded up, at least 1)
and the JSON body ``{"detail": "Service Unavailable"}``; the breaker's name stays
internal. The status endpoint serves ``provider.status()`` as JSON; with ``fleet=True``
also the fleet view, ``provider.fleet()``, under ``"fleet"`` (read from Consul in a
worker thread, so the event loop never waits on it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from breaker.integrations import _common, _status

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    raise _common.missing("starlette", "starlette", "starlette") from _exc

from breaker._default import get_default_provider
from breaker._exceptions import RejectedError
from breaker._provider import Provider

__all__ = ["breaker_open_handler", "install", "status_endpoint", "status_route"]

_UNAVAILABLE = {"detail": "Service Unavailable"}


async def breaker_open_handler(request: Request, exc: Exception) -> Response:
    """Answer a request whose handler raised `breaker.RejectedError`: 503 with Retry-After.

    Register it with ``app.add_exception_handler(breaker.RejectedError, ...)``, or
    call `install`.
    """
    if not isinstance(exc, RejectedError):
        raise exc
    headers = {"Retry-After": str(_common.retry_after_seconds(exc))}
    return JSONResponse(_UNAVAILABLE, status_code=503, headers=headers)


def status_endpoint(
    provider: Provider | None = None, *, fleet: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """Return an endpoint that serves ``provider.status()`` as JSON (with ``fleet``, the fleet
    view too, under ``"fleet"``).

    Without ``provider`` it serves the default provider at request time, and answers 503
    while none is set.
    """
    if provider is not None and not isinstance(provider, Provider):
        raise TypeError(f"status_endpoint: expected a breaker.Provider, got {provider!r}")
    _status.check_fleet(provider, fleet, "status_endpoint")

    async def breaker_status(request: Request) -> Response:
        current = provider if provider is not None else get_default_provider()
        if current is None:
            return JSONResponse({"detail": "no breaker provider is set"}, status_code=503)
        if not fleet:
            return JSONResponse(current.status())
        return JSONResponse(await run_in_threadpool(_status.status_with_fleet, current, fleet))

    return breaker_status


def status_route(
    path: str = "/breakers", *, provider: Provider | None = None, fleet: bool = False
) -> Route:
    """Return a GET route at ``path`` that serves the breakers' status (see `status_endpoint`)."""
    return Route(
        path, status_endpoint(provider, fleet=fleet), methods=["GET"], name="breaker_status"
    )


def install(
    app: Starlette,
    *,
    status_path: str | None = None,
    provider: Provider | None = None,
    fleet: bool = False,
) -> None:
    """Make ``app`` answer rejections with 503 and, given ``status_path``, serve the status there
    (with ``fleet``, the fleet view too).

    Call it while setting the app up, before it serves requests.
    """
    app.add_exception_handler(RejectedError, breaker_open_handler)
    if status_path is not None:
        app.router.routes.append(status_route(status_path, provider=provider, fleet=fleet))
