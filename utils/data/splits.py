"""Seeded train/val splits of file stems, optionally keeping groups (patients) on one side."""
from __future__ import annotations

import random
import re

from utils.errors import UserError


def natural_key(text: str) -> list:
    """Sort key that puts '2' before '10'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def group_of(stems: list[str], pattern: str | None) -> dict[str, str]:
    """Map stem -> group: the regex's first group (or whole match); no pattern = one group per stem."""
    if pattern is None:
        return {stem: stem for stem in stems}
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"--group '{pattern}' is not a valid regular expression: {exc}") from None
    groups, unmatched = {}, []
    for stem in stems:
        match = regex.search(stem)
        if match is None:
            unmatched.append(stem)
        else:
            groups[stem] = match.group(1) if regex.groups else match.group(0)
    if unmatched:
        raise UserError(f"--group '{pattern}' matches no group in {len(unmatched)} file(s): {', '.join(unmatched[:10])}")
    return groups


def split_stems(stems: list[str], val_ratio: float, seed: int, pattern: str | None = None,
                groups: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Seeded split; with a group pattern (or a stem -> group map) every group falls wholly on one side."""
    if not 0 <= val_ratio < 1:
        raise UserError(f"--val-ratio must be in [0, 1), got {val_ratio}")
    groups = groups if groups is not None else group_of(stems, pattern)
    names = sorted(set(groups.values()), key=natural_key)
    random.Random(seed).shuffle(names)
    target = round(val_ratio * len(stems))
    if val_ratio > 0 and len(names) > 1:
        target = max(target, 1)
    val_groups: set[str] = set()
    count = 0
    members: dict[str, int] = {}
    for stem in stems:
        members[groups[stem]] = members.get(groups[stem], 0) + 1
    for name in names:
        if count >= target or len(val_groups) == len(names) - 1:
            break
        val_groups.add(name)
        count += members[name]
    val = sorted((s for s in stems if groups[s] in val_groups), key=natural_key)
    train = sorted((s for s in stems if groups[s] not in val_groups), key=natural_key)
    return train, val
