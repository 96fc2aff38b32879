"""Seeded train/val splits of file stems, optionally keeping groups (patients) on one side."""
from __future__ import annotations

import hashlib
import os
import random
import re
from typing import Any

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


def check_group_pattern(pattern: str, stems: list[str], groups: dict[str, str], val_ratio: float) -> None:
    """--group of png2txt.py: a capture group names the patient or volume, and with a validation share the stems
    fall in two groups or more (with one group the validation split would be empty)."""
    if re.compile(pattern).groups == 0:
        raise UserError(f"--group '{pattern}' has no capture group: put the part of the stem that names the "
                        f"patient or volume in parentheses, e.g. '^(.*)_\\d+$'")
    names = set(groups.values())
    if val_ratio > 0 and len(names) == 1 and len(stems) > 1:
        raise UserError(f"--group '{pattern}' puts all {len(stems)} images in one group ('{names.pop()}'), so "
                        f"the validation split would be empty; its capture group must differ between patients")


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


def fold_stems(stems: list[str], folds: int, seed: int, groups: dict[str, str], foreground: dict[str, bool]
               ) -> list[list[str]]:
    """The validation stems of each of `folds` folds: whole groups only, every stem in exactly one fold.

    Groups with foreground and groups without are dealt out separately (stratified), each shuffled by the seed
    and then, largest first, given to the fold with the fewest images so far, so folds match in size and content.
    """
    members: dict[str, list[str]] = {}
    for stem in stems:
        members.setdefault(groups[stem], []).append(stem)
    if len(members) < folds:
        raise UserError(f"--folds {folds} needs at least {folds} groups (patients or volumes), found "
                        f"{len(members)}: a group is never split between folds")
    sizes = [0] * folds
    chosen: list[list[str]] = [[] for _ in range(folds)]
    rng = random.Random(seed)
    for with_foreground in (True, False):
        names = sorted((name for name, group in members.items()
                        if any(foreground[stem] for stem in group) == with_foreground), key=natural_key)
        rng.shuffle(names)
        for name in sorted(names, key=lambda n: len(members[n]), reverse=True):  # stable: ties keep the shuffle
            fold = min(range(folds), key=lambda i: (sizes[i], i))
            chosen[fold] += members[name]
            sizes[fold] += len(members[name])
    return [sorted(fold, key=natural_key) for fold in chosen]


def test_stems(stems: list[str], count: int, seed: int, groups: dict[str, str], foreground: dict[str, bool]
               ) -> list[str]:
    """`count` whole groups held out as a test part, seeded, with foreground and empty groups in their proportions."""
    names = sorted(set(groups.values()), key=natural_key)
    if count >= len(names):
        raise UserError(f"--test {count} would leave no group (patient, volume or image) for the folds: there are "
                        f"{len(names)}")
    with_foreground = [n for n in names if any(foreground[s] for s in stems if groups[s] == n)]
    without = [n for n in names if n not in set(with_foreground)]
    rng = random.Random(seed)
    rng.shuffle(with_foreground)
    rng.shuffle(without)
    share = round(count * len(with_foreground) / len(names))
    from_foreground = min(len(with_foreground), max(share, count - len(without)))
    chosen = set(with_foreground[:from_foreground] + without[:count - from_foreground])
    return sorted((stem for stem in stems if groups[stem] in chosen), key=natural_key)


def check_fold_groups(pattern: str, groups: dict[str, str]) -> None:
    """--group with --folds must group something: a pattern that gives every image its own group is a mistake."""
    if len(groups) > 1 and len(set(groups.values())) == len(groups):
        raise UserError(f"--group '{pattern}' gives each of the {len(groups)} images a group of its own (one case "
                        f"per group), so it keeps nothing together; its capture group must name the patient or "
                        f"volume, or leave out --group to fold single images")


def split_fingerprint(root: str | os.PathLike, split: str) -> dict[str, Any]:
    """What identifies a split's data for a resumed run: its stem count and a digest of stems and label sizes
    (read from the file headers, no pixel decoded)."""
    from utils.data.dataset import find_samples, read_split
    from utils.io.images import open_pillow

    sizes = []
    for sample in find_samples(root, read_split(root, split)):
        assert sample.label_path is not None
        with open_pillow(sample.label_path) as label:
            sizes.append((sample.stem, *label.size))
    return fingerprint(split, sizes)


def fingerprint(split: str, label_sizes: list[tuple[str, int, int]]) -> dict[str, Any]:
    """A split's record from its (stem, label width, label height) list: the count and a digest, in stem order."""
    digest = hashlib.sha256()
    for stem, width, height in sorted(label_sizes, key=lambda entry: entry[0]):
        digest.update(f"{stem}\t{width}\t{height}\n".encode())
    return {"split": split, "images": len(label_sizes), "digest": digest.hexdigest()}
