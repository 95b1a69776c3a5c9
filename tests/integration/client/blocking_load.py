"""Load from the blocking `Client`, in a process of its own (grpc's C core has crashed a
client process under a replica kill once): `python -m tests.integration.client.blocking_load
TARGET...` runs 4 threads of calls over the targets, prints the number answered after
every 50, and when its standard input closes prints one JSON line with the answered
count and the failures."""

from __future__ import annotations

import json
import sys
import threading

from modelwire.client import Client
from modelwire.errors import ModelwireError
from tests.images import digit_bytes


def main(targets: list[str]) -> None:
    stop = threading.Event()
    lock = threading.Lock()
    answered = [0]
    failures: list[str] = []
    image = digit_bytes(2)

    def load() -> None:
        with Client(targets, timeout=10) as client:
            while not stop.is_set():
                try:
                    client.classify(image)
                except ModelwireError as error:
                    failures.append(f"{error.status}: {error.message}")
                    continue
                with lock:
                    answered[0] += 1
                    if answered[0] % 50 == 0:
                        print(answered[0], flush=True)

    callers = [threading.Thread(target=load) for _ in range(4)]
    for caller in callers:
        caller.start()
    sys.stdin.read()  # until the test closes it
    stop.set()
    for caller in callers:
        caller.join(timeout=30)
    print(json.dumps({"answered": answered[0], "failures": failures}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
