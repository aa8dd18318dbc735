"""``imagegen export --batch ID DIR``: a batch's images copied out of storage, manifest beside.

Files are named ``images/{position:06d}_{ref or job id}_{index}.png`` (batch order, readable,
unique); each download is checked against the recorded sha256 and written atomically, and a
file already present with the right checksum is not fetched again, so an interrupted export
resumes. ``manifest.jsonl`` is the batch manifest with each line's ``files``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.blobs.storage import ObjectStore
from worker.core.errors import StorageError
from worker.service.batches import manifest

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME_CHARS = 80


@dataclass
class ExportResult:
    folder: Path
    jobs: int = 0
    files: int = 0
    fetched: int = 0
    failures: list[str] = field(default_factory=list)


def file_name(line: dict[str, Any], image: dict[str, Any]) -> str:
    """``images/000042_my-ref_0.png``: position in the batch, the ref (or job id), index."""
    label = _UNSAFE.sub("_", line["ref"] or line["job_id"]).strip("._")[:_MAX_NAME_CHARS]
    return f"images/{line['index']:06d}_{label or line['job_id']}_{image['index']}.png"


def export_batch(
    batch_id: uuid.UUID,
    folder: Path,
    *,
    store: ObjectStore,
    concurrency: int = 8,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Download every stored image of the batch into ``folder``; write ``manifest.jsonl``."""
    lines = list(manifest(batch_id))
    (folder / "images").mkdir(parents=True, exist_ok=True)
    result = ExportResult(folder=folder, jobs=len(lines))
    wanted = [(line, image) for line in lines for image in line["images"]]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = pool.map(lambda pair: _fetch(store, folder, *pair), wanted)
        for (line, image), outcome in zip(wanted, outcomes, strict=True):
            _tally(result, line, image, outcome)
            if progress:
                progress(1)
    _write_manifest(folder, lines)
    return result


def _tally(
    result: ExportResult, line: dict[str, Any], image: dict[str, Any], outcome: str | bool
) -> None:
    if isinstance(outcome, str):
        result.failures.append(f"{line['job_id']} image {image['index']}: {outcome}")
        return
    result.files += 1
    result.fetched += int(outcome)


def _fetch(
    store: ObjectStore, folder: Path, line: dict[str, Any], image: dict[str, Any]
) -> str | bool:
    """True if downloaded, False if already there, or the reason it failed."""
    target = folder / file_name(line, image)
    if target.exists() and _sha256(target.read_bytes()) == image["sha256"]:
        return False
    if image["bucket"] != store.bucket:
        return f"stored in bucket {image['bucket']}, but the configured store is {store.bucket}"
    try:
        data = store.get(image["key"])
    except StorageError as exc:
        return exc.message
    if _sha256(data) != image["sha256"]:
        return "the stored object does not match its recorded sha256"
    _write_atomically(target, data)
    return True


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomically(target: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)


def _write_manifest(folder: Path, lines: list[dict[str, Any]]) -> None:
    with (folder / "manifest.jsonl.tmp").open("w") as out:
        for line in lines:
            files = [file_name(line, image) for image in line["images"]]
            out.write(json.dumps({**line, "files": files}) + "\n")
    os.replace(folder / "manifest.jsonl.tmp", folder / "manifest.jsonl")
