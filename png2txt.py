"""Write ImageSets/Segmentation/{train,val,trainval}.txt for a dataset folder (seeded, optionally grouped).

With --folds K it writes fold<i>_train.txt / fold<i>_val.txt for i = 0..K-1 instead of train/val: every image is
in exactly one validation fold, a patient or volume never in two, images with and without foreground spread
evenly; --test N first keeps N whole groups out of every fold as test.txt, for a final check of the fold
ensemble. Train a fold with: python unet_bn_train_medical.py --fold i ..., or all of them with crossval.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from utils.cli import ArgumentParser, float_in, int_at_least, run_main
from utils.data.folders import images_dir, index_by_stem, labels_dir, split_file
from utils.data.splits import (
    check_fold_groups,
    check_group_pattern,
    fold_stems,
    group_of,
    natural_key,
    split_stems,
    test_stems,
)
from utils.errors import UserError
from utils.io.files import write_text
from utils.io.images import open_image
from utils.io.labels import IGNORE_INDEX, label_to_array
from utils.io.outputs import check_outputs
from utils.volumes.index import read_volumes_file


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="datasets/SynthLiver", help="dataset folder with Images/ and Labels/")
    parser.add_argument("--val-ratio", type=float_in(0, 1, high_open=True), default=0.1, help="fraction of images for validation (9:1 default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle")
    parser.add_argument("--group", default=None,
                        help="regex on the file stem whose first capture group names a patient/volume; "
                             "all images of one group fall on the same side, e.g. '^(.*)_\\d+$' "
                             "(default for imported volumes: the volume, from volumes.json)")
    parser.add_argument("--folds", type=int_at_least(2), default=None, metavar="K",
                        help="write K cross-validation folds (fold<i>_train/val.txt) instead of train/val")
    parser.add_argument("--test", type=int_at_least(1), default=None, metavar="N",
                        help="with --folds: keep N groups (patients, volumes, else images) out of every fold as "
                             "test.txt")
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
    pairs = len(stems)
    volumes = None if args.group else read_volumes_file(root)
    groups = volume_groups(volumes, stems) if volumes else group_of(stems, args.group)
    if args.test and not args.folds:
        raise UserError("--test keeps a part out of cross-validation folds; give --folds K too")
    if args.group:
        check_group_pattern(args.group, stems, groups, args.val_ratio)
        if args.folds:
            check_fold_groups(args.group, groups)
    excluded = {stem for entry in volumes["volumes"].values() for stem in entry["train_excluded"]} if volumes else set()
    if args.folds:
        foreground = {stem: has_foreground(labels[stem]) for stem in stems}
        test = test_stems(stems, args.test, args.seed, groups, foreground) if args.test else []
        stems = [stem for stem in stems if stem not in set(test)]
        splits = []
        for index, val in enumerate(fold_stems(stems, args.folds, args.seed, groups, foreground)):
            held_out = set(val) | excluded
            splits += [(f"fold{index}_train", [stem for stem in stems if stem not in held_out]),
                       (f"fold{index}_val", val)]
        splits += [("test", test)] if test else []
        splits.append(("trainval", sorted(stems, key=natural_key)))
    else:
        train, val = split_stems(stems, args.val_ratio, args.seed, groups=groups)
        train = [stem for stem in train if stem not in excluded]
        splits = [("train", train), ("val", val), ("trainval", sorted(stems, key=natural_key))]
    check_outputs([split_file(root, name) for name, _ in splits], [*images.values(), *labels.values()])
    for name, items in splits:
        write_text(split_file(root, name), "".join(f"{stem}\n" for stem in items))
    kind = "volumes from volumes.json" if volumes else "groups"
    sizes = ", ".join(f"{name} {len(items)}" for name, items in splits[:-1])
    print(f"{pairs} pairs ({len(set(groups.values()))} {kind}): {sizes} -> "
          f"{split_file(root, 'train').parent}"
          + (f"; {len(excluded)} slice(s) without foreground kept out of train by --keep-empty" if excluded else "")
          + (f"; {len(unlabelled)} image(s) without label left out" if unlabelled else ""))
    return 0


def has_foreground(path: Path) -> bool:
    """True when the label map holds a class other than background and ignore."""
    values = np.unique(label_to_array(open_image(path), path))
    return bool(((values != 0) & (values != IGNORE_INDEX)).any())


def volume_groups(volumes: dict, stems: list[str]) -> dict[str, str]:
    """stem -> volume name for every stem, from volumes.json; a stem it does not know is an error."""
    owner = {stem: name for name, entry in volumes["volumes"].items() for stem in entry["slices"]}
    unknown = [stem for stem in stems if stem not in owner]
    if unknown:
        raise UserError(f"volumes.json names no volume for {len(unknown)} image(s) such as {', '.join(unknown[:5])}; "
                        f"re-import the volumes or split with --group REGEX")
    return {stem: owner[stem] for stem in stems}


if __name__ == "__main__":
    raise SystemExit(run_main(main))
