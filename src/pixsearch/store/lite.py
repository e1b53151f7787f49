"""Milvus Lite's engine process: one per database file, shared by the Stores of this process.

Milvus Lite serves a ``.db`` file from a child process (~100 MB) that holds a lock on the
file and listens on a unix socket. pixsearch starts it through milvus_lite's server manager
(as pymilvus would), but does not trust milvus_lite's "alive after 0.5 s" check: it waits
until the socket accepts a connection, and starts the engine again (up to ``ENGINE_TRIES``
times, within the Store's timeout) when it died on the way. pixsearch counts the Stores on
each file and stops the engine when the last one closes, and refuses clearly when another
process holds the file.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from .errors import StoreError

# milvus-lite 2.5 imports pkg_resources, which warns on every start; the pin is deliberate (README).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

ENGINE_TRIES = 3
"""Engine starts per open before giving up (a failed start is rare; three in a row is not chance)."""
MAX_NAME = 36
"""Longest database file name Milvus Lite 2.5 accepts."""
_NAME = re.compile(r"^[a-zA-Z0-9.\-_]+$")
"""The characters Milvus Lite 2.5 accepts in a database file name."""
GRPC_OPTIONS: dict[str, Any] = {
    # pymilvus pings every 10 s, idle or not; Lite's gRPC server allows a ping without calls only
    # every 5 minutes and, after a few, answers GOAWAY "too_many_pings" (seen after ~130 s idle) and
    # logs it. A unix socket to a child process needs no keepalive: its death closes the socket.
    "grpc.keepalive_time_ms": 2**31 - 1,
    "grpc.keepalive_permit_without_calls": 0,
}
"""gRPC channel options for the connection to a Milvus Lite engine."""

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


def check_name(db_file: Path) -> None:
    """Refuse, saying why, a file name Milvus Lite cannot serve (instead of its own misleading failure)."""
    name = db_file.name
    if not name.endswith(".db"):
        raise StoreError(f"cannot use {db_file} as a Milvus Lite database: the file name must end in .db "
                         "(or pass a server address, http://host:19530)")
    if not _NAME.match(name):
        raise StoreError(f"cannot use {db_file} as a Milvus Lite database: Milvus Lite accepts only letters, digits, "
                         f"'.', '-' and '_' in the file name; rename it, e.g. --db {db_file.with_name('pixsearch.db')}")
    if len(name) > MAX_NAME:
        raise StoreError(f"cannot use {db_file} as a Milvus Lite database: its file name {name!r} has {len(name)} "
                         f"characters and Milvus Lite accepts at most {MAX_NAME} characters; choose a shorter name, "
                         f"e.g. --db {db_file.with_name('pixsearch.db')} (the folder may be anything)")


def start_engine(db_file: Path, timeout: float) -> str:
    """Start (or find running) the engine of *db_file*; its ``unix:`` address, once it accepts connections.

    *db_file*: absolute and resolved (``lite_path``). Gives up after ``ENGINE_TRIES`` failed starts or
    *timeout* seconds, with a message naming the file.
    """
    from milvus_lite.server_manager import server_manager_instance as manager

    started = time.monotonic()
    deadline = started + timeout
    failures: list[str] = []
    while len(failures) < ENGINE_TRIES and time.monotonic() < deadline:
        address = manager.start_and_get_uri(str(db_file))
        if address is None:
            failures.append("the engine exited within 0.5 s")
            continue
        outcome = _wait_until_accepting(address.removeprefix("unix:"), _engine_process(manager, db_file), deadline)
        if outcome is None:
            return str(address)
        manager.release_server(str(db_file))  # stop what is left of it before starting afresh
        failures.append(outcome)
    refuse_if_in_use(db_file)  # another program took the file meanwhile: say that, not "failed"
    reasons = "; ".join(dict.fromkeys(failures))  # the same reason each time is said once
    raise StoreError(
        f"cannot open Milvus Lite database {db_file}: its engine did not come up in {len(failures)} start(s) "
        f"over {time.monotonic() - started:.1f} s ({reasons}; the engine's own log, if any, is above). "
        f"Check that {db_file.parent} is writable and not full, and that {db_file.name} is a Milvus Lite "
        "database (not damaged, not another kind of file); then try again."
    )


def _engine_process(manager: Any, db_file: Path) -> subprocess.Popen[bytes] | None:
    """The engine's process, from the manager's records (None if this milvus_lite keeps it elsewhere)."""
    server = getattr(manager, "_servers", {}).get(str(db_file))
    process = getattr(server, "_p", None)
    return process if isinstance(process, subprocess.Popen) else None


def _wait_until_accepting(socket_path: str, process: subprocess.Popen[bytes] | None, deadline: float) -> str | None:
    """Wait until the engine accepts on *socket_path*: None when it does, else what went wrong.

    Between tries it waits on the engine process itself, so its death ends the wait at once.
    """
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(socket_path)
                return None
            except (FileNotFoundError, ConnectionRefusedError):
                pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "the engine did not accept connections in time"
        if process is None:
            time.sleep(min(0.02, remaining))
            continue
        try:
            code = process.wait(timeout=min(0.02, remaining))
        except subprocess.TimeoutExpired:
            continue
        return f"the engine exited with status {code}"
