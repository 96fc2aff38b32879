"""python -m utils.synthetic: write the synthetic liver CT slices (PNG), or with --volumes the CT volumes (NIfTI)."""
from __future__ import annotations

from utils.cli import ArgumentParser, int_at_least, run_main
from utils.synthetic.slices import MIN_SIZE, write_dataset
from utils.synthetic.volumes import write_volumes


def build_parser() -> ArgumentParser:
    """The generator's options; with --volumes, --out, --count and --size default to the volume set's."""
    parser = ArgumentParser(prog="python -m utils.synthetic", description=__doc__)
    parser.add_argument("--out", default="datasets/SynthLiver",
                        help="dataset root to create (with --volumes: datasets/SynthCT)")
    parser.add_argument("--count", type=int_at_least(1), default=400, help="slices, or volumes (with --volumes: 12)")
    parser.add_argument("--size", type=int_at_least(MIN_SIZE), default=512,
                        help="side of each generated image in pixels (with --volumes: in-plane voxels, 128)")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="dataset seed; same seed gives identical files")
    parser.add_argument("--overwrite", action="store_true", help="replace files already in the output folders")
    parser.add_argument("--volumes", action="store_true",
                        help="write NIfTI CT volumes (imagesTr/labelsTr, Decathlon naming) instead of PNG slices")
    parser.add_argument("--slices", type=int_at_least(1), default=48, help="with --volumes: axial slices per volume")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Write the synthetic slices or volumes."""
    parser = build_parser()
    if parser.parse_known_args(argv)[0].volumes:
        parser.set_defaults(out="datasets/SynthCT", count=12, size=128)
    args = parser.parse_args(argv)
    if args.volumes:
        cases = write_volumes(args.out, args.count, args.size, args.slices, args.seed, overwrite=args.overwrite)
        print(f"wrote {len(cases)} volumes of {args.size}x{args.size}x{args.slices} to {args.out}")
        return 0
    out = write_dataset(args.out, args.count, args.size, args.seed, args.overwrite)
    print(f"wrote {args.count} slices of {args.size}x{args.size} to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
