"""UserError, the one exception type for problems a user can fix (scripts print it and exit 2), and the wording of
torch's refusals to load a file, which both models and checkpoints report."""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (paths, data, checkpoint, options), explained in words."""


def refused_load_reason(exc: BaseException) -> str:
    """Why torch.load(weights_only=True) refused a file, without torch's advice to turn that protection off."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    if named:
        return named[0]
    safe = [line for line in lines if "weights_only" not in line]
    return safe[0] if safe else f"{type(exc).__name__}: not a file of tensors as torch.save writes them"
