"""The README's demo scripts, run quick (DEMO_QUICK=1) into a folder of the test's own (DEMO_OUT)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib

from tests.conftest import ROOT

# Where the scripts write by default: none of them may change while a demo writes to DEMO_OUT.
DEFAULT_OUTPUTS = ("datasets", "logs", "results")


def repository_outputs() -> set[Path]:
    """Every path under the repository's default output folders, and its top-level entries but byte code."""
    paths = {path for path in ROOT.iterdir() if path.name != "__pycache__"}
    for name in DEFAULT_OUTPUTS:
        if (ROOT / name).is_dir():
            paths |= set((ROOT / name).rglob("*"))
    return paths


def run_demo(script: str, out: Path) -> None:
    """Run one demo script quick into out; it must succeed and leave the repository as it was."""
    before = repository_outputs()
    env = {**os.environ, "DEMO_QUICK": "1", "DEMO_OUT": str(out), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(ROOT / script)], cwd=out.parent, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert repository_outputs() == before


def one(folder: Path, pattern: str) -> Path:
    """The single path under folder matching pattern."""
    matches = sorted(folder.glob(pattern))
    assert len(matches) == 1, (pattern, matches)
    return matches[0]


def test_demo(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run_demo("demo.sh", out)
    assert one(out, "logs/unet_bn/demo-*/best.pt").is_file()
    results = one(out, "results/demo-*")
    assert (results / "val" / "miou.json").is_file() and (results / "val" / "report.html").is_file()
    assert one(results, "predict/*_overlay.png").is_file()


def test_demo_volumes(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run_demo("demo_volumes.sh", out)
    results = one(out, "results/volumes-*")
    assert (results / "val" / "miou.json").is_file() and (results / "val" / "report.html").is_file()
    assert one(results, "val/volumes/*_label.nii.gz").is_file()
    predicted = one(results, "predict/*_0000_label.nii.gz")
    source = out / "datasets" / "SynthCT-nifti" / "imagesTr" / predicted.name.replace("_label", "")
    label, image = nib.load(str(predicted)), nib.load(str(source))
    assert label.shape == image.shape == (32, 32, 16) and (label.affine == image.affine).all()  # the source's voxels


def test_demo_crossval(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run_demo("demo_crossval.sh", out)
    for config in ("cv-*[0-9]-cv", "cv-*-ce-cv"):
        cv_dir = one(out, f"logs/unet_bn/{config}")
        assert (cv_dir / "cv_summary.json").is_file() and (cv_dir / "report.html").is_file()
    results = one(out, "results/cv-*")
    choice = json.loads((results / "choice.json").read_text())
    assert len(choice["ranking"]) == 3  # two configurations and their ensemble
    assert (results / "test" / "miou.json").is_file() and (results / "test" / "uncertainty.csv").is_file()
    assert one(results, "predict/*_entropy.png").is_file()
