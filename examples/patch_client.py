"""breaker.patch: guard a function of a library you do not own, without touching its code.

A throwaway "vendor SDK" module is written to a temporary folder and stands in for a
third-party client (``stripe``, ``boto3``, an SMS gateway...). ``breaker.patch`` is
called before the module is imported: the method is patched the moment the module is
imported, behaves exactly as under ``@circuit``, and ``unpatch()`` puts the original
back.
"""

from __future__ import annotations

import importlib
import logging
import sys
import tempfile
import textwrap
from pathlib import Path

import breaker

PREFIX = "config/dev/notifier/breakers/"

VENDOR = '''
"""A vendor's SMS client, which we may not edit."""

class Client:
    down = False
    sent = 0

    def send(self, number, text):
        Client.sent += 1
        if Client.down:
            raise ConnectionError("sms gateway timed out")
        return f"queued for {number}"
'''


def main() -> None:
    logging.basicConfig(format="  log: %(message)s", stream=sys.stdout)
    coord = breaker.MemoryCoord(
        {PREFIX + "sms.json": '{"failureThreshold": 2, "openStateTimeout": "30s"}'}
    )
    with (
        breaker.new(breaker.Config("notifier", PREFIX), coord=coord) as provider,
        tempfile.TemporaryDirectory() as folder,
    ):
        Path(folder, "vendor_sms.py").write_text(textwrap.dedent(VENDOR))
        sys.path.insert(0, folder)
        try:
            run(provider)
        finally:
            sys.path.remove(folder)
            sys.modules.pop("vendor_sms", None)


def run(provider: breaker.Provider) -> None:
    handle = breaker.patch("vendor_sms:Client.send", "sms", provider=provider)
    print("before the import:", handle)
    vendor_sms = importlib.import_module("vendor_sms")  # the application imports the SDK
    print("after the import: ", handle)
    print("Client.__dict__['send'] is a", type(vars(vendor_sms.Client)["send"]).__name__)

    client = vendor_sms.Client()
    print("send ->", client.send("+15550100", "your code is 1234"))
    vendor_sms.Client.down = True
    for _ in range(3):
        try:
            client.send("+15550100", "your code is 1234")
        except breaker.BreakerOpenError as exc:
            print(f"send -> rejected, not sent: {exc}")
        except ConnectionError as exc:
            print(f"send -> failed: {exc}; breaker: {provider.get_breaker('sms').state}")
    print(f"the gateway saw {vendor_sms.Client.sent} of 4 sends")

    handle.unpatch()
    print("after unpatch():  ", handle)
    print("Client.__dict__['send'] is a", type(vars(vendor_sms.Client)["send"]).__name__)


if __name__ == "__main__":
    main()
