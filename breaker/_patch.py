"""``breaker.patch``: guard a function of a library you do not own, in place, with wrapt.

The wrapper is the one ``@circuit`` builds, so a patched function behaves exactly as if
its author had decorated it. The original object (a function, or the ``classmethod``
or ``staticmethod`` object in a class's ``__dict__``) is kept and put back by
``unpatch``. A target whose module is not imported yet is patched when it is, through
one wrapt post-import hook per module.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

from breaker._decorators import ExcludeItem, FailureIf, circuit
from breaker._names import check_name

if TYPE_CHECKING:
    from breaker._provider import Provider

_log = logging.getLogger("breaker")

_lock = threading.RLock()  # reentrant: wrapt may run a hook at once, while it is held
_active: dict[str, Patch] = {}  # by target: the patch in place, or waiting for its module
_hooked: set[str] = set()  # modules whose wrapt post-import hook has not fired yet

_WAITING, _APPLIED, _OVER = "waiting for import", "applied", "unpatched"


class Patch:
    """A function guarded in place by `breaker.patch`; ``unpatch()`` puts the original back.

    Also a context manager that unpatches when the block ends.
    """

    __slots__ = (
        "_attr",
        "_decorate",
        "_module",
        "_original",
        "_own",
        "_owner",
        "_qualname",
        "_state",
        "_wrapper",
        "name",
        "target",
    )

    def __init__(
        self, target: str, name: str, decorate: Callable[[Any], Any], module: str, qualname: str
    ) -> None:
        self.target = target
        self.name = name
        self._decorate = decorate
        self._module = module
        self._qualname = qualname
        self._state = _WAITING
        self._owner: Any = None
        self._attr = ""
        self._original: Any = None
        self._own = False
        self._wrapper: Any = None

    def __repr__(self) -> str:
        return f"<Patch {self.target!r} breaker={self.name!r} {self._state}>"

    @property
    def applied(self) -> bool:
        """Return whether the function is guarded now (not before its module is imported)."""
        return self._state is _APPLIED

    @property
    def active(self) -> bool:
        """Return whether this patch is in place or waiting for its module's import."""
        return self._state is not _OVER

    def unpatch(self) -> None:
        """Put the original object back where it was; a no-op once done.

        If something else replaced the patched function since, it is left alone (and a
        warning says so) rather than undone.
        """
        with _lock:
            if _active.get(self.target) is self:
                del _active[self.target]
            if self._state is _APPLIED:
                self._restore()
            self._state = _OVER

    def __enter__(self) -> Patch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unpatch()

    def _apply(self, module: ModuleType) -> None:
        owner: Any = module
        *path, attr = self._qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        original, own = _raw(owner, attr)
        wrapper = self._decorate(original)
        setattr(owner, attr, wrapper)
        self._owner, self._attr, self._original, self._own = owner, attr, original, own
        self._wrapper = wrapper
        self._state = _APPLIED

    def _restore(self) -> None:
        owner, attr = self._owner, self._attr
        namespace = getattr(owner, "__dict__", {})
        if namespace.get(attr) is not self._wrapper:
            _log.warning(
                "breaker.patch(%r): it was replaced since it was patched; leaving it as it is",
                self.target,
            )
        elif self._own:
            setattr(owner, attr, self._original)
        else:  # it was inherited or computed: let the lookup find it again
            delattr(owner, attr)
        self._owner = self._original = self._wrapper = None


def _raw(owner: Any, attr: str) -> tuple[Any, bool]:
    """Return the object stored for ``owner.attr`` and whether ``owner`` itself stores it.

    For a class that is what its ``__dict__`` (or a base class's) holds, descriptors
    included: a ``classmethod`` object, not the bound method that getattr returns.
    """
    if isinstance(owner, type):
        for klass in owner.__mro__:
            if attr in vars(klass):
                return vars(klass)[attr], klass is owner
        raise AttributeError(f"type object {owner.__name__!r} has no attribute {attr!r}")
    namespace = getattr(owner, "__dict__", None)
    if namespace is not None and attr in namespace:
        return namespace[attr], True
    return getattr(owner, attr), False


def _parse(target: object) -> tuple[str, str]:
    if not isinstance(target, str) or target.count(":") != 1:
        raise ValueError(f"patch: target must be 'module:Qualified.name', got {target!r}")
    module, qualname = target.split(":")
    if not all(part.isidentifier() for part in module.split(".")) or not all(
        part.isidentifier() for part in qualname.split(".")
    ):
        raise ValueError(f"patch: target must be 'module:Qualified.name', got {target!r}")
    return module, qualname


def _on_import(module: ModuleType) -> None:
    """Apply the patches waiting for ``module`` (wrapt calls this once it is imported)."""
    with _lock:
        _hooked.discard(module.__name__)
        waiting = [
            p for p in _active.values() if p._module == module.__name__ and p._state is _WAITING
        ]
        for handle in waiting:
            try:
                handle._apply(module)
            except Exception:
                # Raising here would fail the user's import of a module we only meant to guard.
                _log.exception("breaker.patch(%r): could not patch it on import", handle.target)
                del _active[handle.target]
                handle._state = _OVER


def patch(
    target: str,
    name: str,
    *,
    provider: Provider | None = None,
    exclude: Iterable[ExcludeItem] = (),
    fallback: Callable[..., Any] | None = None,
    failure_if: FailureIf | None = None,
) -> Patch:
    """Guard a function you do not own with breaker ``name``, in place, where ``target`` says.

    ``target`` is ``"module:Qualified.name"``: ``patch("stripe:Charge.create", "stripe")``. The
    keyword arguments are those of `circuit`, and the patched function, method,
    classmethod, staticmethod or ``async def`` behaves as under ``@circuit``. If the
    module is not imported yet, the function is patched when it is. Code that copied
    the function before it was patched (``from module import function``) keeps the
    unguarded one.

    Returns a `Patch` whose ``unpatch()`` restores the original object exactly.
    Patching a target that is already patched replaces that patch (the function is
    never guarded twice; the earlier handle becomes inactive), and unpatching twice
    does nothing.
    """
    module_name, qualname = _parse(target)
    check_name(name, "patch")
    decorate = circuit(
        name, provider=provider, exclude=exclude, fallback=fallback, failure_if=failure_if
    )
    handle = Patch(target, name, decorate, module_name, qualname)
    with _lock:
        previous = _active.get(target)
        if previous is not None:
            previous.unpatch()
        module = sys.modules.get(module_name)
        if module is not None:
            handle._apply(module)  # AttributeError or TypeError leave the target unpatched
        elif module_name not in _hooked:
            _hooked.add(module_name)
            import wrapt

            wrapt.register_post_import_hook(_on_import, module_name)
        _active[target] = handle
    return handle
