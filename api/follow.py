"""Following the snapshot folder: a worker (or replica) serves what another one published.

With several worker processes (``PRODUCTSEARCH_WORKERS``), a catalogue change or a
``POST /admin/snapshot/reload`` reaches one of them; that worker publishes (or verifies) the
snapshot in the shared folder and serves it. :class:`SnapshotFollower` is how the others catch
up: a thread that reads the folder's manifest every ``snapshot_poll_s`` seconds (a small JSON
read, no hashing) and, when its snapshot id is not the one this process serves, verifies it in
a child process and swaps to it, as the reload route does. A snapshot that fails its checks is
logged once and not retried until the folder changes again; the current one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from search.errors import SnapshotError
from search.index.snapshot import read_manifest

logger = logging.getLogger(__name__)


class SnapshotFollower:
    """A daemon thread that swaps the application to the snapshot published in its folder.

    Args:
        app: The FastAPI application (its ``state.base_engine`` is what it serves).
        settings: The service settings (``index_dir``, ``snapshot_poll_s``).
    """

    def __init__(self, app: Any, settings: Any) -> None:
        self.app = app
        self.settings = settings
        self._stop = threading.Event()
        self._refused: str | None = None
        self._thread = threading.Thread(target=self._run, name="snapshot-follower", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling (a swap under way finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.snapshot_poll_s):
            try:
                self.check()
            except Exception:
                logger.exception("following %s failed", self.settings.index_dir)

    def check(self) -> str | None:
        """Swap to the folder's snapshot if it is not the one served.

        Returns:
            The snapshot id swapped to, or None (nothing new, or it was refused).
        """
        try:
            published = read_manifest(self.settings.index_dir, verify=False).snapshot_id
        except SnapshotError:
            return None  # being replaced right now, or broken: the next poll looks again
        serving = getattr(self.app.state, "base_engine", None)
        if serving is None or published in (serving.manifest.snapshot_id, self._refused):
            return None
        from api.routes.catalogue import reload_from_folder

        try:
            fresh = reload_from_folder(self.app, self.settings)
        except SnapshotError as exc:
            self._refused = published
            logger.error(
                "not serving snapshot %s published in %s: %s",
                published,
                self.settings.index_dir,
                exc,
            )
            return None
        logger.info("following the folder: serving snapshot %s", fresh.manifest.snapshot_id)
        return str(fresh.manifest.snapshot_id)
