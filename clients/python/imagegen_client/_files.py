"""Writing a download safely: into ``NAME.part`` beside the target, hashed on the way, moved
into place only when its sha256 and size match the image's."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from imagegen_client.errors import ChecksumMismatch
from imagegen_client.resources import Image

#: A link this close to its expiry is refreshed before use (a large file takes a while).
EXPIRY_MARGIN = timedelta(seconds=30)
CHUNK = 1024 * 1024


def expired(image: Image, now: datetime | None = None) -> bool:
    """No link, or one past (or about to pass) its ``expires_at``."""
    if not image.url:
        return True
    if image.expires_at is None:
        return False
    return image.expires_at <= (now or datetime.now(timezone.utc)) + EXPIRY_MARGIN


def local_path(url: str) -> Path | None:
    """The file of a ``file://`` link (the embedded mode stores images in a folder)."""
    parts = urlsplit(url)
    return Path(url2pathname(unquote(parts.path))) if parts.scheme == "file" else None


class Sink:
    """Where one download goes; ``finish`` checks it and moves it into place."""

    def __init__(self, image: Image, target: str | os.PathLike[str]) -> None:
        self.image, self.target = image, Path(target)
        self.part = self.target.with_name(self.target.name + ".part")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.part.open("wb")
        self.hash, self.size = hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.hash.update(chunk)
        self.size += len(chunk)

    def finish(self) -> Path:
        self.file.close()
        digest = self.hash.hexdigest()
        if digest != self.image.sha256 or self.size != self.image.bytes:
            self.part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"image {self.image.index} of job {self.image.job_id}: got {self.size} bytes "
                f"with sha256 {digest}, expected {self.image.bytes} with {self.image.sha256}"
            )
        os.replace(self.part, self.target)
        return self.target

    def discard(self) -> None:
        self.file.close()
        self.part.unlink(missing_ok=True)
