"""Milvus Lite's engine process: one per database file, shared by the Stores of this process.

Milvus Lite serves a ``.db`` file from a child process (~100 MB) that holds a lock on the
file. pymilvus starts it through milvus_lite's server manager and never stops it; pixsearch
counts the Stores on each file and stops the engine when the last one closes, and refuses
clearly when another process holds the file.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

from .errors import StoreError

# milvus-lite 2.5 imports pkg_resources, which warns on every start; the pin is deliberate (README).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

_LITE_USERS: dict[str, int] = {}
_LITE_LOCK = threading.Lock()


def lite_path(uri: str) -> Path:
    """The database file a local uri names, as the engine manager keys it (absolute, resolved)."""
    return Path(uri).expanduser().absolute().resolve()


def retain_lite(path: str) -> None:
    """Count one more Store on the engine of *path* (see ``release_lite``)."""
    with _LITE_LOCK:
        _LITE_USERS[path] = _LITE_USERS.get(path, 0) + 1


def release_lite(path: str) -> None:
    """Stop the Milvus Lite engine of *path* when the last Store on it closes.

    Closing a MilvusClient leaves Lite's engine process (~100 MB) running until
    the Python process exits; a server or a test suite opens many files.
    """
    with _LITE_LOCK:
        _LITE_USERS[path] -= 1
        if _LITE_USERS[path] > 0:
            return
        del _LITE_USERS[path]
    try:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)
    except Exception:
        pass


def refuse_if_in_use(db_file: Path) -> None:
    """Fail clearly when another process has this Milvus Lite file open.

    Milvus Lite serves a file from one process at a time. Letting it find that out
    itself is worse than an unclear error: its failed attempt deletes the other
    process's lock file on clean-up. So pixsearch tries the same lock first, unless
    this process already serves the file (closing a probe fd would drop our own lock).
    """
    import fcntl

    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    resolved = db_file.absolute().resolve()
    servers = getattr(server_manager_instance, "_servers", None)
    if servers is None or str(resolved) in servers:
        return
    lock = resolved.parent / f".{resolved.name}.lock"
    if not lock.exists():
        return
    with lock.open("a") as fh:
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StoreError(
                f"{db_file} is in use by another program (Milvus Lite opens a file in one process at a time). "
                "Wait for it, search through its `pixsearch serve`, or use a Milvus server "
                "(--db http://host:19530) for concurrent access."
            ) from None
        fcntl.lockf(fh, fcntl.LOCK_UN)
