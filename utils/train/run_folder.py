"""One writer per run folder: an OS file lock held for the life of the training process."""
from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import IO

from utils.errors import UserError

LOCK_FILE = ".lock"


def lock_run_dir(run_dir: Path) -> IO[str]:
    """Take the run folder's lock (or name the process holding it) and remove temp files a killed writer left.

    The lock is released by the operating system when the process ends, however it ends, so a crash
    never leaves a stale lock behind. Keep the returned handle open for as long as the run writes.
    """
    import fcntl  # POSIX only; the project runs on Linux and macOS

    handle = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise UserError(f"{run_dir} is in use by another training process (PID {holder}); wait for it to end or "
                        f"stop it before resuming this run") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    for stale in run_dir.glob(".*.tmp"):  # atomic_open's temporaries: only a killed write leaves one
        stale.unlink(missing_ok=True)
    return handle


def default_run_name() -> str:
    """The run folder's name when none is given: the date and time."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def new_run_dir(log_dir: Path, model_name: str, run_name: str | None) -> Path:
    """A fresh run folder: an existing one is never reused (a suffix -2, -3, ... is added)."""
    base = log_dir / model_name / (run_name or default_run_name())
    candidate, index = base, 1
    while candidate.exists():
        index += 1
        candidate = base.with_name(f"{base.name}-{index}")
    if candidate != base:
        print(f"note: {base} exists; this run writes to {candidate} (use --resume to continue a run)")
    try:
        candidate.mkdir(parents=True)
        probe = candidate / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to the log folder {candidate}: {exc.strerror}") from None
    return candidate


