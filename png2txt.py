"""Write ImageSets/Segmentation/{train,val,trainval}.txt for a dataset folder (seeded, optionally grouped)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from utils.cli import HelpFormatter, run_main
from utils.errors import UserError
from utils.fileio import write_text
from utils.layout import images_dir, index_by_stem, labels_dir, split_file
from utils.splits import group_of, natural_key, split_stems


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
