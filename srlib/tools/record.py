"""What a results file records of the run that made it: command, commit, hardware, time."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from srlib.hardware import describe_hardware


def provenance(command: str, wall_seconds: float, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> dict:
    """The command, git commit, date, load, hardware and wall time of a run, as a dict."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"command": command, "commit": commit, "wall_seconds": round(wall_seconds, 1),
            "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            **describe_hardware(device or torch.device("cpu"), dtype)}
