"""Index snapshots: an immutable, versioned folder with a manifest that vouches for every file.

A snapshot is written into a temporary sibling folder and renamed into place, so a build killed
midway never leaves a half-written snapshot where a service could load it. Loading checks the
format version and each file's size and SHA-256, and refuses anything that does not match with a
:class:`~search.errors.SnapshotError` naming the file.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from search.errors import SnapshotError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"

# The files a snapshot is made of. Optional files may be absent (e.g. no text vectors).
PRODUCTS = "products.jsonl"
LEXICAL = "lexical.npz"
VOCABULARY = "vocabulary.json"
TERMS = "terms.json"
TEXT_VECTORS = "text_vectors.npy"
TEXT_ANN = "text_vectors.hnsw"
# A compressed faiss index (HNSW-SQ8, IVF-SQ8 or IVF-PQ) over the text vectors, instead of the
# HNSW graph over floats; the manifest's ``settings["text_index"]`` names the kind (absent in
# snapshots from before: ``hnsw`` when TEXT_ANN is there, else flat).
TEXT_COMPRESSED = "text_vectors.compressed.faiss"
IMPORT_REPORT = "import_report.json"
COLOURS = "colours.json"
IMAGE_VECTORS = "image_vectors.npy"
IMAGE_HAS = "image_has_vector.npy"
IMAGE_ANN = "image_vectors.hnsw"
IMAGE_COMPRESSED = "image_vectors.compressed.faiss"
IMAGE_REPORT = "image_report.json"
IMAGE_ADAPTER = "image_adapter.npz"
COLOUR_REPORT = "colour_report.json"
# The as-you-type suggester's phrases (search.suggest.Suggester.arrays), built with the snapshot
# so a service does not build them at start-up; absent in snapshots from before (built on use).
SUGGESTIONS = "suggestions.npz"
REQUIRED_FILES = (PRODUCTS, LEXICAL, VOCABULARY, TERMS)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A snapshot file's size and SHA-256."""

    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a snapshot holds and how it was built.

    Attributes:
        format_version: Snapshot format; a service refuses versions it does not know.
        snapshot_id: Unique id of this build.
        created_at: Build time (ISO 8601, UTC).
        catalogue_checksum: SHA-256 of the source catalogue file.
        languages: Analysis languages, the catalogue default first.
        counts: Products, terms, vectors, import errors...
        models: Model role -> spec (e.g. ``{"text_embedder": "minilm"}``) and their versions.
        settings: Build settings that affect query-time behaviour.
        files: File name -> size and SHA-256.
    """

    format_version: int
    snapshot_id: str
    created_at: str
    catalogue_checksum: str
    languages: tuple[str, ...]
    counts: Mapping[str, int]
    models: Mapping[str, str]
    settings: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, FileEntry] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the content of ``manifest.json``)."""
        return {
            "format_version": self.format_version,
            "snapshot_id": self.snapshot_id,
            "created_at": self.created_at,
            "catalogue_checksum": self.catalogue_checksum,
            "languages": list(self.languages),
            "counts": dict(self.counts),
            "models": dict(self.models),
            "settings": dict(self.settings),
            "files": {n: {"size": f.size, "sha256": f.sha256} for n, f in self.files.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse ``manifest.json`` content.

        Raises:
            SnapshotError: a key is missing or has the wrong type.
        """
        try:
            return cls(
                format_version=int(data["format_version"]),
                snapshot_id=str(data["snapshot_id"]),
                created_at=str(data["created_at"]),
                catalogue_checksum=str(data["catalogue_checksum"]),
                languages=tuple(data["languages"]),
                counts={str(k): int(v) for k, v in data["counts"].items()},
                models={str(k): str(v) for k, v in data["models"].items()},
                settings=dict(data.get("settings") or {}),
                files={
                    str(n): FileEntry(int(f["size"]), str(f["sha256"]))
                    for n, f in data["files"].items()
                },
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SnapshotError(f"{MANIFEST} is malformed: {exc!r}") from exc


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class SnapshotWriter:
    """Writes a snapshot into a temporary folder, then moves it into place atomically.

    Use as a context manager: files go to :attr:`work_dir`; :meth:`commit` writes the manifest
    and renames the folder to ``out_dir`` (exchanging it with an existing snapshot in one step
    on Linux, see :func:`_publish`). Leaving the block without committing removes the
    temporary folder and leaves any existing ``out_dir`` untouched.

    A writer holds an exclusive ``flock`` on a lock file beside its temporary folder
    (``.<name>.writer-<id>.lock``) until it is done. A build that was killed leaves its folder
    behind with a lock nobody holds: the next writer of the same snapshot removes such folders
    (and replaced snapshots a killed publish left, ``.<name>.old-<id>``) before it starts, and
    leaves alone those of builds still running.

    Args:
        out_dir: Final snapshot folder.
        overwrite: Replace an existing snapshot at ``out_dir``.

    Raises:
        SnapshotError: ``out_dir`` exists, is not empty and ``overwrite`` is False.
    """

    def __init__(self, out_dir: Path, *, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and any(self.out_dir.iterdir()) and not overwrite:
            raise SnapshotError(
                f"{self.out_dir} exists and is not empty (pass overwrite to replace it)"
            )
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        self.work_dir = self.out_dir.parent / f".{self.out_dir.name}.building-{token}"
        self._lock_path = _lock_path(self.out_dir, token)
        self._lock: IO[bytes] | None = None
        self._committed = False

    def __enter__(self) -> SnapshotWriter:
        self._lock = _hold(self._lock_path)  # before the folder exists: never unowned
        remove_stale_builds(self.out_dir)
        self.work_dir.mkdir(parents=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._committed:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        if self._lock is not None:
            self._lock_path.unlink(missing_ok=True)
            self._lock.close()  # releases the flock
            self._lock = None

    def path(self, name: str) -> Path:
        """Where to write one snapshot file."""
        return self.work_dir / name

    def commit(
        self,
        *,
        catalogue_checksum: str,
        languages: tuple[str, ...],
        counts: Mapping[str, int],
        models: Mapping[str, str],
        settings: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Checksum the files, write the manifest and swap the folder into place."""
        files = {
            p.name: FileEntry(p.stat().st_size, sha256_file(p))
            for p in sorted(self.work_dir.iterdir())
            if p.is_file()
        }
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            snapshot_id=datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8],
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            catalogue_checksum=catalogue_checksum,
            languages=languages,
            counts=dict(counts),
            models=dict(models),
            settings=dict(settings or {}),
            files=files,
        )
        manifest_path = self.work_dir / MANIFEST
        manifest_path.write_bytes(orjson.dumps(manifest.to_dict(), option=orjson.OPT_INDENT_2))
        _fsync_dir_files(self.work_dir)
        old = _publish(self.work_dir, self.out_dir)
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return manifest


def _lock_path(out_dir: Path, token: str) -> Path:
    return out_dir.parent / f".{out_dir.name}.writer-{token}.lock"


def _hold(path: Path) -> IO[bytes]:
    """Open (creating) a lock file and hold an exclusive flock on it."""
    handle = path.open("ab")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


@contextmanager
def changes_lock(out_dir: Path) -> Iterator[None]:
    """Hold the folder's changes lock: one change (a delta, a swap) at a time across every
    process serving ``out_dir`` (a service's workers), so none builds on a snapshot another is
    replacing. The lock file sits beside the folder (``.<name>.changes.lock``) and is kept."""
    handle = _hold(out_dir.parent / f".{out_dir.name}.changes.lock")
    try:
        yield
    finally:
        handle.close()  # releases the flock


def _is_held(path: Path) -> bool:
    """Whether a live process holds the flock on a lock file (False when it is missing)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def remove_stale_builds(out_dir: Path) -> list[Path]:
    """Remove what killed writers of ``out_dir`` left beside it: temporary folders whose
    writer's lock nobody holds, and replaced snapshots a killed publish did not delete.

    Returns:
        The folders removed.
    """
    out_dir = Path(out_dir)
    removed: list[Path] = []
    prefix = f".{out_dir.name}."
    if not out_dir.parent.is_dir():
        return removed
    for path in sorted(out_dir.parent.glob(prefix + "*")):
        kind, _, token = path.name[len(prefix) :].partition("-")
        if kind == "building" and path.is_dir():
            if _is_held(_lock_path(out_dir, token)):
                continue  # a build that is still running
        elif kind == "old" and path.is_dir():
            pass  # a replaced snapshot: nothing reads it once the new one is in place
        elif kind == "writer" and path.suffix == ".lock" and not path.is_dir():
            stem = path.name[len(prefix) + len("writer-") : -len(".lock")]
            if not (out_dir.parent / f"{prefix}building-{stem}").exists() and not _is_held(path):
                path.unlink(missing_ok=True)
            continue
        else:
            continue
        shutil.rmtree(path, ignore_errors=True)
        _lock_path(out_dir, token).unlink(missing_ok=True)
        removed.append(path)
    return removed


#: ``renameat2`` flag: swap two paths atomically (Linux 3.15+, ext4, xfs, btrfs, tmpfs...).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system cannot."""
    if sys.platform != "linux":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # no glibc 2.28+ (e.g. musl)
        return False
    done = renameat2(
        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), ctypes.c_uint(_RENAME_EXCHANGE)
    )
    return done == 0  # EINVAL / ENOSYS: the file system or kernel cannot; fall back


def _publish(work_dir: Path, out_dir: Path) -> Path | None:
    """Put the finished ``work_dir`` at ``out_dir``.

    An existing snapshot is swapped out in one atomic exchange, so there is no moment without
    a complete snapshot at ``out_dir``, even if the process is killed (a SIGKILL between two
    plain renames would leave none there). Where the exchange is not available, the old one
    is renamed aside first, which leaves that short window.

    Returns:
        Where the replaced snapshot now is (to delete), or None when there was none.
    """
    if out_dir.exists():
        if _exchange(work_dir, out_dir):
            return work_dir
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out_dir, old)
        os.replace(work_dir, out_dir)
        return old
    os.replace(work_dir, out_dir)
    return None


def _fsync_dir_files(folder: Path) -> None:
    for p in folder.iterdir():
        with p.open("rb") as fh:
            os.fsync(fh.fileno())


def read_manifest(snapshot_dir: Path, *, verify: bool = True) -> Manifest:
    """Read and check a snapshot's manifest.

    Args:
        snapshot_dir: The snapshot folder.
        verify: Also check every file's size and SHA-256.

    Returns:
        The manifest.

    Raises:
        SnapshotError: missing folder or manifest, unknown format version, missing or corrupt
            file; the message names the file and what is wrong.
    """
    snapshot_dir = Path(snapshot_dir)
    manifest_path = snapshot_dir / MANIFEST
    if not snapshot_dir.is_dir():
        raise SnapshotError(f"snapshot folder {snapshot_dir} does not exist")
    if not manifest_path.is_file():
        raise SnapshotError(f"{snapshot_dir} is not a snapshot: {MANIFEST} is missing")
    try:
        data = orjson.loads(manifest_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"{manifest_path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SnapshotError(f"{manifest_path} is not a JSON object")
    manifest = Manifest.from_dict(data)
    if manifest.format_version != FORMAT_VERSION:
        raise SnapshotError(
            f"{snapshot_dir} has snapshot format {manifest.format_version}; this service reads "
            f"format {FORMAT_VERSION}: rebuild the snapshot with this version's indexer"
        )
    for name in REQUIRED_FILES:
        if name not in manifest.files:
            raise SnapshotError(f"{snapshot_dir}: manifest does not list required file {name}")
    for name, entry in manifest.files.items():
        path = snapshot_dir / name
        if not path.is_file():
            raise SnapshotError(f"{snapshot_dir}: file {name} is missing")
        size = path.stat().st_size
        if size != entry.size:
            raise SnapshotError(
                f"{snapshot_dir}: file {name} is {size} bytes, the manifest says {entry.size} (truncated or replaced)"
            )
        if verify and sha256_file(path) != entry.sha256:
            raise SnapshotError(
                f"{snapshot_dir}: file {name} is corrupt (SHA-256 does not match the manifest)"
            )
    return manifest


# --------------------------------------------------------------------------------------------
# The last good snapshot: what a restart serves when the snapshot folder fails its checks


def last_good_path(snapshot_dir: Path) -> Path:
    """Where the last snapshot a service verified and served is kept, beside ``snapshot_dir``
    (``.<name>.lastgood``)."""
    snapshot_dir = Path(snapshot_dir)
    return snapshot_dir.parent / f".{snapshot_dir.name}.lastgood"


def record_last_good(snapshot_dir: Path, manifest: Manifest) -> Path:
    """Keep ``snapshot_dir`` (just verified and put into service) as the last good snapshot.

    The files are hard-linked (copied where the file system cannot link), so keeping it costs no
    disk while the snapshot is served. Publishing a new snapshot writes new files, so a bad
    build, a half-finished copy or a rename over a file leaves the kept one intact; only
    writing into a served file in place (``cp`` over it) would reach both. The kept folder is
    replaced atomically, like a published snapshot.

    Args:
        snapshot_dir: The snapshot that was verified and served.
        manifest: Its manifest (only the files it lists are kept, with the manifest).

    Returns:
        The last good folder.

    Raises:
        OSError: the folder could not be written.
    """
    snapshot_dir = Path(snapshot_dir)
    target = last_good_path(snapshot_dir)
    # An ``old-`` name: if this process dies midway, the next writer's stale-build sweep
    # removes the half-made folder.
    work = snapshot_dir.parent / f".{snapshot_dir.name}.old-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        for name in [*manifest.files, MANIFEST]:
            source = snapshot_dir / name
            try:
                os.link(source, work / name)
            except OSError:
                shutil.copy2(source, work / name)
        old = _publish(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def same_snapshot(a: Path, b: Path) -> bool:
    """Whether two snapshot folders hold the same files (hard links of each other): true
    when ``b`` was recorded from ``a`` and neither was replaced since."""
    try:
        manifest_a = (Path(a) / MANIFEST).stat()
        manifest_b = (Path(b) / MANIFEST).stat()
    except OSError:
        return False
    return (manifest_a.st_dev, manifest_a.st_ino) == (manifest_b.st_dev, manifest_b.st_ino)
