"""Training the folds of a cross-validation: which are done, which resume, the commands that train them, running them."""
from __future__ import annotations

import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from utils.errors import UserError
from utils.io.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPTS = {"unet": "unet_train_medical.py", "unet_bn": "unet_bn_train_medical.py",
                 "att_unet": "att_train_medical.py"}
# crossval.py sets these for each fold itself; a train option of the same name would contradict it.
RESERVED_OPTIONS = ("--fold", "--run-name", "--resume", "--train-split", "--val-split", "--data", "--log-dir",
                    "--device")


@dataclass
class Fold:
    """One fold's run folder and how far its training got."""

    index: int
    run_dir: Path
    epochs_done: int
    epochs: int

    @property
    def state(self) -> str:
        """'new' (no run yet), 'resume' (stopped before its last epoch) or 'done'."""
        if not self.run_dir.exists():
            return "new"
        return "done" if self.epochs_done >= self.epochs else "resume"

    @property
    def checkpoint(self) -> Path:
        """The fold model used for its out-of-fold predictions and in the ensemble."""
        return self.run_dir / "best.pt"


def check_reserved(train_args: list[str]) -> None:
    """Refuse train options that crossval.py sets for every fold itself."""
    for token in train_args:
        name = token.split("=", 1)[0]
        if name in RESERVED_OPTIONS:
            raise UserError(f"{name}: crossval.py sets it for each fold itself; give --data, --log-dir and --devices "
                            f"to crossval.py and leave out {', '.join(RESERVED_OPTIONS[:5])}")


def fold_run_dir(log_dir: str | Path, model: str, name: str, fold: int) -> Path:
    """Where fold `fold` trains: the run folder --fold gives a run named `name` (<log-dir>/<model>/<name>-fold<I>)."""
    return Path(log_dir) / model / f"{name}-fold{fold}"


def read_fold(log_dir: str | Path, model: str, name: str, fold: int, epochs: int) -> Fold:
    """The fold's state from its last.pt (a folder without one is one clear error: nothing there to resume)."""
    run_dir = fold_run_dir(log_dir, model, name, fold)
    if not run_dir.exists():
        return Fold(fold, run_dir, 0, epochs)
    last = run_dir / "last.pt"
    if not last.is_file():
        raise UserError(f"fold {fold}: {run_dir} holds no last.pt (its training stopped before the first save, so "
                        f"there is nothing to resume); delete that folder and run again")
    checkpoint = load_checkpoint(last)
    if checkpoint["model"]["name"] != model:
        raise UserError(f"fold {fold}: {run_dir} holds a '{checkpoint['model']['name']}' run, not '{model}'; choose "
                        f"another --name")
    return Fold(fold, run_dir, int(checkpoint.get("epoch") or 0), epochs)


def fold_command(fold: Fold, model: str, name: str, data: str, log_dir: str, train_args: list[str],
                 device: str | None, python: str = sys.executable) -> list[str]:
    """The train-script command that trains a new fold or resumes an unfinished one exactly where it stopped."""
    command = [python, str(ROOT / TRAIN_SCRIPTS[model])]
    if fold.state == "resume":
        # A resumed run writes into its own folder: --log-dir would only be compared with the one it recorded.
        command += ["--resume", str(fold.run_dir / "last.pt"), "--data", data, *train_args]
    else:
        command += ["--data", data, "--fold", str(fold.index), "--run-name", name, "--log-dir", log_dir, *train_args]
    return command + (["--device", device] if device else [])


def shell_line(command: list[str]) -> str:
    """A command as one line a shell runs unchanged."""
    return " ".join(shlex.quote(part) for part in command)


def run_fold(command: list[str], log_file: Path | None) -> int:
    """Run one fold's training; output to the terminal, or to `log_file` when folds run side by side.

    Ctrl-C reaches the child too, which finishes its step and saves; this waits for it instead of killing it.
    """
    handle = open(log_file, "a", encoding="utf-8") if log_file else None
    try:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT if handle else None)
        try:
            return process.wait()
        except KeyboardInterrupt:
            print("stopping: waiting for the fold to save its last step (Ctrl-C again to stop at once)",
                  file=sys.stderr)
            return process.wait()
    finally:
        if handle:
            handle.close()


def run_folds(folds: list[int], command: Callable[[int, str | None], list[str]], devices: list[str | None],
              log_folder: Path) -> dict[int, int]:
    """Train the folds, one at a time per device, the devices side by side; fold -> exit code.

    With one device the output goes to the terminal and the first failure stops the rest; side by side each fold
    writes <log_folder>/fold<I>.log and every fold is tried.
    """
    results: dict[int, int] = {}
    pending = list(folds)
    if len(devices) <= 1:
        for fold in pending:
            results[fold] = run_fold(command(fold, devices[0] if devices else None), None)
            if results[fold] != 0:
                break
        return results
    log_folder.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def worker(device_index: int) -> None:
        while True:
            with lock:
                if not pending:
                    return
                fold = pending.pop(0)
            print(f"fold {fold}: training on {devices[device_index]}, output in {log_folder / f'fold{fold}.log'}")
            code = run_fold(command(fold, devices[device_index]), log_folder / f"fold{fold}.log")
            with lock:
                results[fold] = code
            print(f"fold {fold}: {'finished' if code == 0 else f'stopped with exit code {code}'}")

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(devices))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
