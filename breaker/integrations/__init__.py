"""Breakers for the clients a service calls through, and for the web apps it serves.

Each integration is a module of its own that imports its library; importing
``breaker.integrations`` imports none of them:

``breaker.integrations.httpx``
    ``BreakerTransport`` and ``AsyncBreakerTransport`` for ``httpx`` clients.
``breaker.integrations.requests``
    ``BreakerAdapter`` to ``mount()`` on a ``requests.Session``.
``breaker.integrations.grpc``
    ``BreakerInterceptor(target=...)`` for ``grpc`` channels, ``aio_interceptors(target=...)``
    for ``grpc.aio``, and ``insecure_channel``/``secure_channel`` (and ``aio_`` twins) that
    build a guarded channel from one target.
``breaker.integrations.starlette``, ``breaker.integrations.flask``
    ``BreakerOpenError`` as ``503 Service Unavailable`` with ``Retry-After``, and a
    status endpoint that serves ``provider.status()``.

Each needs its extra, e.g. ``pip install 'consul-breaker[httpx]'``.
"""

from __future__ import annotations

from breaker.integrations._common import retry_after_seconds

__all__ = ["retry_after_seconds"]
