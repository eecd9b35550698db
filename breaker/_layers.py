"""The resolution model: the layers a breaker's policy is made of, and the rules that join them.

Layers, bottom to top: the built-in default (a provider's ``default_policy``), the service
default (``<policies_path>_default.json``) and the breaker's own document
(``<policies_path><name>.json``). The rules (the README's Operators section states them):

1. Each document is judged on its own: every value, and the rules among the keys it sets.
   Then the layers are combined, and the combination is judged as a whole.
2. A document that is invalid on its own never applies: its layer keeps its own last good
   version. A document valid on its own whose settings do not fit on the layers below
   applies its last version that fits, if any, else nothing: the breaker runs on the
   layers below and the document is reported invalid. A layer never brings back a stale
   version of another layer.
3. ``mode`` and ``modeUntil`` come, together, from the topmost layer whose last good
   version sets ``mode``, whatever the validity of the other layers: lifting a kill
   switch in any layer reaches every breaker that layer covers.
4. A timed mode ends when the wall clock, read when the mode is checked, reaches
   ``modeUntil``, or when a monotonic deadline fixed when its layer first carried that
   (mode, modeUntil) passes, whichever comes first. Re-layering reuses the deadline, so an
   expired mode never comes back, even after the wall clock steps back.
5. A breaker's document may hold a ``canary``: a candidate policy, a layer on top of the
   document (never a mode: the mode comes from rule 3 for every instance), tried by
   ``percent`` of the instances. An instance is a member when `in_canary` says so, a
   stable hash of its instance id and the breaker's name; members run the candidate,
   the others the document. The canary that runs is the one of the document's version
   in effect (rule 2): an invalid new version keeps the last good one's canary, a
   document that goes away takes its canary with it. A candidate that does not fit on
   the document runs nowhere (the document is reported invalid, its stable policy runs
   everywhere). With ``abortIfOpen``, a member whose breaker trips under the candidate
   goes back to the stable policy (`Layers.abort_canary`) until that canary changes.

`Layers` holds one service's documents and applies these rules; the provider, ``breaker
explain``, the CLI's checks and the schema's tests all ask it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

from breaker._exceptions import PolicyError
from breaker._names import DEFAULT_DOCUMENT, SUFFIX, key_of, name_of
from breaker._policy import (
    CANARY_KEY,
    KEY_FIELDS,
    Canary,
    Policy,
    combination_errors,
    decode_document,
    did_you_mean,
    format_timestamp,
    json_value,
    read_document,
    unknown_keys_message,
)
from breaker._state import Mode

__all__ = [
    "BUILT_IN",
    "CANARY",
    "NOT_JSON",
    "CanaryState",
    "Document",
    "Invalid",
    "Layers",
    "Problem",
    "Resolution",
    "canary_id",
    "check_alone",
    "in_canary",
    "judge",
    "judge_alone",
]

Clock = Callable[[], float]

_log = logging.getLogger("breaker.policies")

BUILT_IN = "built-in"
"""The name of the bottom layer: the provider's ``default_policy``."""
CANARY = "canary"
"""Where ``explain`` says a key comes from when a canary's candidate sets it."""
NOT_JSON: Any = type("NotJSON", (), {"__repr__": lambda self: "NOT_JSON"})()
"""`Document.value` of a document that is not JSON."""
_SERVICE_DEFAULT = DEFAULT_DOCUMENT + SUFFIX
_MODE_FIELDS = ("mode", "mode_until")


@attrs.frozen
class Problem:
    """One reason a document does not apply: the key it is about (None: the whole of it)."""

    key: str | None
    message: str
    """The reason, starting with the key it names."""

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"key": self.key, "message": self.message}


@attrs.define(eq=False)
class Document:
    """One version of one layer's document, judged on its own; never changed once made.

    Compared by identity: each version is its own object, shared by the names whose
    documents hold the same bytes in one snapshot. (Not frozen: a reload makes thousands.)
    """

    raw: bytes
    value: Any
    """The decoded JSON, or `NOT_JSON`."""
    settings: Mapping[str, Any]
    """The converted value of each valid key it sets, by attrs field, mode aside."""
    mode: Mode | None
    """Its mode, None when it sets none (or an invalid one)."""
    mode_until: datetime | None
    errors: tuple[Problem, ...]
    """Every reason it is invalid on its own."""
    unknown: tuple[str, ...]
    """Its unknown keys: services ignore them, the CLI refuses them."""
    canary: Canary | None = None
    """Its canary, None when it holds none (or an invalid one)."""

    @property
    def valid(self) -> bool:
        """Say whether it is valid on its own."""
        return not self.errors

    @property
    def sets_mode(self) -> bool:
        """Say whether it decides the mode of the breakers it covers."""
        return self.mode is not None

    def unknown_problems(self) -> tuple[Problem, ...]:
        """Return one problem per unknown key, with the key it likely meant."""
        return tuple(Problem(key, f"{key}: unknown key{did_you_mean(key)}") for key in self.unknown)


def judge(raw: bytes) -> Document:
    """Return ``raw`` judged on its own, with every error it has."""
    try:
        value = decode_document(raw)
    except PolicyError as exc:
        return Document(raw, NOT_JSON, {}, None, None, (Problem(None, str(exc)),), ())
    return _judge_value(raw, value)


def _judge_value(raw: bytes, value: Any) -> Document:
    fields, errors, unknown = read_document(value)
    mode = fields.pop("mode", None)
    until = fields.pop("mode_until", None)
    canary = fields.pop(CANARY_KEY, None)
    problems = tuple(Problem(e.key, str(e)) for e in errors)
    return Document(raw, value, fields, mode, until, problems, tuple(unknown), canary)


def _from_policy(policy: Policy) -> Document:
    fields = {field: getattr(policy, field) for field in KEY_FIELDS.values()}
    mode = fields.pop("mode")
    until = fields.pop("mode_until")
    return Document(b"", policy.to_dict(), fields, mode, until, (), ())


def judge_alone(raw: bytes, builtin: Policy | None = None) -> tuple[Document, tuple[Problem, ...]]:
    """Judge a document as the only layer above the built-in one, as ``breaker validate`` does.

    Returns the document and every problem: its own errors, then what does not fit on
    ``builtin`` (the code's defaults when None). Unknown keys are not problems here
    (`Document.unknown_problems` lists them).
    """
    doc = judge(raw)
    return doc, _alone(doc, builtin)


def check_alone(value: Any, builtin: Policy | None = None) -> tuple[Problem, ...]:
    """Return every problem of a decoded document on its own, unknown keys included.

    What ``breaker validate`` reports, and what the JSON Schema agrees with.
    """
    doc = _judge_value(b"", value)
    return (*_alone(doc, builtin), *doc.unknown_problems())


def _alone(doc: Document, builtin: Policy | None) -> tuple[Problem, ...]:
    if not doc.valid:
        return doc.errors
    base = _from_policy(builtin if builtin is not None else Policy()).settings
    fields = {**base, **doc.settings}
    problems = _misfits(fields, "", doc.settings)
    if doc.canary is not None:
        problems += _canary_misfits(fields, doc.canary)
    return problems


def in_canary(instance_id: str, name: str, percent: float) -> bool:
    """Say whether instance ``instance_id`` runs the canary of breaker ``name``.

    The first 8 bytes of the SHA-256 of ``"<instance_id>\n<name>"`` (UTF-8; ``name`` as
    its document is named, without a leading ``/``), read as a big-endian integer,
    fall below ``percent`` % of 2**64. Stable across runs, hosts and Python versions;
    independent for each breaker, so the same instances are not the canary of every
    breaker; a higher percentage keeps every member of a lower one.
    """
    digest = hashlib.sha256(f"{instance_id}\n{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * 100 < percent * 2**64


def canary_id(canary: Canary) -> str:
    """Return a short fingerprint of a canary as written (fleet records name it)."""
    text = json.dumps(canary.value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _canary_misfits(fields: Mapping[str, Any], canary: Canary) -> tuple[Problem, ...]:
    """Return what breaks a whole policy when ``canary``'s candidate goes on ``fields``."""
    if not canary.settings:
        return ()
    found = _misfits({**fields, **canary.settings}, "", canary.settings)
    return tuple(
        Problem(
            f"canary.policy.{p.key}" if p.key else "canary.policy",
            f"canary.policy: on top of the document: {p.message}",
        )
        for p in found
    )


_PARTNERS = {
    "failureThreshold": "failureRate",
    "failureRate": "failureThreshold",
    "openStateTimeout": "maxOpenStateTimeout",
    "maxOpenStateTimeout": "openStateTimeout",
}


def _misfits(
    fields: Mapping[str, Any], below: str, settings: Mapping[str, Any]
) -> tuple[Problem, ...]:
    """Return what breaks the rules of a whole policy in ``fields`` (a complete set).

    Each problem names a key of the document (whose ``settings`` are given) where it can:
    the one of the two keys of a broken rule that the document sets.
    """
    where = f"on top of {below}: " if below else ""
    problems = []
    for error in combination_errors(fields):
        key = error.key
        if key is not None and KEY_FIELDS[key] not in settings:
            partner = _PARTNERS.get(key)
            if partner is not None and KEY_FIELDS[partner] in settings:
                key = partner
        problems.append(Problem(key, where + str(error)))
    return tuple(problems)


@attrs.frozen
class CanaryState:
    """How the canary of a breaker's document concerns this instance.

    ``member`` says whether the hash names this instance (False when the instance is
    unknown, as for the CLI without ``--instance``); ``aborted`` whether it went back
    to the stable policy (``abortIfOpen``); ``candidate`` is None when the candidate
    does not fit on the document, and runs nowhere.
    """

    id: str
    percent: float
    abort_if_open: bool
    member: bool
    aborted: bool
    stable: Policy
    candidate: Policy | None

    @property
    def runs(self) -> str:
        """Return which policy this instance runs: ``"candidate"`` or ``"stable"``."""
        if self.member and not self.aborted and self.candidate is not None:
            return "candidate"
        return "stable"

    def to_dict(self) -> dict[str, Any]:
        """Return what a fleet record says of it."""
        return {
            "id": self.id,
            "percent": self.percent,
            "abortIfOpen": self.abort_if_open,
            "member": self.member,
            "runs": self.runs,
            "aborted": self.aborted,
        }


@attrs.frozen(eq=False)
class Resolution:
    """What a breaker runs on: its policy, and the monotonic deadline of its timed mode."""

    policy: Policy
    mode_deadline: float | None = None
    """When the mode ends on the monotonic clock at the latest; None: untimed or auto."""
    canary: CanaryState | None = None
    """The canary of its document, if one is in effect."""

    def same(self, other: Resolution) -> bool:
        """Say whether ``other`` means the same to a breaker and its fleet record."""
        return (self.policy, self.mode_deadline, self.canary) == (
            other.policy,
            other.mode_deadline,
            other.canary,
        )


@attrs.frozen
class Invalid:
    """A document that does not apply as written, why, and what applies instead."""

    key: str
    problems: tuple[Problem, ...]
    kept: str
    """What the services keep of the document instead, in words."""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "key": self.key,
            "problems": [p.to_dict() for p in self.problems],
            "kept": self.kept,
        }


_Canary = tuple[Canary, str, "Resolution | None"]
"""A canary in effect: its spec, its id, and the candidate's resolution (None: misfit)."""
_Outcome = tuple[
    Document | None, Document | None, tuple[Problem, ...], Resolution | None, _Canary | None
]


class _Layer:
    """What one layer holds: its current document and the versions that still apply."""

    __slots__ = ("adopted", "current", "deadline", "good", "in_effect", "problems")

    def __init__(self) -> None:
        self.current: Document | None = None
        self.good: Document | None = None  # the last version valid on its own
        self.adopted: Document | None = None  # the last version whose settings fitted
        self.in_effect: Document | None = None  # the version whose settings apply now
        self.deadline: float | None = None  # good's mode ends here on the monotonic clock
        self.problems: tuple[Problem, ...] = ()  # why the current version does not apply


class Layers:
    """One service's policy documents, layered by the rules of this module.

    Feed it whole snapshots with `update`; read `resolved`, `default`, `invalid` and
    `rejected`, which `update` replaces and never changes in place, so readers need no
    lock. `update` and `explain` must not run concurrently (a provider holds a lock).
    """

    def __init__(
        self,
        builtin: Policy,
        prefix: str,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        log: bool = True,
        instance: str | Callable[[], str] | None = None,
    ) -> None:
        self._prefix = prefix
        self._clock = clock
        self._wall = wall
        self._log = log
        # Who this is, for canaries: a name, or how to find it when a canary first asks
        # (a host name costs the socket module, which a light import must not load).
        self._instance_of = instance
        self._aborted: dict[str, str] = {}  # name -> the id of the canary it went back from
        self._builtin = _Layer()
        self._take(self._builtin, _from_policy(builtin))
        self._default = _Layer()
        self._names: dict[str, _Layer] = {}
        self._raw: dict[str, bytes] = {}  # every key of the last snapshot
        self._key_names: dict[str, str | None] = {}  # the name each of those keys holds
        self._base: dict[str, Any] = {}
        self._mode_layer = self._builtin
        self.resolved: Mapping[str, Resolution] = {}
        """What each breaker with a document in effect runs on, by name."""
        self.default = Resolution(builtin)
        """What a breaker with no document in effect runs on."""
        self.invalid: Mapping[str, Invalid] = {}
        """The documents that do not apply as written now, by name (``_default`` included)."""
        self.rejected = 0
        """How many times a document version was found not to apply (a counter)."""
        self._relayer_default()

    # -- snapshots ------------------------------------------------------------------------------

    def update(self, snapshot: Mapping[str, bytes]) -> tuple[bool, list[str]]:
        """Take a whole snapshot; return whether the service default changed, and changed names.

        The cost follows what changed: an unchanged document is found by identity, then
        equality, and only a new ``_default.json`` re-layers every name.
        """
        raw = self._raw
        names_of = self._key_names
        before = len(raw)
        seen = 0
        changed: dict[str, bytes | None] = {}
        for key, value in snapshot.items():
            old = raw.get(key)
            if old is not None:
                seen += 1
                if old is value:
                    continue
                if old == value:
                    raw[key] = value  # the next snapshot may hand back this very object
                    continue
            raw[key] = value
            if key in names_of:
                name = names_of[key]
            else:
                name = names_of[key] = name_of(self._prefix, key)
            if name is None:
                _log.debug("ignoring key %r: not a <name>.json policy under %r", key, self._prefix)
            else:
                changed[name] = value
        if seen < before:
            for key in [k for k in raw if k not in snapshot]:
                del raw[key]
                name = names_of.pop(key, None)
                if name is not None:
                    changed[name] = None
        if not changed:
            return False, []
        judged: dict[bytes, Document] = {}  # fleets stamp documents from a few templates
        for name, raw_value in changed.items():
            layer = self._default if name == DEFAULT_DOCUMENT else self._names.get(name)
            if raw_value is None:
                if layer is not None:
                    self._forget(name)
                continue
            doc = judged.get(raw_value) if name != DEFAULT_DOCUMENT else None
            if doc is None:
                doc = self._judge(name, raw_value)
                if name != DEFAULT_DOCUMENT:
                    judged[raw_value] = doc
            if doc.unknown and self._log:  # once per key: each line names its key
                _log.warning(
                    "%s: %s", key_of(self._prefix, name), unknown_keys_message(doc.unknown)
                )
            if layer is None:
                layer = self._names[name] = _Layer()
            self._take(layer, doc)
        relayer = DEFAULT_DOCUMENT in changed
        changed.pop(DEFAULT_DOCUMENT, None)
        if relayer:
            self._relayer_default()
            names: Iterable[str] = self._names
        else:
            names = changed
        self._resolve(names, fresh=relayer)
        return relayer, list(changed)

    def _judge(self, name: str, value: bytes) -> Document:
        try:
            doc = judge(value)
        except Exception as exc:  # a second line of defence: one document never stops the others
            if self._log:
                _log.exception("invalid policy document %s", key_of(self._prefix, name))
            doc = Document(value, NOT_JSON, {}, None, None, (Problem(None, repr(exc)),), ())
        if name == DEFAULT_DOCUMENT and doc.canary is not None:
            # A canary is tried per breaker: its slice is hashed from the breaker's name.
            problem = Problem(
                CANARY_KEY,
                "canary: only a breaker's own document can hold a canary; the service "
                "default cannot",
            )
            doc = attrs.evolve(doc, errors=(*doc.errors, problem), canary=None)
        return doc

    def _take(self, layer: _Layer, doc: Document) -> None:
        """Make ``doc`` the current version of ``layer``; a valid one becomes its good version."""
        layer.current = doc
        if not doc.valid:
            return
        old, layer.good = layer.good, doc
        if doc.mode is None or doc.mode is Mode.AUTO or doc.mode_until is None:
            layer.deadline = None
        elif old is None or (old.mode, old.mode_until) != (doc.mode, doc.mode_until):
            # Fixed now, when this layer first carries this (mode, modeUntil).
            layer.deadline = self._clock() + (doc.mode_until.timestamp() - self._wall())

    def _forget(self, name: str) -> None:
        if name == DEFAULT_DOCUMENT:
            self._default = _Layer()
            if self._log:
                _log.info("service default deleted; breakers use the code's default policy")
        else:
            del self._names[name]
            if self._log:
                _log.info("policy %r deleted; breaker uses the default policy", name)

    # -- resolution -----------------------------------------------------------------------------

    def _relayer_default(self) -> None:
        layer = self._default
        base = dict(self._builtin.good.settings)  # type: ignore[union-attr]
        fitted = self._fit(layer, base, "the built-in default")
        if fitted is not None:
            base = fitted
        self._base = base
        self._mode_layer = (
            layer if layer.good is not None and layer.good.sets_mode else self._builtin
        )
        old = self.default
        found = self._resolution(base, self._mode_layer)
        if old.policy != found.policy or old.mode_deadline != found.mode_deadline:
            self.default = found
            if self._log and layer.in_effect is not None:
                _log.info("service default is now %s", found.policy.to_dict())

    def _fit(self, layer: _Layer, base: dict[str, Any], below: str) -> dict[str, Any] | None:
        """Put the newest version of ``layer`` that fits on ``base``; return the fields or None."""
        layer.problems = layer.current.errors if layer.current is not None else ()
        layer.in_effect = None
        for doc in (layer.good, layer.adopted):
            if doc is None:
                continue
            if not doc.settings:
                fields = base
            else:
                fields = {**base, **doc.settings}
                misfits = _misfits(fields, below, doc.settings)
                if misfits:
                    if doc is layer.current:
                        layer.problems = misfits
                    continue
            layer.in_effect = layer.adopted = doc
            return fields
        return None

    def _resolution(self, fields: dict[str, Any], mode_layer: _Layer) -> Resolution:
        doc = mode_layer.good
        assert doc is not None
        mode = doc.mode if doc.mode is not None else Mode.AUTO
        # Each value was checked when its document was read, the rules between them on
        # this combination (_fit): built once, not converted again.
        policy = Policy._trusted(fields, mode, doc.mode_until)
        return Resolution(policy, mode_layer.deadline if doc.mode_until is not None else None)

    def _resolve(self, names: Iterable[str], *, fresh: bool, quiet: bool = False) -> None:
        """Resolve ``names`` again (``fresh``: all of them, on a new base) and swap the results.

        An outcome equal to the previous one keeps the previous object, and mappings in
        which nothing changed are kept, so readers can tell a change by identity.
        """
        old = self.resolved
        # A fresh pass builds a new mapping; another copies the old one at its first change.
        resolved: dict[str, Resolution] | None = {} if fresh else None
        old_invalid = self.invalid
        invalid = {} if fresh else dict(old_invalid)
        self._judge_layer(DEFAULT_DOCUMENT, self._default, invalid, old_invalid)
        # Names whose layers hold the same versions resolve alike: once per pass.
        memo: dict[tuple[object, ...], _Outcome] = {}
        log = self._log and not quiet and _log.isEnabledFor(logging.INFO)
        below = _SERVICE_DEFAULT if self._default.in_effect is not None else "the built-in default"
        for name in names:
            layer = self._names.get(name)
            found: Resolution | None = None
            canary: _Canary | None = None
            if layer is not None:
                own_mode = layer.good is not None and layer.good.sets_mode
                memo_key = (layer.good, layer.adopted, layer.current, own_mode and layer.deadline)
                outcome = memo.get(memo_key)
                if outcome is None:
                    fields = self._fit(layer, self._base, below)
                    mode_layer = layer if own_mode else self._mode_layer
                    if fields is not None or mode_layer is layer:
                        found = self._resolution(fields or self._base, mode_layer)
                    # else nothing of it applies: the breaker runs on the default
                    if fields is not None:
                        canary = self._candidate(layer, fields, mode_layer)
                    outcome = memo[memo_key] = (
                        layer.in_effect,
                        layer.adopted,
                        layer.problems,
                        found,
                        canary,
                    )
                else:
                    layer.in_effect, layer.adopted, layer.problems, found, canary = outcome
                self._judge_layer(name, layer, invalid, old_invalid)
            else:
                invalid.pop(name, None)
            if canary is not None and found is not None:
                found = self._canary_resolution(name, found, canary)
            else:
                self._aborted.pop(name, None)
            previous = old.get(name)
            if found is not None and previous is not None and previous.same(found):
                found = previous  # the same outcome: readers see no change
            if found is previous and not fresh:
                continue
            if resolved is None:
                resolved = dict(old)
            if found is None:
                resolved.pop(name, None)
            else:
                resolved[name] = found
                if log and found is not previous:
                    _log.info("policy %r is now %s", name, found.policy.to_dict())
        if resolved is not None and (fresh is False or resolved != old):
            self.resolved = resolved
        if invalid != old_invalid:
            self.invalid = invalid

    def _candidate(
        self, layer: _Layer, fields: dict[str, Any], mode_layer: _Layer
    ) -> _Canary | None:
        """Return the canary of ``layer``'s version in effect, its candidate put on ``fields``."""
        doc = layer.in_effect
        if doc is None or doc.canary is None:
            return None
        spec = doc.canary
        misfits = _canary_misfits(fields, spec)
        if misfits:
            if doc is layer.current:  # else the current version's own problems say more
                layer.problems = misfits
            return spec, canary_id(spec), None
        candidate = self._resolution({**fields, **spec.settings}, mode_layer)
        return spec, canary_id(spec), candidate

    def _canary_resolution(self, name: str, stable: Resolution, canary: _Canary) -> Resolution:
        """Return what this instance runs for ``name``, whose document holds ``canary``."""
        spec, cid, candidate = canary
        if self._aborted.get(name, cid) != cid:
            del self._aborted[name]  # another canary now: a new trial
        instance = self.instance
        member = instance is not None and in_canary(instance, name, spec.percent)
        state = CanaryState(
            cid,
            spec.percent,
            spec.abort_if_open,
            member,
            name in self._aborted,
            stable.policy,
            None if candidate is None else candidate.policy,
        )
        chosen = candidate if state.runs == "candidate" and candidate is not None else stable
        return Resolution(chosen.policy, chosen.mode_deadline, state)

    def abort_canary(self, name: str, why: str = "") -> Resolution | None:
        """Send this instance back from the candidate of ``name``'s canary to the stable policy.

        The instance stays on the stable policy until that canary changes or goes away.
        Returns the new resolution, or None when ``name`` does not run a candidate here.
        """
        found = self.resolved.get(name)
        if found is None or found.canary is None or found.canary.runs != "candidate":
            return None
        self._aborted[name] = found.canary.id
        self._resolve([name], fresh=False, quiet=True)  # the one line below says it all
        if self._log:
            _log.warning(
                "%s: instance %s leaves the canary %s (%g%%) and goes back to the stable "
                "policy%s (abortIfOpen)",
                key_of(self._prefix, name),
                self.instance,
                found.canary.id,
                found.canary.percent,
                f": {why}" if why else "",
            )
        return self.resolved.get(name)

    @property
    def instance(self) -> str | None:
        """Return the instance whose canary membership this resolves (None: no member)."""
        found = self._instance_of
        if callable(found):
            found = self._instance_of = found()
        return found

    def set_instance(self, instance: str | None) -> list[str]:
        """Resolve again as ``instance`` (a forked child is an instance of its own).

        Returns the names whose canary membership may have changed.
        """
        if instance == self.instance:
            return []
        self._instance_of = instance
        self._aborted.clear()
        names = [n for n, r in self.resolved.items() if r.canary is not None]
        if names:
            self._resolve(names, fresh=False)
        return names

    def _judge_layer(
        self,
        name: str,
        layer: _Layer,
        invalid: dict[str, Invalid],
        old: Mapping[str, Invalid],
    ) -> None:
        """Record whether ``layer``'s current document applies as written; count a rejection."""
        doc = layer.current
        if doc is None or (doc.valid and layer.in_effect is doc and not layer.problems):
            if name in invalid:
                del invalid[name]
                if self._log:
                    _log.info("policy document %s applies again", key_of(self._prefix, name))
            return
        entry = Invalid(key_of(self._prefix, name), layer.problems, self._kept(name, layer))
        previous = old.get(name)
        invalid[name] = entry
        if previous is not None and previous == entry:
            return
        self.rejected += 1
        if self._log:
            _log.warning(
                "invalid policy document: %s: %s; %s",
                entry.key,
                "; ".join(str(p) for p in entry.problems),
                entry.kept,
            )

    def _kept(self, name: str, layer: _Layer) -> str:
        """Say what applies instead of ``layer``'s current document."""
        if name == DEFAULT_DOCUMENT:
            what, below = "service default", "the built-in default"
        else:
            what, below = "policy", "the default policy"
        if layer.in_effect is not None and layer.in_effect is layer.current:
            # The document applies; its canary's candidate does not fit on it.
            return "its canary runs nowhere: every instance runs the document's policy"
        text = (
            f"keeping the last good {what}" if layer.in_effect is not None else f"keeping {below}"
        )
        mode = layer.good if layer.good is not None and layer.good.sets_mode else None
        if mode is not None and mode is not layer.in_effect:
            which = "its" if mode is layer.current else "its last good version's"
            text += f", with {which} mode ({mode.mode.value})"  # type: ignore[union-attr]
        return text

    # -- questions ------------------------------------------------------------------------------

    def key(self, name: str) -> str:
        """Return the key of the document of ``name``."""
        return key_of(self._prefix, name)

    def documents(self) -> dict[str, Document]:
        """Return the current document of every name that has one (``_default`` included)."""
        found = {n: layer.current for n, layer in self._names.items() if layer.current}
        if self._default.current is not None:
            found[DEFAULT_DOCUMENT] = self._default.current
        return found

    def mode_holders(self) -> dict[str, Mode]:
        """Return the names whose own document decides their mode, and that mode.

        A mode set in ``_default.json`` does not reach them.
        """
        return {
            name: layer.good.mode
            for name, layer in self._names.items()
            if layer.good is not None and layer.good.mode is not None
        }

    def mode_now(self, resolution: Resolution) -> tuple[Mode, float | None]:
        """Return the mode a resolution is in now, and the seconds until it ends (None: never)."""
        policy = resolution.policy
        if policy.mode is Mode.AUTO or policy.mode_until is None:
            return policy.mode, None
        left = policy.mode_until.timestamp() - self._wall()
        if resolution.mode_deadline is not None:
            left = min(left, resolution.mode_deadline - self._clock())
        return (policy.mode, left) if left > 0 else (Mode.AUTO, None)

    def explain(self, name: str) -> dict[str, Any]:
        """Return what breaker ``name`` runs on and why, as JSON.

        ``policy`` (what it runs on), ``fields`` (each key's value and the layer it comes
        from, `CANARY` for a candidate's key this instance runs), ``mode`` (in effect
        now, the layer that sets it, when it ends), ``layers`` (bottom to top: each one's
        document, whether it applies, and if not, why and what applies instead) and
        ``canary`` (None, or the canary of the document in effect: its candidate, the
        percentage, whether this instance is a member and which policy it runs).
        """
        stack = [(BUILT_IN, self._builtin), (DEFAULT_DOCUMENT, self._default)]
        if name == DEFAULT_DOCUMENT:  # a breaker with no document
            layer = self._default
            resolution = self.default
        else:
            layer = self._names.get(name) or _Layer()
            resolution = self.resolved.get(name, self.default)
            stack.append((name, layer))
        policy = resolution.policy
        mode_name = name if layer.good is not None and layer.good.sets_mode else None
        if mode_name is None:
            mode_name = DEFAULT_DOCUMENT if self._mode_layer is self._default else BUILT_IN
        state = resolution.canary
        candidate = layer.in_effect.canary if layer.in_effect is not None else None
        running = candidate if state is not None and state.runs == "candidate" else None
        fields = []
        for key, field in KEY_FIELDS.items():
            source = mode_name if field in _MODE_FIELDS else BUILT_IN
            if field not in _MODE_FIELDS:
                for layer_name, each in stack[1:]:
                    if each.in_effect is not None and field in each.in_effect.settings:
                        source = layer_name
                if running is not None and field in running.settings:
                    source = CANARY
            fields.append(
                {"key": key, "value": json_value(field, getattr(policy, field)), "from": source}
            )
        mode, left = self.mode_now(resolution)
        until = policy.mode_until
        mode_info: dict[str, Any] = {
            "mode": mode.value,
            "set_by": mode_name,
            "until": None if until is None else format_timestamp(until),
            "ends_in": None if left is None else round(left, 3),
        }
        if mode is not policy.mode:
            mode_info["ended"] = policy.mode.value
        return {
            "name": name,
            "key": key_of(self._prefix, name),
            "policy": policy.to_dict(),
            "fields": fields,
            "mode": mode_info,
            "layers": [self._describe(n, each) for n, each in stack],
            "canary": None if state is None else self._explain_canary(state, candidate),
        }

    def _explain_canary(self, state: CanaryState, spec: Canary | None) -> dict[str, Any]:
        return {
            "id": state.id,
            "percent": state.percent,
            "abortIfOpen": state.abort_if_open,
            "policy": None if spec is None else spec.value.get("policy"),
            "applies": state.candidate is not None,
            "instance": self.instance,
            "member": state.member if self.instance is not None else None,
            "runs": state.runs if self.instance is not None else None,
            "aborted": state.aborted,
            "stable": state.stable.to_dict(),
            "candidate": None if state.candidate is None else state.candidate.to_dict(),
        }

    def _describe(self, name: str, layer: _Layer) -> dict[str, Any]:
        doc = layer.current
        entry: dict[str, Any] = {"layer": name, "key": None}
        if name != BUILT_IN:
            entry["key"] = key_of(self._prefix, name)
        if doc is None:
            return {**entry, "state": "absent", "document": None}
        if doc.value is NOT_JSON:
            entry["document"] = doc.raw.decode("utf-8", "replace")
        else:
            entry["document"] = doc.value
        entry["unknown_keys"] = list(doc.unknown)
        found = self.invalid.get(name) if name != BUILT_IN else None
        if found is None:
            return {**entry, "state": "applies"}
        return {
            **entry,
            "state": "invalid",
            "problems": [p.to_dict() for p in found.problems],
            "kept": found.kept,
        }
