"""Where a benchmark ran: recorded beside every result (``"environment"``)."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any


def environment() -> dict[str, Any]:
    """Python version, machine, CPU count and the UTC time of the run."""
    return {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
