"""Predict every image of a split with a checkpoint and write one label PNG (class ids) per image.

For datasets imported from volumes (volumes.json), each volume whose slices are all in the split is
predicted as a whole: --keep-largest works in 3-D, and <out>/volumes/<name>_label.nii.gz puts the
prediction back on the source's voxels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.cli import ArgumentParser, int_at_least, run_main
from utils.data.dataset import Sample, find_samples, read_split
from utils.data.folders import CLASSES_FILE, DATASET_FOLDERS, INCOMPLETE_FILE, split_file
from utils.evaluate.prediction_folder import PREDICTION_FILE, check_folder_owner, mark_incomplete, run_owner
from utils.infer.loading import load_predictor
from utils.infer.options import add_inference_arguments
from utils.infer.postprocess import probabilities_for_saving, save_probabilities_npz
from utils.io.files import write_json
from utils.io.intensity import intensity_from_options
from utils.io.labels import save_label_png
from utils.io.outputs import check_outputs
from utils.runtime.forward import PREDICT_BATCH
from utils.volumes.geometry import Orientation, save_nifti
from utils.volumes.index import VOLUMES_FILE, read_volumes_file
from utils.volumes.inference import finish_labels, probabilities_in_file_order


def planned_outputs(out: Path, stems: list[str], volume_names: list[str], probabilities: bool) -> list[Path]:
    """Every file this run will write into `out`."""
    suffixes = ("", "_probabilities") if probabilities else ("",)
    files = [out / f"{stem}{suffix}.{'npz' if suffix else 'png'}" for stem in stems for suffix in suffixes]
    files += [out / "volumes" / f"{name}{suffix}.nii.gz" for name in volume_names
              for suffix in ("_label", *(("_probabilities",) if probabilities else ()))]
    return [*files, out / PREDICTION_FILE, out / INCOMPLETE_FILE]


def input_files(data: Path, split: str, samples: list[Sample], checkpoint: Path) -> list[Path]:
    """The files this run reads: the split's images and labels, the data set's records and the checkpoint."""
    return [checkpoint, split_file(data, split), data / VOLUMES_FILE, data / CLASSES_FILE,
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
    parser.add_argument("--out", default=None, help="output folder (default: results/<model>-<run>/<split>)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=PREDICT_BATCH, help="images per forward pass")
    add_inference_arguments(parser)
    args = parser.parse_args(argv)
    # The data first: a bad split or volumes.json is reported before the model is loaded and timed.
    samples = find_samples(args.data, read_split(args.data, args.split), need_labels=False)
    volumes = read_volumes_file(args.data)
    intensity = intensity_from_options(args.window, args.percentile)
    predictor = load_predictor(args.checkpoint, args.device, args.flip_tta, args.tiles, args.overlap,
                               intensity=intensity, amp=args.amp)
    run = predictor.checkpoint_path.parent.name
    out = Path(args.out) if args.out else Path("results") / f"{predictor.model_name}-{run}" / args.split
    stems = [sample.stem for sample in samples]
    whole = complete_volumes(volumes, stems)
    outputs = planned_outputs(out, stems, sorted(whole), args.save_probabilities)
    check_outputs([out, *outputs], input_files(Path(args.data), args.split, samples, predictor.checkpoint_path),
                  DATASET_FOLDERS)
    owner = run_owner(predictor.checkpoint_path, args.data, args.split)
    check_folder_owner(out, owner, outputs)
    mark_incomplete(out, owner)
    in_volumes = {stem for members in whole.values() for stem in members}
    paths = {sample.stem: sample.image_path for sample in samples}
    names = predictor.class_names[:max(predictor.num_classes, 2)]
    progress = tqdm(total=len(paths), desc="predict", disable=None)  # no bar when stderr is not a terminal

    def write_slice(stem: str, label: np.ndarray, probabilities: np.ndarray) -> None:
        save_label_png(out / f"{stem}.png", label, max(predictor.num_classes, 2))
        if args.save_probabilities:
            save_probabilities_npz(out / f"{stem}_probabilities.npz", probabilities_for_saving(probabilities, label),
                                   names)

    singles = [stem for stem in paths if stem not in in_volumes]
    for path, _, probabilities in predictor.predict_files([paths[stem] for stem in singles], args.batch_size):
        label, probabilities = finish_labels(probabilities, predictor.num_classes, args.keep_largest)
        write_slice(path.stem, label, probabilities)
        progress.update()
    for name, members in whole.items():
        stack = np.stack([prob for _, _, prob in predictor.predict_files([paths[s] for s in members],
                                                                         args.batch_size)], axis=1)
        labels, stack = finish_labels(stack, predictor.num_classes, args.keep_largest)
        for index, stem in enumerate(members):
            write_slice(stem, labels[index], stack[:, index])
        entry = volumes["volumes"][name]
        orientation = Orientation(tuple(entry["shape"]), np.asarray(entry["affine"]))
        save_nifti(out / "volumes" / f"{name}_label.nii.gz", orientation.from_stack(labels), orientation.affine)
        if args.save_probabilities:
            save_nifti(out / "volumes" / f"{name}_probabilities.nii.gz",
                       probabilities_in_file_order(orientation, stack), orientation.affine)
        progress.update(len(members))
    progress.close()
    write_json(out / PREDICTION_FILE, {**owner, "images": len(paths), "stems": stems, "volumes": sorted(whole),
                                       "class_names": predictor.class_names, "flip_tta": args.flip_tta,
                                       "keep_largest": args.keep_largest, "amp": args.amp,
                                       "intensity": predictor.intensity.to_json() if predictor.intensity else None})
    (out / INCOMPLETE_FILE).unlink()
    print(f"{len(paths)} label maps written to {out}"
          + (f" ({len(whole)} volumes also as NIfTI in {out / 'volumes'})" if whole else "")
          + f"\nscore them with: python miou.py --pred {out} --data {args.data} --split {args.split}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
