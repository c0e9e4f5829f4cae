"""Where segtrain writes, checked before any work: a folder that can be made and written in, and the manifests of
the files a command wrote into a shared folder, so that segtrain-predict and segtrain-export never write over a
file they did not write themselves."""
import json
import os
from pathlib import Path

from .errors import SegtrainError


def require_creatable(folder: Path, key: str) -> None:
    """`folder` (named by the command line's `key`) can be created and written in: its nearest existing ancestor
    is a writable folder, not a file."""
    folder = Path(folder).expanduser()
    existing = next((p for p in [folder, *folder.parents] if p.exists()), Path("."))
    if existing.exists() and not existing.is_dir():
        raise SegtrainError(f"{key}={folder}: {existing} is a file, not a folder; choose another {key}")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise SegtrainError(f"{key}={folder}: cannot write in {existing} (permission denied); choose another {key}")


def require_writable(folder: Path, key: str) -> None:
    """`folder` is made and takes a file now, not at the first checkpoint."""
    probe = folder / f".segtrain-write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SegtrainError(f"{key}={folder}: cannot write there ({e.strerror})") from None


class Manifest:
    """The names of the files a command wrote into `folder`, kept in a JSON list there (`name`)."""

    def __init__(self, folder: Path, name: str):
        self.path = Path(folder) / name

    def written(self) -> set:
        try:
            return set(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return set()

    def foreign(self, names) -> list:
        """Those of `names` that exist in the folder and were not written by the command."""
        ours = self.written()
        return sorted(name for name in names if (self.path.parent / name).exists() and name not in ours)

    def record(self, names) -> None:
        self.path.write_text(json.dumps(sorted(self.written() | set(names))))
