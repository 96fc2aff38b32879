"""Predict label maps for image files, NIfTI volumes or DICOM series folders.

Images: <stem>_label.png (class ids) and <stem>_overlay.png. Volumes: <name>_label.nii.gz on the source's
voxels (same shape, affine and orientation) and, with --overlay, <name>_slice<K>_overlay.png. Several
checkpoints (or a cross-validation folder) predict as one ensemble; --save-uncertainty adds <stem>_entropy
(and <stem>_disagreement) maps and uncertainty.csv.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from utils.cli import ArgumentParser, float_in, int_at_least, run_main
from utils.data.folders import DATASET_FOLDERS
from utils.errors import UserError
from utils.infer.loading import load_predictor
from utils.infer.members import checkpoint_members, is_model_path
from utils.infer.options import add_inference_arguments, keep_largest_rule
from utils.infer.postprocess import probabilities_for_saving, save_probabilities_npz
from utils.infer.predictor import Predictor
from utils.infer.segment import segment_images, uncertainty_names
from utils.infer.uncertainty import UNCERTAINTY_FILE, CaseUncertainty, write_uncertainty_csv
from utils.io.files import save_image
from utils.io.intensity import intensity_from_options
from utils.io.labels import overlay, save_label_png
from utils.io.outputs import check_outputs, resolved
from utils.runtime.forward import PREDICT_BATCH
from utils.volumes.geometry import is_nifti, nifti_stem, save_nifti
from utils.volumes.inference import (
    overlay_slices,
    probabilities_in_file_order,
    save_uncertainty_niftis,
    segment_volume,
    volume_intensity,
)


def is_volume(path: Path) -> bool:
    """A NIfTI file or a folder (a DICOM series)."""
    return path.is_dir() or is_nifti(path)


def output_name(path: Path) -> str:
    """The stem outputs are named after: the file stem, or the series folder's name."""
    return nifti_stem(path) if is_nifti(path) else path.name if path.is_dir() else path.stem


def split_inputs(args: argparse.Namespace) -> None:
    """Give back to the inputs what followed --checkpoint: an option of several values takes every word up to the
    next option, so `--checkpoint best.pt image.png` hands it the image too. After the first, values are models
    while they name one (is_model_path); the rest are inputs."""
    values = args.checkpoint
    count = next((index for index in range(1, len(values)) if not is_model_path(values[index])), len(values))
    args.checkpoint, args.images = values[:count], [*values[count:], *args.images]
    if not args.images:
        raise UserError("no images or volumes to predict; list them before --checkpoint or after its model(s), e.g. "
                        "python predict.py --checkpoint best.pt image.png")


def planned_outputs(paths: list[Path], args: argparse.Namespace, out: Path, ensemble: bool = False) -> list[Path]:
    """Every file the run writes; an input in `out` named like a slice overlay stands for that overlay."""
    outputs = [out, *([out / UNCERTAINTY_FILE] if args.save_uncertainty else [])]
    for path in paths:
        name = output_name(path)
        maps = uncertainty_names(name, ensemble) if args.save_uncertainty else []
        if not is_volume(path):
            outputs += [out / f"{stem}.png" for stem in (f"{name}_label", f"{name}_overlay", *maps)]
            outputs += [out / f"{name}_probabilities.npz"] if args.save_probabilities else []
            continue
        probabilities = [f"{name}_probabilities"] if args.save_probabilities else []
        outputs += [out / f"{stem}.nii.gz" for stem in (f"{name}_label", *probabilities, *maps)]
        if args.overlay:  # the slices are known once the volume is read
            pattern = re.compile(re.escape(name) + r"_slice\d{3,}_overlay\.png")
            outputs += [p for p in paths if pattern.fullmatch(p.name) and resolved(p.parent) == resolved(out)]
    return outputs


def class_counts(predictor: Predictor, label: np.ndarray, unit: str) -> str:
    """'background 4000 px, liver 96 px' for the classes present."""
    classes = max(predictor.num_classes, 2)
    counts = np.bincount(label.ravel(), minlength=classes)
    return ", ".join(f"{predictor.class_names[c]} {counts[c]} {unit}" for c in range(classes) if counts[c])


def predict_images(predictor: Predictor, paths: list[Path], args: argparse.Namespace, out: Path
                   ) -> list[CaseUncertainty]:
    """2-D images: label PNG, overlay PNG and optionally probabilities and uncertainty maps."""
    classes = max(predictor.num_classes, 2)
    largest = keep_largest_rule(args.keep_largest, args.largest_classes, predictor.class_names[:classes])
    cases = []
    for path in paths:
        image = predictor.load(path)
        result = segment_images(predictor, [image], largest, args.save_uncertainty)[0]
        label = result.labels
        save_label_png(out / f"{path.stem}_label.png", label, classes)
        save_image(out / f"{path.stem}_overlay.png", overlay(image, label, classes, args.alpha))
        if args.save_probabilities:
            save_probabilities_npz(out / f"{path.stem}_probabilities.npz",
                                   probabilities_for_saving(result.probabilities, label),
                                   predictor.class_names[:classes])
        if args.save_uncertainty:
            result.save_uncertainty_pngs(out, path.stem)
            cases.append(result.case(path.stem))
        print(f"{path}: {class_counts(predictor, label, 'px')} -> {out / (path.stem + '_overlay.png')}")
    return cases


def predict_volumes(predictor: Predictor, paths: list[Path], args: argparse.Namespace, out: Path
                    ) -> list[CaseUncertainty]:
    """Volumes: label NIfTI on the source's voxels, overlays of chosen slices, optionally probabilities and
    uncertainty maps."""
    from utils.volumes.dicom import read_image_volume

    classes = max(predictor.num_classes, 2)
    largest = keep_largest_rule(args.keep_largest, args.largest_classes, predictor.class_names[:classes])
    override = intensity_from_options(args.window, args.percentile)
    cases = []
    for path in paths:
        volume = read_image_volume(path)
        intensity = volume_intensity(predictor, override, str(path))
        context = int(predictor.preprocessing.get("context") or 0) if args.context is None else args.context
        orientation, stack, result = segment_volume(predictor, volume, intensity, context, largest,
                                                    args.batch_size, uncertainty=args.save_uncertainty)
        labels = result.labels
        name = output_name(path)
        like = path if is_nifti(path) else None
        target = out / f"{name}_label.nii.gz"
        picks = overlay_slices(args.overlay, labels) if args.overlay else []  # checked before anything is written
        save_nifti(target, orientation.from_stack(labels), volume.affine, like=like)
        if args.save_probabilities:
            save_nifti(out / f"{name}_probabilities.nii.gz",
                       probabilities_in_file_order(orientation, result.probabilities), volume.affine, like=like)
        if args.save_uncertainty:
            save_uncertainty_niftis(out, name, orientation, result, volume.affine, like=like)
            cases.append(result.case(name))
        for index in picks:
            save_image(out / f"{name}_slice{index:03d}_overlay.png",
                       overlay(stack[index], labels[index], classes, args.alpha))
        spacing = orientation.stack_spacing()
        voxel_ml = float(np.prod(spacing)) / 1000
        counts = np.bincount(labels.ravel(), minlength=classes)
        volumes = ", ".join(f"{predictor.class_names[c]} {counts[c] * voxel_ml:.1f} ml"
                            for c in range(1, classes) if counts[c])
        print(f"{path}: {intensity.describe()}, {labels.shape[0]} slices; {volumes or 'no foreground'} -> {target}")
    return cases


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="*",
                        help="image files (PNG, JPEG, 16-bit/float TIFF, ...), NIfTI volumes (.nii, .nii.gz) "
                             "or DICOM series folders; after --checkpoint, the first value that is not a .pt, .pth "
                             "or .onnx file or a run or cross-validation folder starts them")
    parser.add_argument("--out", default="results/predict", help="output folder")
    parser.add_argument("--alpha", type=float_in(0, 1), default=0.5, help="opacity of the class colours in the overlay")
    parser.add_argument("--overlay", metavar="SLICES",
                        help="volumes: also write overlays of these axial slices ('auto' or 10,20,30; 0 = most "
                             "inferior)")
    parser.add_argument("--context", type=int, choices=(0, 1), default=None,
                        help="volumes: 2.5-D context slices (default: as recorded in the checkpoint)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=PREDICT_BATCH,
                        help="volumes: slices per forward pass")
    add_inference_arguments(parser)
    args = parser.parse_args(argv)
    split_inputs(args)
    paths = [Path(p) for p in args.images]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UserError(f"input(s) not found: {', '.join(missing)}")
    names: dict[str, Path] = {}
    for path in paths:
        clash = names.setdefault(output_name(path), path)
        if clash != path:
            raise UserError(f"{clash} and {path} would write the same output names ('{output_name(path)}'); "
                            f"predict them into different --out folders")
    out = Path(args.out)
    members = checkpoint_members(args.checkpoint)
    ensemble = len(members.paths) > 1
    check_outputs(planned_outputs(paths, args, out, ensemble), [*paths, *members.paths, *members.inputs],
                  DATASET_FOLDERS)
    predictor = load_predictor(args.checkpoint, args.device, args.flip_tta, args.tiles, args.overlap,
                               intensity=intensity_from_options(args.window, args.percentile), amp=args.amp)
    cases = predict_images(predictor, [p for p in paths if not is_volume(p)], args, out)
    cases += predict_volumes(predictor, [p for p in paths if is_volume(p)], args, out)
    if args.save_uncertainty:
        write_uncertainty_csv(out / UNCERTAINTY_FILE, cases)
        print(f"uncertainty per case (U = sum H / (sum H + 2 |foreground|)) written to {out / UNCERTAINTY_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
