"""Everything a scoring writes beside its JSON report: the JSON, plots, per_image.csv and the HTML report."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from utils.data.dataset import Sample
from utils.evaluate.report import check_report, write_html_report
from utils.evaluate.score_files import check_score_outputs, output_prefix, write_score_files
from utils.io.files import write_json


def planned_outputs(report: str | os.PathLike, stems: Sequence[str], pred: Path | Iterable[Path], class_count: int,
                    *, html: bool = False, uncertainty: bool = False) -> list[Path]:
    """The files write_score_outputs would write, after its refusals (another file as the JSON, a plot over a
    prediction, too many classes for the report); check them with utils.io.outputs.check_outputs first."""
    report = Path(report)
    outputs = check_score_outputs(report, stems, pred)
    if html:
        outputs += check_report(report.parent, class_count, len(stems), prefix=output_prefix(report),
                                uncertainty=uncertainty)
    return outputs


def write_score_outputs(report: str | os.PathLike, scores: dict[str, Any], samples: Sequence[Sample],
                        predictions: dict[str, Path], matrices: Sequence[np.ndarray],
                        groups: dict[str, str] | None = None, *, html: bool = False, extra_html: str = "",
                        uncertainty: dict[str, float] | None = None) -> list[str]:
    """Write the JSON `report`, its plots and per_image.csv and, with `html`, the HTML report beside it.

    The files are named after the report (see score_files.output_prefix); `samples` and `matrices` are in one
    order, as score_predictions returns them. Returns the lines that say what was written.
    """
    report = Path(report)
    write_json(report, scores)
    lines = [f"report written to {report}"]
    lines += write_score_files(report, scores, [s.stem for s in samples], matrices, uncertainty)
    if html:
        page = write_html_report(report.parent, scores, samples, predictions, matrices, groups,
                                 prefix=output_prefix(report), extra_html=extra_html, uncertainty=uncertainty)
        lines.append(f"HTML report written to {page} (open it in a browser; it needs no network)")
    return lines
