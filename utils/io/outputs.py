"""Output paths checked before the first write: never an input file, never inside a data set's own folders."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from utils.errors import UserError


def resolved(path: str | os.PathLike) -> Path:
    """`path` absolute, with '~', '..' and symbolic links resolved (it need not exist)."""
    return Path(path).expanduser().resolve()


def _inode(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file, else None: two names of one inode are one file (hard links)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def dataset_folder_of(path: str | os.PathLike, folder_names: Sequence[str]) -> Path | None:
    """The data set folder (e.g. <root>/Labels) that `path` is or lies in, else None.

    A folder counts when it has one of `folder_names` and its parent holds at least two of them, so an
    unrelated folder that happens to be called 'Labels' is not mistaken for a data set's.
    """
    path = resolved(path)
    for folder in (path, *path.parents):
        if folder.name in folder_names and sum((folder.parent / name).is_dir() for name in folder_names) >= 2:
            return folder
    return None


def check_outputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike],
                  folder_names: Sequence[str] = ()) -> None:
    """Refuse, in one UserError, an output that is one of the inputs or lies in a data set's `folder_names`."""
    inputs = [Path(path) for path in inputs]
    by_path = {resolved(path): path for path in inputs}
    by_inode = {inode: path for path in inputs if (inode := _inode(path)) is not None}
    folders: dict[Path, Path | None] = {}  # per parent: thousands of outputs share a handful of folders
    for output in outputs:
        parent = Path(output).parent
        if parent not in folders:
            folders[parent] = dataset_folder_of(parent, folder_names) if folder_names else None
        folder = folders[parent]
        if folder is None and Path(output).name in folder_names:
            folder = dataset_folder_of(output, folder_names)
        if folder is not None:
            raise UserError(f"refusing to write {output}: it lies in the data set folder {folder}, whose files are "
                            f"inputs; write outside {', '.join(f'{name}/' for name in folder_names)}")
        clash = by_path.get(resolved(output)) or by_inode.get(_inode(Path(output)))
        if clash is not None:
            raise UserError(f"refusing to write {output}: it is the input {clash}; choose another output")
