"""Which files to convert: what inputs name, less what dsocr itself wrote into output folders.

Without this, an output folder inside the input folder would be read again on the next
run, its figure crops and previews converted as new documents.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from dsocr_connectors.pipeline.manifest import DATABASE, PRIVATE

log = logging.getLogger(__name__)

ARTIFACT_FOLDERS = (".figures", ".preview", ".raw")


def collect_sources(inputs: str | os.PathLike | Iterable[str | os.PathLike], output: str | Path,
                    *, recursive: bool = True) -> list[Path]:
    """The files that inputs name (`loaders.iter_sources`), less what was written by dsocr:
    files found in a folder that holds an output folder (`output`, or any folder with a
    `.dsocr/` manifest) are left out when they lie inside it, and in any case when they
    lie in a document's `<stem>.figures/`, `.preview/` or `.raw/` there. Files named
    one by one are always kept."""
    import loaders

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    output = Path(output).resolve()
    is_output = _OutputFolders(output)
    found: list[Path] = []
    seen: set[Path] = set()
    skipped = 0
    for item in inputs:
        named = Path(item)
        top = None if named.is_file() else _walk_top(str(item))
        for path in loaders.iter_sources([item], recursive=recursive):
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            if top is not None and _is_written_by_dsocr(resolved, top, is_output):
                skipped += 1
                continue
            found.append(path)
    if skipped:
        log.info("left out %d files inside output folders", skipped)
    return found


class _OutputFolders:
    """Whether a folder is an output folder (cached: thousands of files share folders)."""

    def __init__(self, output: Path) -> None:
        self.known: dict[Path, bool] = {output: True}

    def __call__(self, folder: Path) -> bool:
        if folder not in self.known:
            self.known[folder] = (folder / PRIVATE / DATABASE).is_file()
        return self.known[folder]


def _walk_top(item: str) -> Path:
    """The folder a walk or a glob pattern starts from, resolved."""
    plain: list[str] = []
    for part in Path(item).parts:
        if set(part) & set("*?["):
            break
        plain.append(part)
    return Path(*plain).resolve() if plain else Path.cwd().resolve()


def _is_written_by_dsocr(path: Path, top: Path, is_output: Callable[[Path], bool]) -> bool:
    parent = path.parent
    if parent.name.endswith(ARTIFACT_FOLDERS) and is_output(parent.parent):
        return True
    for folder in path.parents:
        if folder == top or top not in folder.parents:
            return False
        if is_output(folder):
            return True
    return False
