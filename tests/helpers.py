"""What many test modules share: the prefix, errors that stand for outcomes, tiny calls."""

from __future__ import annotations

PREFIX = "config/dev/checkout/breakers/"


class Boom(Exception):
    """The downstream failed."""


class NotFound(Exception):
    """The downstream answered: the thing does not exist (usually excluded)."""


class Abort(BaseException):
    """Neither success nor failure, as KeyboardInterrupt or CancelledError."""


def ok() -> str:
    return "ok"


def fail() -> None:
    raise Boom("downstream failed")


async def aok() -> str:
    return "ok"


async def afail() -> None:
    raise Boom("downstream failed")
