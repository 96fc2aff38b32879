"""Predict every image of a split with a checkpoint and write one label PNG (class ids) per image.

For datasets imported from volumes (volumes.json), each volume whose slices are all in the split is
predicted as a whole: --keep-largest works in 3-D, and <out>/volumes/<name>_label.nii.gz puts the
prediction back on the source's voxels. Several checkpoints (or a cross-validation folder) predict as one
ensemble; --save-uncertainty adds <stem>_entropy.png (and <stem>_disagreement.png) and uncertainty.csv.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.cli import ArgumentParser, int_at_least, run_main
from utils.data.dataset import Sample, find_samples, read_split
from utils.data.folders import CLASSES_FILE, DATASET_FOLDERS, INCOMPLETE_FILE, split_file
from utils.errors import UserError
from utils.evaluate.prediction_folder import (
    PREDICTION_FILE,
    check_folder_owner,
    mark_incomplete,
    read_record,
    run_owner,
)
from utils.infer.ensemble import EnsemblePredictor
from utils.infer.loading import load_predictor
from utils.infer.members import checkpoint_members
from utils.infer.options import add_inference_arguments, keep_largest_rule
from utils.infer.postprocess import probabilities_for_saving, save_probabilities_npz
from utils.infer.segment import Segmentation, finish, segment_files, uncertainty_names
from utils.infer.uncertainty import UNCERTAINTY_FILE, write_uncertainty_csv
from utils.io.files import write_json
from utils.io.intensity import intensity_from_options
from utils.io.labels import save_label_png
from utils.io.outputs import check_outputs, resolved
from utils.runtime.forward import PREDICT_BATCH
from utils.volumes.geometry import Orientation, save_nifti
from utils.volumes.index import VOLUMES_FILE, read_volumes_file
from utils.volumes.inference import probabilities_in_file_order, save_uncertainty_niftis


def planned_outputs(out: Path, stems: list[str], volume_names: list[str], probabilities: bool,
                    uncertainty: bool = False, ensemble: bool = False) -> list[Path]:
    """Every file this run will write into `out` (uncertainty.csv always: a stale one is removed)."""
    suffixes = ("", "_probabilities") if probabilities else ("",)
    files = [out / f"{stem}{suffix}.{'npz' if suffix else 'png'}" for stem in stems for suffix in suffixes]
    files += [out / "volumes" / f"{name}{suffix}.nii.gz" for name in volume_names
              for suffix in ("_label", *(("_probabilities",) if probabilities else ()))]
    if uncertainty:
        files += [out / f"{name}.png" for stem in stems for name in uncertainty_names(stem, ensemble)]
        files += [out / "volumes" / f"{map_name}.nii.gz" for name in volume_names
                  for map_name in uncertainty_names(name, ensemble)]
    files += [out / UNCERTAINTY_FILE, *([out / "volumes" / UNCERTAINTY_FILE] if volume_names else [])]
    return [*files, out / PREDICTION_FILE, out / INCOMPLETE_FILE]


def check_map_names(stems: list[str], ensemble: bool) -> None:
    """Refuse a split where one image's uncertainty map (<stem>_entropy.png) would be another image's label map."""
    present = set(stems)
    for stem in stems:
        clash = next((name for name in uncertainty_names(stem, ensemble) if name in present), None)
        if clash is not None:
            raise UserError(f"the split has images '{stem}' and '{clash}': the uncertainty map of '{stem}' would "
                            f"replace the prediction {clash}.png; predict this split without --save-uncertainty")


def check_members(out: Path, owner: dict) -> None:
    """Refuse a folder whose record names other ensemble members (check_folder_owner compares one checkpoint)."""
    record = read_record(out / PREDICTION_FILE) or read_record(out / INCOMPLETE_FILE)
    if record is not None and record.get("checkpoints") != owner.get("checkpoints"):
        theirs = record.get("checkpoints") or [record.get("checkpoint")]
        raise UserError(f"{out} holds the predictions of other models ({', '.join(map(str, theirs))}); predict into "
                        f"a new --out folder, or delete {out} first")


def input_files(data: Path, split: str, samples: list[Sample], checkpoints: list[Path]) -> list[Path]:
    """The files this run reads: the split's images and labels, the data set's records and the checkpoints."""
    return [*checkpoints, split_file(data, split), data / VOLUMES_FILE, data / CLASSES_FILE,
            *(sample.image_path for sample in samples), *(s.label_path for s in samples if s.label_path)]


def complete_volumes(volumes: dict | None, stems: list[str]) -> dict[str, list[str]]:
    """Volume name -> its slice stems in order, for the volumes whose slices are all in `stems`."""
    if not volumes:
        return {}
    present = set(stems)
    return {name: entry["slices"] for name, entry in volumes["volumes"].items()
            if all(stem in present for stem in entry["slices"])}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="datasets/SynthLiver", help="dataset folder")
    parser.add_argument("--split", default="val", help="split file to predict")
    parser.add_argument("--out", default=None, help="output folder (default: results/<model>-<run>/<split>; for an "
                                                     "ensemble results/ensemble-<name>/<split>)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=PREDICT_BATCH, help="images per forward pass")
    add_inference_arguments(parser)
    args = parser.parse_args(argv)
    # The data first: a bad split or volumes.json is reported before the model is loaded and timed.
    samples = find_samples(args.data, read_split(args.data, args.split), need_labels=False)
    volumes = read_volumes_file(args.data)
    intensity = intensity_from_options(args.window, args.percentile)
    members = checkpoint_members(args.checkpoint)
    predictor = load_predictor(args.checkpoint, args.device, args.flip_tta, args.tiles, args.overlap,
                               intensity=intensity, amp=args.amp)
    ensemble = isinstance(predictor, EnsemblePredictor)
    largest = keep_largest_rule(args.keep_largest, args.largest_classes,
                                predictor.class_names[:max(predictor.num_classes, 2)])
    if args.out:
        out = Path(args.out)
    elif ensemble:
        out = Path("results") / f"ensemble-{predictor.name}" / args.split
    else:
        out = Path("results") / f"{predictor.model_name}-{predictor.checkpoint_path.parent.name}" / args.split
    stems = [sample.stem for sample in samples]
    whole = complete_volumes(volumes, stems)
    uncertainty, disagreement = args.save_uncertainty, len(predictor.checkpoint_paths) > 1
    if uncertainty:
        check_map_names(stems, disagreement)
    outputs = planned_outputs(out, stems, sorted(whole), args.save_probabilities, uncertainty, disagreement)
    check_outputs([out, *outputs], input_files(Path(args.data), args.split, samples, [*members.paths,
                                                                                      *members.inputs]),
                  DATASET_FOLDERS)
    owner = run_owner(predictor.checkpoint_path, args.data, args.split)
    if ensemble:
        owner["checkpoints"] = [str(resolved(path)) for path in predictor.checkpoint_paths]
    check_folder_owner(out, owner, outputs)
    check_members(out, owner)
    mark_incomplete(out, owner)
    for stale in () if uncertainty else (out / UNCERTAINTY_FILE, out / "volumes" / UNCERTAINTY_FILE):
        stale.unlink(missing_ok=True)  # an earlier run's, which miou.py would read as this one's
    in_volumes = {stem for members in whole.values() for stem in members}
    paths = {sample.stem: sample.image_path for sample in samples}
    classes = max(predictor.num_classes, 2)
    progress = tqdm(total=len(paths), desc="predict", disable=None)  # no bar when stderr is not a terminal
    cases, volume_cases = [], []

    def write_slice(stem: str, result: Segmentation) -> None:
        save_label_png(out / f"{stem}.png", result.labels, classes)
        if args.save_probabilities:
            save_probabilities_npz(out / f"{stem}_probabilities.npz",
                                   probabilities_for_saving(result.probabilities, result.labels),
                                   predictor.class_names[:classes])
        if uncertainty:
            result.save_uncertainty_pngs(out, stem)
            cases.append(result.case(stem))

    singles = [paths[stem] for stem in paths if stem not in in_volumes]
    for path, probabilities, spread in segment_files(predictor, singles, args.batch_size, uncertainty):
        write_slice(path.stem, finish(probabilities, predictor.num_classes, largest, uncertainty, spread))
        progress.update()
    for name, slices in whole.items():
        raw = list(segment_files(predictor, [paths[s] for s in slices], args.batch_size, uncertainty))
        spread = np.stack([s for _, _, s in raw]) if uncertainty and disagreement else None
        result = finish(np.stack([prob for _, prob, _ in raw], axis=1), predictor.num_classes, largest,
                        uncertainty, spread)
        for index, stem in enumerate(slices):
            write_slice(stem, result.slice(index))
        entry = volumes["volumes"][name]
        orientation = Orientation(tuple(entry["shape"]), np.asarray(entry["affine"]))
        save_nifti(out / "volumes" / f"{name}_label.nii.gz", orientation.from_stack(result.labels),
                   orientation.affine)
        if args.save_probabilities:
            save_nifti(out / "volumes" / f"{name}_probabilities.nii.gz",
                       probabilities_in_file_order(orientation, result.probabilities), orientation.affine)
        if uncertainty:
            save_uncertainty_niftis(out / "volumes", name, orientation, result, orientation.affine)
            volume_cases.append(result.case(name))
        progress.update(len(slices))
    progress.close()
    if uncertainty:
        order = {stem: index for index, stem in enumerate(stems)}
        write_uncertainty_csv(out / UNCERTAINTY_FILE, sorted(cases, key=lambda case: order[case.name]))
        if whole:
            write_uncertainty_csv(out / "volumes" / UNCERTAINTY_FILE, volume_cases)
    write_json(out / PREDICTION_FILE, {**owner, "images": len(paths), "stems": stems, "volumes": sorted(whole),
                                       "class_names": predictor.class_names, "flip_tta": args.flip_tta,
                                       "keep_largest": largest.count if largest else None,
                                       "largest_classes": list(largest.classes or ()) if largest else None,
                                       "amp": args.amp,
                                       "uncertainty": uncertainty,
                                       "intensity": predictor.intensity.to_json() if predictor.intensity else None})
    (out / INCOMPLETE_FILE).unlink()
    print(f"{len(paths)} label maps written to {out}"
          + (f" ({len(whole)} volumes also as NIfTI in {out / 'volumes'})" if whole else "")
          + (f"; uncertainty per image in {out / UNCERTAINTY_FILE}" if uncertainty else "")
          + f"\nscore them with: python miou.py --pred {out} --data {args.data} --split {args.split}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
