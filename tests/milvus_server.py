"""A real Milvus standalone server for the tests, started and stopped by the test session.

The PyPI package ``milvus==2.3.5`` ships a Milvus 2.3 standalone binary and a small
Python launcher (``milvus.main``, also installed as ``milvus-server``). Its pins clash
with pixsearch's, so it lives in its own venv; the tests only need that venv's python:

* ``PIXSEARCH_TEST_MILVUS_SERVER_PYTHON=/path/to/venv/bin/python``, or
* ``.ci/milvus-venv/bin/python`` in the repository (what ``.ci/run`` creates).

How the launcher behaves (read from milvus/__init__.py of 2.3.5):

* every start unpacks the LZMA'd binary and its libraries into ``DATA/bin`` (~4 s of CPU),
  writes ``DATA/configs/milvus.yaml`` from a template and runs ``DATA/bin/milvus run
  standalone`` (embedded etcd, RocksMQ, local storage, all under DATA) as its child;
* it prints a banner ending in "Ctrl+C to exit" once ``/healthz`` answers;
* SIGINT makes it terminate the child (SIGKILL after 1 s) and exit. It never notices
  the child dying on its own, and a killed launcher leaves the child running.

So the launcher runs in its own session (its process group holds the server too) with
PR_SET_PDEATHSIG, so that a killed pytest still stops it; ``stop`` sends SIGINT, then
SIGKILLs the whole group. Every process carries ``PIXSEARCH_MILVUS_LAUNCHER=<python>``
in its environment, which is how ``.ci/run``'s backstop finds leftovers.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_VAR = "PIXSEARCH_TEST_MILVUS_SERVER_PYTHON"
MARKER = "PIXSEARCH_MILVUS_LAUNCHER"
TOKEN = "root:Milvus"
"""The server runs with authentication on, so that a wrong token is a real error."""

# Read at import: the tests' `isolated` fixture clears PIXSEARCH_* variables.
_CONFIGURED = os.environ.get(ENV_VAR, "")

_PORT_KEYS = ("proxy_port", "proxy_internal_port", "etcd_port", "root_coord_port", "query_coord_port",
              "query_node_port", "index_coord_port", "index_node_port", "data_coord_port", "data_node_port")
_COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")


def launcher_python() -> tuple[str, str]:
    """(python, "") when a launcher is usable, else ("", why not)."""
    candidate = _CONFIGURED or str(ROOT / ".ci" / "milvus-venv" / "bin" / "python")
    if not os.access(candidate, os.X_OK):
        how = f"{ENV_VAR}={_CONFIGURED}" if _CONFIGURED else "autodetected .ci/milvus-venv/bin/python"
        return "", (f"no Milvus server launcher ({how} not found): create one with `python3 -m venv "
                    f".ci/milvus-venv && .ci/milvus-venv/bin/pip install milvus==2.3.5`, or set {ENV_VAR}")
    probe = subprocess.run([candidate, "-c", "import milvus; print(milvus.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return "", f"{candidate} cannot import the `milvus` package (pip install milvus==2.3.5 into it)"
    return candidate, ""


def _free_ports(count: int) -> list[int]:
    """Distinct ports the kernel just handed out (free now; the launcher binds them moments later)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class MilvusServer:
    """One Milvus standalone process tree on loopback ports with a private data directory."""

    def __init__(self, python: str, data_dir: Path | None = None):
        self.python = python
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="pixsearch-milvus-"))
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log = self.data_dir / "launcher.log"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> MilvusServer:
        free = _free_ports(len(_PORT_KEYS) + 2)
        ports = dict(zip(_PORT_KEYS, free[:-2], strict=True))
        self.port = ports["proxy_port"]
        # The embedded etcd listens on 2379/2380 whatever the launcher says, so two servers on one
        # machine collide; Milvus reads ETCD_CONFIG_PATH (etcd.config.path) for its own ports.
        etcd_client, etcd_peer = free[-2:]
        etcd_config = self.data_dir / "etcd.yaml"
        etcd_config.write_text(
            "name: pixsearch-test\n"
            f"listen-client-urls: http://127.0.0.1:{etcd_client}\nadvertise-client-urls: http://127.0.0.1:{etcd_client}\n"
            f"listen-peer-urls: http://127.0.0.1:{etcd_peer}\ninitial-advertise-peer-urls: http://127.0.0.1:{etcd_peer}\n"
            f"initial-cluster: pixsearch-test=http://127.0.0.1:{etcd_peer}\n")
        args = [self.python, "-c", "import sys, milvus; sys.exit(milvus.main())",
                "--data", str(self.data_dir / "milvus"), "--authorization-enabled", "true"]
        for key, port in ports.items():
            args += ["--" + key.replace("_", "-"), str(port)]
        for component in _COMPONENTS:  # advertise loopback, not the first non-loopback interface
            args += ["--extra-config", f"{component}.ip=127.0.0.1"]
        args += ["--extra-config", "queryCoord.checkInterval=200"]  # loads a new collection sooner
        env = {**os.environ, MARKER: self.python}
        env = {k: v for k, v in env.items() if not k.startswith("PYTHON")}  # not the tests' PYTHONPATH etc.
        env["PYTHONUNBUFFERED"] = "1"  # the banner must reach the log as soon as it is printed
        env["ETCD_CONFIG_PATH"] = str(etcd_config)
        with self.log.open("w") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            cwd=self.data_dir, env=env, start_new_session=True,
                                            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if "Ctrl+C to exit" in text:
                break
            if self.process.poll() is not None or self._server_died() or "already stopped" in text:
                tail = self.log_tail()
                self.kill()
                raise RuntimeError(f"Milvus server did not start:\n{tail}")
            time.sleep(0.2)
        else:
            tail = self.log_tail()
            self.kill()
            raise RuntimeError(f"Milvus server not up after {timeout:.0f} s:\n{tail}")
        return self

    def _server_died(self) -> bool:
        """The launcher's child exited (the launcher itself never notices and waits forever)."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            return any(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
                       for child in children)
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        logs = [self.log, self.data_dir / "milvus" / "logs" / "milvus-stdout.log"]
        tails = [f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                 for p in logs if p.exists()]
        if self.process is not None:
            ps = subprocess.run(["ps", "-o", "pid,stat,etime,args", "-g", str(self.process.pid)],
                                capture_output=True, text=True)
            tails.append(f"--- processes of the launcher's session\n{ps.stdout}")
        return "\n".join(tails)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGINT to the launcher (it stops the server), then SIGKILL whatever is left of the group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the launcher's session: launcher and server
        except ProcessLookupError:
            pass
        self.process.wait()
        self.process = None

    def remove_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> MilvusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
