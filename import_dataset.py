"""Import a segmentation dataset from its source layout into <out>/Images, <out>/Labels and <out>/classes.txt.

Split files are not written here: run png2txt.py on the result.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from utils.errors import UserError
from utils.importers import (ImportSummary, import_flood, import_isbi2012, import_lgg, import_liver, import_msrc,
                             import_pairs)
from utils.importers.common import REPORT_FILE
from utils.importers.flood import DEFAULT_THRESHOLD
from utils.importers.isbi2012 import FORMS
from utils.importers.pairs import parse_class_names

FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def _class_names(text: str) -> list[str]:
    """argparse type for --classes: a UserError would escape argparse, so report it as a usage error."""
    try:
        return parse_class_names(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per source."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=FORMATTER)
    commands = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")

    def command(name: str, summary: str, default_out: str | None) -> argparse.ArgumentParser:
        """A sub-command with the options every importer takes."""
        sub = commands.add_parser(name, help=summary, description=summary, formatter_class=FORMATTER)
        if default_out is None:
            # SUPPRESS keeps "(default: None)" out of the help of a required option.
            sub.add_argument("--out", required=True, default=argparse.SUPPRESS, help="dataset folder to write")
        else:
            sub.add_argument("--out", default=default_out, help="dataset folder to write")
        sub.add_argument("--overwrite", action="store_true",
                         help="replace Images/ and Labels/ when they already hold files")
        return sub

    sub = command("liver", "liver CT: one folder of NNN.png + NNN_mask.png (masks 0/255, 255 = liver)",
                  "datasets/Liver")
    sub.add_argument("src", metavar="SRC", help="folder holding the NNN.png and NNN_mask.png files")
    sub.set_defaults(run=lambda args: import_liver(args.src, args.out, overwrite=args.overwrite))

    sub = command("isbi2012", "ISBI 2012 EM: image/ + label/ folders of N.png, or train-volume.tif + "
                              "train-labels.tif stacks (labels 255 = cell, 0 = membrane)", "datasets/ISBI2012")
    sub.add_argument("src", metavar="SRC", nargs="?",
                     help="dataset root or the folder holding the PNG folders or the stacks (searched)")
    sub.add_argument("--volume", help="images: a multi-page TIFF or a folder of N.png (instead of SRC)")
    sub.add_argument("--labels", help="labels: a multi-page TIFF or a folder of N.png (instead of SRC)")
    sub.add_argument("--form", choices=FORMS, default="auto",
                     help="which form to read from SRC; auto takes the PNG folders when both are there")
    sub.set_defaults(run=lambda args: import_isbi2012(args.src, args.out, volume=args.volume, labels=args.labels,
                                                      form=args.form, overwrite=args.overwrite))

    sub = command("lgg", "Kaggle LGG brain MRI (kaggle_3m): <CASE>/<CASE>_<n>.tif + _mask.tif; "
                         "group = patient", "datasets/LGG")
    sub.add_argument("src", metavar="SRC", help="the kaggle_3m folder (or its parent)")
    sub.set_defaults(run=lambda args: import_lgg(args.src, args.out, overwrite=args.overwrite))

    sub = command("msrc", "MSRC-v2, 21 classes: images/*_s.bmp|png + targets/*_s_GT.bmp colour GT "
                          "(void, horse, mountain -> 255); group = image row", "datasets/MSRC")
    sub.add_argument("src", metavar="SRC", help="folder holding images/ and targets/ (or its parent)")
    sub.set_defaults(run=lambda args: import_msrc(args.src, args.out, overwrite=args.overwrite))

    sub = command("flood", "Flood Area Segmentation: Image/<id>.jpg + Mask/<id>.png (+ metadata.csv)",
                  "datasets/Flood")
    sub.add_argument("src", metavar="SRC", help="folder holding Image/, Mask/ and metadata.csv")
    sub.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD, help="mask value > this -> water")
    sub.set_defaults(run=lambda args: import_flood(args.src, args.out, level=args.threshold,
                                                   overwrite=args.overwrite))

    sub = command("pairs", "any image folder + mask folder matched by stem, any Pillow-readable format", None)
    sub.add_argument("images", metavar="IMAGES", help="folder of input images")
    sub.add_argument("masks", metavar="MASKS", help="folder of masks (may be IMAGES when --mask-suffix is set)")
    sub.add_argument("--mask-suffix", default="",
                     help="mask name = image stem + this (e.g. _mask, _GT, _manual1); empty = same stem")
    mapping = sub.add_mutually_exclusive_group(required=True)
    mapping.add_argument("--threshold", type=int, help="binary: grey value > T -> class 1 (colour masks: "
                                                       "their grey level)")
    mapping.add_argument("--value-map", metavar="MAP",
                         help="VALUE:CLASS,... e.g. 0:0,255:1,128:255; CLASS = id, name or 'ignore' (255); "
                              "palette masks by index")
    mapping.add_argument("--colour-map", metavar="FILE",
                         help='JSON {"R,G,B": class} or CSV rows R,G,B,class; class = id, name or '
                              "'ignore'; palette masks by colour")
    sub.add_argument("--classes", type=_class_names, metavar="NAMES",
                     help="class names a,b,c (line i = class i); threshold default: background,foreground; "
                          "maps without it: names in order of appearance")
    sub.set_defaults(run=lambda args: import_pairs(
        args.images, args.masks, args.out, mask_suffix=args.mask_suffix, level=args.threshold,
        value_map=args.value_map, colour_map=args.colour_map, classes=args.classes, overwrite=args.overwrite))
    return parser


def report(summary: ImportSummary) -> None:
    """Print the one-line summary to stdout, and what was left out (and why) to stderr."""
    print(f"{len(summary.imported)} pairs imported, {len(summary.left_out)} left out -> {summary.out} "
          f"({len(summary.class_names)} classes; details in {summary.out / REPORT_FILE})")
    for item in summary.left_out:
        print(f"warning: left out {item.files()}: {item.reason}", file=sys.stderr)
    if summary.group_regex:
        print(f"{summary.groups} groups in groups.json; the stems carry them: png2txt.py --group "
              f"'{summary.group_regex}'")
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one importer; 0 on success, 2 on a problem the user can fix."""
    args = build_parser().parse_args(argv)
    try:
        report(args.run(args))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
