"""The operators' CLI (``breaker``, ``python -m breaker``): check, read and change policies.

One module per group of commands (`_documents`, `_modes`, `_explain`, `_watch`), over one
shared Consul client (`_client`) and one set of output helpers (`_output`); `_app`
builds the parser from the groups and runs a command. Names, keys and the layering
rules come from `breaker._names` and `breaker._layers`, as for the services.

Every command that talks to Consul resolves the agent as `ConsulCoord` does (the consul
CLI's environment; ``--addr``, ``--token`` and friends win) and imports the Consul coord
only when it runs: ``validate`` and ``schema`` work without the Consul extra.

Exit status: 0 success; 1 an invalid document, or a refused or impossible change (a
concurrent edit, no such document, a change that would break other documents); 2 a usage
error; 3 any other error (Consul unreachable, permission denied, bad connection settings).
Writes use Consul's check-and-set, so an edit made by someone else since the document was
read is never silently overwritten.
"""

from breaker._cli._app import EXIT_ERROR, EXIT_INVALID, EXIT_OK, EXIT_USAGE, main

__all__ = ["EXIT_ERROR", "EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "main"]
