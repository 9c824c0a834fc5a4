"""A simulated host's hypervisor as a daemon of its own, outliving its compute worker.

On a real compute host libvirtd is a daemon and a crash of the compute worker
leaves the guests running.  A simulated host gets the same: a session-mode
libvirtd of its own (runtime directory under the host's state directory),
serving libvirt's test driver at ``test+unix:///default?socket=<socket>``.
The test driver's state is shared by every connection to that daemon but is
discarded when the last one closes, so a small supervisor process holds one
connection open for as long as the host "exists"; the compute worker connects
and disconnects (and crashes) as it likes.

    python -m virt.hostd <state_dir>        # the supervisor (started detached)

:func:`ensure_running` starts the supervisor if it is not running and returns
the URI; :func:`stop` ends it and its libvirtd.  As root, libvirtd runs as the
unprivileged user ``vmflowhv`` (made by scripts/setup.sh), since a root
libvirtd would run in system mode.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libvirt

DAEMON_USER = "vmflowhv"
START_TIMEOUT = 30.0


def _runtime(state_dir: Path) -> Path:
    """The daemon's own directories: short (a unix socket path has at most 108
    bytes) and reachable by the daemon's user (state directories may not be)."""
    key = hashlib.sha1(str(Path(state_dir).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "vmflowhv" / key


def socket_path(state_dir: Path) -> Path:
    return _runtime(state_dir) / "run" / "libvirt" / "libvirt-sock"


def uri(state_dir: Path) -> str:
    return f"test+unix:///default?socket={socket_path(state_dir)}"


def _own_dir(state_dir: Path) -> Path:
    """Where the supervisor keeps its pid file and log (in the host's state)."""
    return Path(state_dir) / "hypervisor"


def _pid_file(state_dir: Path) -> Path:
    return _own_dir(state_dir) / "supervisor.pid"


def is_running(state_dir: Path) -> bool:
    """Whether the host's daemon answers (its supervisor holds it open)."""
    if not socket_path(state_dir).exists():
        return False
    try:
        libvirt.open(uri(state_dir)).close()
    except libvirt.libvirtError:
        return False
    return True


def ensure_running(state_dir: Path) -> str:
    """Start the host's supervisor (detached, so it outlives the caller) unless
    its daemon already answers; return the URI to connect to."""
    state_dir = Path(state_dir)
    if not is_running(state_dir):
        _own_dir(state_dir).mkdir(parents=True, exist_ok=True)
        log = open(_own_dir(state_dir) / "supervisor.log", "ab")  # noqa: SIM115 (child keeps it)
        # setsid -f: the supervisor is not our child (no zombie, no signal from our
        # process group) and lives on when we die.
        subprocess.run(["setsid", "-f", sys.executable, "-m", "virt.hostd", str(state_dir)],
                       stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True,
                       cwd=str(Path(__file__).resolve().parents[1]))
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not is_running(state_dir):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the hypervisor daemon of {state_dir} did not start; see "
                                   f"{_own_dir(state_dir) / 'supervisor.log'}")
            time.sleep(0.05)
    return uri(state_dir)


def stop(state_dir: Path, timeout: float = 10.0) -> bool:
    """End the host's supervisor and its daemon (the host's guests go with it)."""
    pid_file = _pid_file(Path(state_dir))
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _daemon_command(runtime: Path) -> tuple[list[str], dict[str, str]]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "HOME": str(runtime), "XDG_RUNTIME_DIR": str(runtime / "run"),
           "XDG_CONFIG_HOME": str(runtime / "config"), "XDG_CACHE_HOME": str(runtime / "cache"),
           "XDG_DATA_HOME": str(runtime / "data")}
    libvirtd = shutil.which("libvirtd", path=env["PATH"] + ":/usr/sbin") or "libvirtd"
    if os.geteuid() != 0:
        return [libvirtd], env
    try:
        user = pwd.getpwnam(DAEMON_USER)
    except KeyError:
        raise RuntimeError(f"user {DAEMON_USER} is missing; run scripts/setup.sh") from None
    for path in [runtime, *runtime.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    return ["runuser", "-u", DAEMON_USER, "--", "env", *[f"{k}={v}" for k, v in env.items()],
            libvirtd], env


def supervise(state_dir: Path) -> int:
    """Run the host's libvirtd and hold a connection to it until SIGTERM."""
    runtime = _runtime(Path(state_dir))
    runtime.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    for sub in ("run", "config", "cache", "data"):
        (runtime / sub).mkdir(parents=True, exist_ok=True)
    _own_dir(Path(state_dir)).mkdir(parents=True, exist_ok=True)
    command, env = _daemon_command(runtime)
    daemon = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    holder = None
    deadline = time.monotonic() + START_TIMEOUT
    while holder is None and not stopping:
        if daemon.poll() is not None or time.monotonic() > deadline:
            print("libvirtd did not start", flush=True)
            return 1
        try:
            holder = libvirt.open(uri(Path(state_dir)))
        except libvirt.libvirtError:
            time.sleep(0.05)
    if holder is not None:
        for domain in holder.listAllDomains():  # the test driver's sample guest
            if domain.name() == "test":
                domain.destroy()
                domain.undefine()
        _pid_file(Path(state_dir)).write_text(str(os.getpid()))
        print(f"holding {uri(Path(state_dir))}", flush=True)
    while not stopping and daemon.poll() is None:
        time.sleep(0.2)
    if holder is not None:
        holder.close()
    daemon.terminate()
    try:
        daemon.wait(1)
    except subprocess.TimeoutExpired:  # its state is in memory: nothing to save
        daemon.kill()
        daemon.wait(10)
    _pid_file(Path(state_dir)).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1])))
