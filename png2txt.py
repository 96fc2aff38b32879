"""Write ImageSets/Segmentation/{train,val,trainval}.txt for a dataset folder (seeded, optionally grouped)."""
from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

from utils.cli import HelpFormatter, run_main
from utils.errors import UserError
from utils.fileio import write_text
from utils.layout import images_dir, index_by_stem, labels_dir, split_file


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


def split_stems(stems: list[str], val_ratio: float, seed: int, pattern: str | None = None) -> tuple[list[str], list[str]]:
    """Seeded split; with a group pattern every group falls wholly on one side."""
    if not 0 <= val_ratio < 1:
        raise UserError(f"--val-ratio must be in [0, 1), got {val_ratio}")
    groups = group_of(stems, pattern)
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


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data", default="datasets/SynthLiver", help="dataset folder with Images/ and Labels/")
    parser.add_argument("--val-ratio", type=float, default=0.1, help="fraction of images for validation (9:1 default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle")
    parser.add_argument("--group", default=None,
                        help="regex on the file stem whose first group (or match) names a patient/volume; "
                             "all images of one group fall on the same side, e.g. '^(.*)_\\d+$'")
    args = parser.parse_args(argv)
    root = Path(args.data)
    images = index_by_stem(images_dir(root))
    labels = index_by_stem(labels_dir(root))
    unlabelled = sorted(set(images) - set(labels), key=natural_key)
    orphans = sorted(set(labels) - set(images), key=natural_key)
    for stem in unlabelled:
        print(f"warning: image without label, left out: {images[stem]}", file=sys.stderr)
    for stem in orphans:
        print(f"warning: label without image, left out: {labels[stem]}", file=sys.stderr)
    stems = sorted(set(images) & set(labels), key=natural_key)
    if not stems:
        raise UserError(f"no image/label pairs in {images_dir(root)} and {labels_dir(root)}")
    train, val = split_stems(stems, args.val_ratio, args.seed, args.group)
    for name, items in (("train", train), ("val", val), ("trainval", sorted(stems, key=natural_key))):
        write_text(split_file(root, name), "".join(f"{stem}\n" for stem in items))
    groups = len(set(group_of(stems, args.group).values()))
    print(f"{len(stems)} pairs ({groups} groups): train {len(train)}, val {len(val)} -> {split_file(root, 'train').parent}"
          + (f"; {len(unlabelled)} image(s) without label left out" if unlabelled else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
