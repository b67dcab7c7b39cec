"""The worker's CPU priority: below the web server's, so that a machine short of CPU answers
requests first and generates replies with what is left.

A send's 202 is what its client waits for; the reply is background work, streamed as it
comes. When both want more CPU than there is (a burst of sends), equal shares made every
send wait behind the generation of earlier sends' replies: on two cores the web got about
half of them. At `WORKER_NICE` (10 by default) the worker gets about a tenth of the weight
of a process at 0 while they compete, and all it wants otherwise: with a core idle, nothing
changes (README, "Design decisions").

For processes outside any CPU cgroup of their own, Linux shares the CPU between sessions
first (autogroups, `kernel.sched_autogroup_enabled`) and applies a niceness only within a
session, and the run command (`scripts/stack.py`) starts each process in a session of its
own. So a worker that leads its session lowers its session's priority too: everything in
that session, which is the worker unless its command line started others beside it.
Containers share by their cgroups' weights instead: compose gives the worker a lower
`cpu_shares`.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_AUTOGROUP = Path("/proc/self/autogroup")  # "/autogroup-42 nice 0"; Linux with autogroups
_LOWEST_PRIORITY = 19


def worker_priority_lower(niceness: int) -> None:
    """At least `niceness` for this thread, and for the session's autogroup when this
    process leads its session. Called before the worker starts its threads, which inherit
    it. Never raises: a worker at full priority still works."""
    niceness = min(niceness, _LOWEST_PRIORITY)
    if niceness <= 0:
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < niceness:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
        autogroup = _autogroup_niceness_raised(niceness) if os.getsid(0) == os.getpid() else None
        logger.info(
            "Worker CPU priority: nice %d, its session's autogroup %s",
            os.getpriority(os.PRIO_PROCESS, 0), autogroup,
        )  # fmt: skip
    except OSError as error:
        logger.warning("Worker CPU priority left as it is: %r", error)


def _autogroup_niceness_raised(niceness: int) -> int | None:
    """The session's autogroup niceness, raised to `niceness`; None without autogroups."""
    for _ in range(20):
        try:
            current = int(_AUTOGROUP.read_text().split()[-1])
            if current < niceness:
                _AUTOGROUP.write_text(str(niceness))
            return max(current, niceness)
        except (ValueError, IndexError) as error:  # not the format this was written for
            logger.info("Worker autogroup niceness left as it is: %r", error)
            return None
        except OSError as error:
            if error.errno == errno.EAGAIN:
                # Linux lets an unprivileged process change one a tenth of a second, machine-wide.
                time.sleep(0.1)
                continue
            if error.errno != errno.ENOENT:  # ENOENT: no autogroups
                logger.info("Worker autogroup niceness left as it is: %s", error)
            return None
    logger.info("Worker autogroup niceness left as it is: busy")
    return None
