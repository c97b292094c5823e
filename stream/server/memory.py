"""How the server process's allocator hands memory back (glibc only; elsewhere nothing is changed).

A hand tracker (a MediaPipe graph, tens of MiB) is made in a frame-pool thread and freed when its
player leaves. glibc gives each thread that allocates its own arena (up to 8 per core), and memory
freed in many half-used arenas stays in the process: measured with 2 trackers made and freed per
round, RSS wandered 384-447 MiB over 12 rounds instead of coming back. With two arenas it settles
at its first round's level (342-349 MiB) at no measurable cost per frame (9.5 ms either way);
a lower mmap threshold did as well but cost 10 % more CPU per frame, so it is left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os

_M_ARENA_MAX = -8  # mallopt(3) parameter number
ARENAS = 2

log = logging.getLogger(__name__)


def limit_allocator_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (before the pools start threads); an operator's own
    MALLOC_ARENA_MAX wins. True when the cap was set here."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    with contextlib.suppress(OSError, AttributeError):
        if ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, arenas) == 1:
            return True
    log.debug("malloc arenas left as they are (not glibc)")
    return False
