"""Named points where the crash-safety tests kill the process, as a crash or an OOM kill would.

`BATCH_PIPELINE_FAILPOINT=<name>` in a process's environment makes it SIGKILL itself when it
reaches that point; unset (always, outside tests) each call is one dictionary lookup.
"""

import os
import signal

_ENV = "BATCH_PIPELINE_FAILPOINT"


def failpoint(name: str) -> None:
    if os.environ.get(_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
