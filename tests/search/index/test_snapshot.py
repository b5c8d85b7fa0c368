"""Snapshots: manifest round trip, refusal of damaged snapshots, atomic publishing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from search.errors import SnapshotError
from search.index.snapshot import (
    FORMAT_VERSION,
    LEXICAL,
    MANIFEST,
    PRODUCTS,
    REQUIRED_FILES,
    TERMS,
    VOCABULARY,
    FileEntry,
    Manifest,
    SnapshotWriter,
    read_manifest,
    remove_stale_builds,
    sha256_file,
)
from search.types import Product


@pytest.fixture
def snapshot_copy(core_snapshot: Path, tmp_path: Path) -> Path:
    """A private copy of the shared snapshot, free to damage."""
    return Path(shutil.copytree(core_snapshot, tmp_path / "snapshot"))


def write_files(writer: SnapshotWriter, names: tuple[str, ...] = REQUIRED_FILES) -> None:
    """Write small placeholder files."""
    for name in names:
        writer.path(name).write_bytes(f"content of {name}\n".encode())


def publish(out_dir: Path, *, overwrite: bool = False, extra: tuple[str, ...] = ()) -> Manifest:
    """Publish a placeholder snapshot."""
    with SnapshotWriter(out_dir, overwrite=overwrite) as writer:
        write_files(writer, REQUIRED_FILES + extra)
        return writer.commit(
            catalogue_checksum="abc",
            languages=("en", "pl"),
            counts={"products": 3},
            models={"text_embedder": "none"},
            settings={"k1": 0.9},
        )


def leftovers(parent: Path) -> list[str]:
    """Temporary folders a writer left behind."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def edit_manifest(snapshot: Path, change: Callable[[dict[str, Any]], object]) -> None:
    """Rewrite the manifest with a change applied."""
    path = snapshot / MANIFEST
    data = orjson.loads(path.read_bytes())
    change(data)
    path.write_bytes(orjson.dumps(data))


def flip_byte(path: Path) -> None:
    """Change one byte in the middle of a file, keeping its size."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    """Cut the last bytes off a file."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class TestManifest:
    def test_round_trip(self, tmp_path: Path) -> None:
        manifest = publish(tmp_path / "snap")
        assert read_manifest(tmp_path / "snap") == manifest
        assert Manifest.from_dict(manifest.to_dict()) == manifest
        assert manifest.format_version == FORMAT_VERSION
        assert manifest.languages == ("en", "pl")
        assert manifest.settings == {"k1": 0.9}

    def test_files_are_vouched_for(self, tmp_path: Path) -> None:
        manifest = publish(tmp_path / "snap")
        assert set(manifest.files) == set(REQUIRED_FILES)
        for name, entry in manifest.files.items():
            path = tmp_path / "snap" / name
            assert entry == FileEntry(path.stat().st_size, sha256_file(path))

    def test_snapshot_ids_are_unique(self, tmp_path: Path) -> None:
        first = publish(tmp_path / "a")
        second = publish(tmp_path / "b")
        assert first.snapshot_id != second.snapshot_id

    @pytest.mark.parametrize(
        "data",
        [{}, {"format_version": 1}, {"format_version": "x", "snapshot_id": "s"}],
        ids=["empty", "missing keys", "wrong type"],
    )
    def test_malformed(self, data: dict[str, object]) -> None:
        with pytest.raises(SnapshotError, match=f"{MANIFEST} is malformed"):
            Manifest.from_dict(data)

    def test_built_snapshot_is_readable(self, core_snapshot: Path) -> None:
        manifest = read_manifest(core_snapshot)
        assert manifest.counts["products"] == 12
        assert manifest.counts["text_vectors"] == 0
        assert manifest.languages == ("en", "pl")
        assert manifest.models == {"colour_extractor": "lab-kmeans"}


class TestRefusal:
    """Every damaged snapshot is refused with a SnapshotError that names the file."""

    @pytest.mark.parametrize(
        ("damage", "message"),
        [
            (lambda s: (s / MANIFEST).unlink(), f"{MANIFEST} is missing"),
            (lambda s: (s / MANIFEST).write_bytes(b"{not json"), f"{MANIFEST} is not valid JSON"),
            (lambda s: (s / MANIFEST).write_bytes(b""), f"{MANIFEST} is not valid JSON"),
            (lambda s: (s / MANIFEST).write_bytes(b"[1, 2]"), f"{MANIFEST} is not a JSON object"),
            (
                lambda s: edit_manifest(s, lambda d: d.pop("files")),
                f"{MANIFEST} is malformed",
            ),
            (
                lambda s: edit_manifest(s, lambda d: d.update(format_version=99)),
                "snapshot format 99; this service reads format 1",
            ),
            (
                lambda s: edit_manifest(s, lambda d: d["files"].pop(TERMS)),
                f"does not list required file {TERMS}",
            ),
            (lambda s: (s / VOCABULARY).unlink(), f"file {VOCABULARY} is missing"),
            (lambda s: truncate(s / LEXICAL), f"file {LEXICAL} is .* bytes, the manifest says"),
            (lambda s: flip_byte(s / PRODUCTS), f"file {PRODUCTS} is corrupt"),
        ],
        ids=[
            "missing manifest",
            "manifest not JSON",
            "empty manifest",
            "manifest not an object",
            "manifest without files",
            "unknown format version",
            "required file not listed",
            "missing file",
            "truncated file",
            "flipped byte",
        ],
    )
    def test_damaged_snapshot(
        self, snapshot_copy: Path, damage: Callable[[Path], None], message: str
    ) -> None:
        damage(snapshot_copy)
        with pytest.raises(SnapshotError, match=message) as info:
            read_manifest(snapshot_copy)
        assert str(snapshot_copy) in str(info.value) or MANIFEST in str(info.value)
        with pytest.raises(SnapshotError, match=message):
            open_snapshot(snapshot_copy)

    @pytest.mark.parametrize("name", [PRODUCTS, LEXICAL, VOCABULARY, TERMS])
    def test_flipped_byte_in_any_file(self, snapshot_copy: Path, name: str) -> None:
        flip_byte(snapshot_copy / name)
        with pytest.raises(SnapshotError, match=f"file {name} is corrupt"):
            read_manifest(snapshot_copy)

    def test_flipped_byte_passes_without_verify_but_truncation_does_not(
        self, snapshot_copy: Path
    ) -> None:
        flip_byte(snapshot_copy / TERMS)
        read_manifest(snapshot_copy, verify=False)
        truncate(snapshot_copy / TERMS)
        with pytest.raises(SnapshotError, match=f"file {TERMS} is"):
            read_manifest(snapshot_copy, verify=False)

    def test_missing_folder(self, tmp_path: Path) -> None:
        with pytest.raises(SnapshotError, match="does not exist"):
            read_manifest(tmp_path / "nowhere")

    def test_intact_copy_opens(self, snapshot_copy: Path) -> None:
        assert len(open_snapshot(snapshot_copy)) == 12


class TestWriter:
    def test_publishes_into_place(self, tmp_path: Path) -> None:
        publish(tmp_path / "snap")
        assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == sorted(
            [*REQUIRED_FILES, MANIFEST]
        )
        assert leftovers(tmp_path) == []

    def test_nothing_is_published_until_commit(self, tmp_path: Path) -> None:
        with SnapshotWriter(tmp_path / "snap") as writer:
            write_files(writer)
            assert not (tmp_path / "snap").exists()
            assert writer.work_dir.parent == tmp_path
        assert not (tmp_path / "snap").exists()
        assert leftovers(tmp_path) == []

    def test_error_in_block_leaves_no_half_written_folder(self, tmp_path: Path) -> None:
        with pytest.raises(RuntimeError, match="killed"), SnapshotWriter(tmp_path / "snap") as w:
            write_files(w, (PRODUCTS,))
            raise RuntimeError("killed midway")
        assert list(tmp_path.iterdir()) == []

    def test_error_in_block_keeps_the_existing_snapshot(self, tmp_path: Path) -> None:
        first = publish(tmp_path / "snap")
        with pytest.raises(RuntimeError), SnapshotWriter(tmp_path / "snap", overwrite=True) as w:
            write_files(w, (PRODUCTS,))
            raise RuntimeError("killed midway")
        assert read_manifest(tmp_path / "snap") == first
        assert leftovers(tmp_path) == []

    def test_refuses_existing_snapshot_without_overwrite(self, tmp_path: Path) -> None:
        first = publish(tmp_path / "snap")
        with pytest.raises(SnapshotError, match="exists and is not empty"):
            SnapshotWriter(tmp_path / "snap")
        assert read_manifest(tmp_path / "snap") == first

    def test_overwrite_replaces_the_whole_folder(self, tmp_path: Path) -> None:
        first = publish(tmp_path / "snap", extra=("import_report.json",))
        second = publish(tmp_path / "snap", overwrite=True)
        assert read_manifest(tmp_path / "snap") == second
        assert second.snapshot_id != first.snapshot_id
        assert not (tmp_path / "snap" / "import_report.json").exists()
        assert leftovers(tmp_path) == []

    def test_empty_existing_folder_is_reused(self, tmp_path: Path) -> None:
        (tmp_path / "snap").mkdir()
        publish(tmp_path / "snap")
        assert read_manifest(tmp_path / "snap").files.keys() == set(REQUIRED_FILES)

    def test_creates_missing_parents(self, tmp_path: Path) -> None:
        publish(tmp_path / "a" / "b" / "snap")
        read_manifest(tmp_path / "a" / "b" / "snap")

    def test_a_killed_writers_leftovers_are_removed_by_the_next(self, tmp_path: Path) -> None:
        first = publish(tmp_path / "snap")
        # What a SIGKILL leaves: a half-written folder and a lock file nobody holds, and a
        # replaced snapshot a killed publish had moved aside.
        (tmp_path / ".snap.building-dead0001").mkdir()
        (tmp_path / ".snap.building-dead0001" / PRODUCTS).write_bytes(b"half")
        (tmp_path / ".snap.writer-dead0001.lock").touch()
        shutil.copytree(tmp_path / "snap", tmp_path / ".snap.old-dead0002")
        (tmp_path / ".other.building-keep0001").mkdir()  # another snapshot's: not ours to judge
        with SnapshotWriter(tmp_path / "snap", overwrite=True) as writer:
            assert sorted(p.name for p in tmp_path.iterdir()) == [
                ".other.building-keep0001",
                writer.work_dir.name,
                writer._lock_path.name,
                "snap",
            ]
            write_files(writer)
            writer.commit(catalogue_checksum="", languages=("en",), counts={}, models={})
        assert read_manifest(tmp_path / "snap") != first
        assert sorted(p.name for p in tmp_path.iterdir()) == [".other.building-keep0001", "snap"]

    def test_a_running_writers_folder_is_left_alone(self, tmp_path: Path) -> None:
        with SnapshotWriter(tmp_path / "snap") as running:
            write_files(running)
            assert remove_stale_builds(tmp_path / "snap") == []
            with SnapshotWriter(tmp_path / "snap") as other:
                assert running.work_dir.is_dir() and other.work_dir.is_dir()
            assert running.work_dir.is_dir()
            running.commit(catalogue_checksum="", languages=("en",), counts={}, models={})
        assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]


class TestBuildSnapshot:
    PRODUCTS = (Product(id="1", title="Oak chair"), Product(id="2", title="Oak table"))

    def test_duplicate_ids_are_refused(self, tmp_path: Path) -> None:
        products = (*self.PRODUCTS, Product(id="1", title="Again"))
        with pytest.raises(ValueError, match="unique"):
            build_snapshot(products, tmp_path / "snap", config=BuildConfig(embedder="none"))
        assert not (tmp_path / "snap").exists()

    def test_overwrite_setting(self, tmp_path: Path) -> None:
        config = BuildConfig(embedder="none")
        build_snapshot(self.PRODUCTS, tmp_path / "snap", config=config)
        with pytest.raises(SnapshotError, match="exists"):
            build_snapshot(self.PRODUCTS[:1], tmp_path / "snap", config=config)
        overwrite = BuildConfig(embedder="none", overwrite=True)
        manifest = build_snapshot(self.PRODUCTS[:1], tmp_path / "snap", config=overwrite)
        assert manifest.counts["products"] == 1
        assert len(open_snapshot(tmp_path / "snap")) == 1

    def test_empty_catalogue(self, tmp_path: Path) -> None:
        build_snapshot((), tmp_path / "snap", config=BuildConfig(embedder="none"))
        engine = open_snapshot(tmp_path / "snap")
        assert len(engine) == 0

    @pytest.mark.parametrize("embedder", ["nope", "st:"])
    def test_unknown_embedder(self, tmp_path: Path, embedder: str) -> None:
        with pytest.raises(ValueError, match="valid: minilm"):
            build_snapshot(self.PRODUCTS, tmp_path / "snap", config=BuildConfig(embedder=embedder))

    def test_import_report_and_progress(self, tmp_path: Path) -> None:
        stages: list[str] = []
        build_snapshot(
            self.PRODUCTS,
            tmp_path / "snap",
            config=BuildConfig(embedder="none"),
            import_report={"errors": [{"row": 3}]},
            progress=lambda stage, done, total: stages.append(stage),
        )
        engine = open_snapshot(tmp_path / "snap")
        assert engine.import_report() == {"errors": [{"row": 3}]}
        assert engine.manifest.counts["import_errors"] == 1
        assert {"analyse", "write"} <= set(stages)
