"""Flask: answer rejected calls with 503 and Retry-After, and serve breaker status.

::

    app = Flask(__name__)
    install(app, status_path="/breakers", provider=provider)

A view that lets a `breaker.RejectedError` escape (from ``@circuit``, a guard, or a
client integration, whose rejections are subclasses) answers
``503 Service Unavailable`` with ``Retry-After`` (whole seconds, rounded up, at least 1)
and the JSON body ``{"detail": "Service Unavailable"}``; the breaker's name stays
internal. The status view serves ``provider.status()`` as JSON; with ``fleet=True`` also
the fleet view, ``provider.fleet()``, under ``"fleet"``. `install` also works on a
``Blueprint``, for the views registered on it.
"""

from __future__ import annotations

from collections.abc import Callable

from breaker.integrations import _common, _status

try:
    from flask import Blueprint, Flask, Response, jsonify
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    raise _common.missing("flask", "flask", "flask") from _exc

from breaker._default import get_default_provider
from breaker._exceptions import RejectedError
from breaker._provider import Provider

__all__ = ["breaker_open_handler", "install", "status_view"]


def breaker_open_handler(exc: RejectedError) -> Response:
    """Answer a request whose view raised `breaker.RejectedError`: 503 with Retry-After.

    Register it with ``app.register_error_handler(breaker.RejectedError, ...)``, or
    call `install`.
    """
    response = jsonify(detail="Service Unavailable")
    response.status_code = 503
    response.headers["Retry-After"] = str(_common.retry_after_seconds(exc))
    return response


def status_view(provider: Provider | None = None, *, fleet: bool = False) -> Callable[[], Response]:
    """Return a view that serves ``provider.status()`` as JSON (with ``fleet``, the fleet view
    too, under ``"fleet"``).

    Without ``provider`` it serves the default provider at request time, and answers 503
    while none is set.
    """
    if provider is not None and not isinstance(provider, Provider):
        raise TypeError(f"status_view: expected a breaker.Provider, got {provider!r}")
    _status.check_fleet(provider, fleet, "status_view")

    def breaker_status() -> Response:
        current = provider if provider is not None else get_default_provider()
        if current is None:
            response = jsonify(detail="no breaker provider is set")
            response.status_code = 503
            return response
        return jsonify(_status.status_with_fleet(current, fleet))

    return breaker_status


def install(
    app: Flask | Blueprint,
    *,
    status_path: str | None = None,
    provider: Provider | None = None,
    fleet: bool = False,
) -> None:
    """Make ``app`` answer rejections with 503 and, given ``status_path``, serve the status there
    (with ``fleet``, the fleet view too).

    The status view's endpoint is ``breaker_status``.
    """
    app.register_error_handler(RejectedError, breaker_open_handler)
    if status_path is not None:
        view = status_view(provider, fleet=fleet)
        app.add_url_rule(status_path, "breaker_status", view, methods=["GET"])
