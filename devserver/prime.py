"""Imported last by the function containers' fork server, and only there (devserver.lambdas):
it prepares what every container would otherwise redo, as Lambda SnapStart's priming does
before its snapshot.

* AWS clients: creating a boto3 client is mostly parsing its service model and endpoint rules,
  and the layer keeps one parsed copy per process (``tokencore.awsclient``). One client per
  service created here parses them once; each container forked afterwards inherits the parsed
  models and builds its own clients (its own sessions, credentials and connections) without
  parsing them again. The clients made here are dropped unused: they never opened a connection.
* ``gc.freeze()``: everything imported so far is left out of garbage collection, so a forked
  container does not touch (and copy) every inherited object the first time it collects.

Nothing of a function runs here, and no Runtime is built: each container builds its own.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Final

from tokencore.awsclient import LazyClient

SERVICES: Final = ("dynamodb", "secretsmanager", "ssm", "kms")

# An exception here would end the fork server (it forgives ImportError only); a container
# that meets the same failure reports it at its first AWS call instead.
with contextlib.suppress(Exception):
    for service in SERVICES:
        LazyClient(service).get()

gc.freeze()
