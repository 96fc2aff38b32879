"""Import a segmentation dataset from its source layout into <out>/Images, <out>/Labels and <out>/classes.txt.

Split files are not written here: run png2txt.py on the result.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from utils.cli import ArgumentParser, checked, float_in, run_main
from utils.errors import UserError
from utils.importers import (
    ImportSummary,
    import_flood,
    import_isbi2012,
    import_lgg,
    import_liver,
    import_msrc,
    import_pairs,
)
from utils.importers.common import REPORT_FILE
from utils.importers.flood import DEFAULT_THRESHOLD
from utils.importers.isbi2012 import FORMS
from utils.importers.pairs import parse_class_names
from utils.importers.volume_sources import NAMINGS, find_dicom_cases, find_nifti_cases
from utils.importers.volumes import VolumeOptions, import_volumes, parse_merge
from utils.io.intensity import (
    DEFAULT_PERCENTILES,
    WINDOW_PRESETS,
    Intensity,
    intensity_from_options,
    parse_percentiles,
    parse_window,
)
from utils.volumes.index import VOLUMES_FILE

FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def _class_names(text: str) -> list[str]:
    """argparse type for --classes: a UserError would escape argparse, so report it as a usage error."""
    try:
        return parse_class_names(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per source."""
    parser = ArgumentParser(description=__doc__)
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

    sub = command("pairs", "any image folder + mask folder matched by stem, any Pillow-readable format; 16-bit "
                           "and float images (PNG, TIFF, multi-page TIFF stacks) scaled by --window/--percentile",
                  None)
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
    scaling = sub.add_mutually_exclusive_group()
    scaling.add_argument("--window", metavar="PRESET|W,L", type=checked(parse_window),
                         help=f"16-bit/float images: fixed range, a CT preset ({', '.join(WINDOW_PRESETS)}) or "
                              f"WIDTH,LEVEL, e.g. 400,40; without it or --percentile such images are left out")
    scaling.add_argument("--percentile", metavar="LOW,HIGH", type=checked(parse_percentiles),
                         help="16-bit/float images: range from each file's LOW and HIGH percentiles (a stack: all "
                              "its pages), e.g. 0.5,99.5; 8-bit images are never rescaled")
    sub.set_defaults(run=lambda args: import_pairs(
        args.images, args.masks, args.out, mask_suffix=args.mask_suffix, level=args.threshold,
        value_map=args.value_map, colour_map=args.colour_map, classes=args.classes, window=args.window,
        percentile=args.percentile, overwrite=args.overwrite))
    def volume_options(sub: argparse.ArgumentParser) -> None:
        """Options shared by the NIfTI and DICOM importers."""
        sub.add_argument("--window", metavar="PRESET|W,L", type=checked(parse_window),
                         help=f"CT window: a preset ({', '.join(WINDOW_PRESETS)}) or WIDTH,LEVEL in HU, e.g. 400,40")
        sub.add_argument("--percentile", metavar="LOW,HIGH", type=checked(parse_percentiles),
                         help="per-volume percentile scaling (MRI); the default when --window is not given: "
                              + ",".join(f"{v:g}" for v in DEFAULT_PERCENTILES))
        sub.add_argument("--context", type=int, choices=(0, 1), default=0,
                         help="1 = 2.5-D input: slices k-1, k, k+1 become the 3 input channels")
        sub.add_argument("--classes", type=_class_names, metavar="NAMES",
                         help="class names a,b,c (line i = class i; default: dataset.json's labels, else "
                              "background,class_1,...)")
        sub.add_argument("--merge", type=_merge, metavar="MAP",
                         help="label value -> class before import, e.g. 2:1 (LiTS tumour into liver) or 3:ignore")
        sub.add_argument("--keep-empty", type=float_in(0, 1), default=1.0, metavar="FRACTION",
                         help="share of the slices without foreground that training keeps (validation keeps all)")
        sub.add_argument("--seed", type=int, default=0, help="seed of the --keep-empty choice")

    sub = command("nifti", "NIfTI volumes (.nii, .nii.gz) -> axial slices: LiTS volume-N + segmentation-N, "
                           "the Decathlon's imagesTr/X_0000 + labelsTr/X, or same-name files in IMAGES and LABELS",
                  None)
    sub.add_argument("src", metavar="SRC", help="dataset root (LiTS or Decathlon file naming) or the image folder")
    sub.add_argument("labels", metavar="LABELS", nargs="?", help="label folder of same-name files (pairs layout)")
    sub.add_argument("--naming", "--layout", dest="naming", choices=NAMINGS, default="auto",
                     help="file naming of SRC when LABELS is not given: LiTS (volume-N / segmentation-N) or Decathlon "
                          "(imagesTr/X_0000, labelsTr/X); --layout is an older spelling")
    volume_options(sub)
    sub.set_defaults(run=lambda args: _import_nifti(args))

    sub = command("dicom", "DICOM series (one folder each, slices ordered by position, HU from rescale "
                           "slope/intercept) with NIfTI labels named after the series folders", None)
    sub.add_argument("src", metavar="SERIES_ROOT", help="folder holding one sub-folder per DICOM series")
    sub.add_argument("labels", metavar="LABELS", help="folder of <series folder name>.nii[.gz] label volumes")
    volume_options(sub)
    sub.set_defaults(run=lambda args: _import_dicom(args))
    return parser


def _merge(text: str) -> dict[int, int]:
    """argparse type for --merge."""
    try:
        return parse_merge(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _volume_options(args: argparse.Namespace) -> VolumeOptions:
    """The slicing options of a nifti/dicom import."""
    intensity = intensity_from_options(args.window, args.percentile) or Intensity("percentile", *DEFAULT_PERCENTILES)
    return VolumeOptions(intensity, args.context, args.classes, args.merge, args.keep_empty, args.seed)


def _progress(name: str) -> None:
    print(f"importing {name}", file=sys.stderr, flush=True)


def _import_nifti(args: argparse.Namespace) -> ImportSummary:
    """Run the NIfTI importer."""
    options = _volume_options(args)
    cases, left_out, naming = find_nifti_cases(args.src, args.labels, args.naming)
    sources = [Path(args.src)] + ([Path(args.labels)] if args.labels else [])
    return import_volumes(cases, left_out, args.out, options, sources=sources, naming=naming,
                          overwrite=args.overwrite, progress=_progress)


def _import_dicom(args: argparse.Namespace) -> ImportSummary:
    """Run the DICOM importer."""
    options = _volume_options(args)
    cases, left_out = find_dicom_cases(args.src, args.labels)
    return import_volumes(cases, left_out, args.out, options, sources=[Path(args.src), Path(args.labels)],
                          naming="dicom", overwrite=args.overwrite, progress=_progress)


def report(summary: ImportSummary) -> None:
    """Print the one-line summary to stdout, and what was left out (and why) to stderr."""
    print(f"{len(summary.imported)} pairs imported, {len(summary.left_out)} left out -> {summary.out} "
          f"({len(summary.class_names)} classes; details in {summary.out / REPORT_FILE})")
    for item in summary.left_out:
        print(f"warning: left out {item.files()}: {item.reason}", file=sys.stderr)
    if (summary.out / VOLUMES_FILE).is_file():
        print(f"{summary.groups} volumes in {summary.out / VOLUMES_FILE}; png2txt.py keeps each volume on one side")
    if summary.group_regex:
        print(f"{summary.groups} groups in groups.json; the stems carry them: png2txt.py --group "
              f"'{summary.group_regex}'")
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one importer; 0 on success, 2 on a problem the user can fix."""
    args = build_parser().parse_args(argv)

    def run(_: Sequence[str] | None) -> int:
        report(args.run(args))
        return 0
    return run_main(run)


if __name__ == "__main__":
    sys.exit(main())
