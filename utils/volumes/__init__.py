"""CT/MRI volumes end to end: NIfTI geometry, DICOM series, volume prediction, per-volume metrics in mm."""
