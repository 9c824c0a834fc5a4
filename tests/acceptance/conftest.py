"""The real OpenStack clients, unchanged, against a cloud a user started.

Each test module gets its own cloud: ``vmflow up`` run as a user runs it (a
process of its own, keystone authentication, SQLite in a temporary data
directory, simulated hosts) on a free loopback port.  The admin's environment
is the very ``export OS_...`` block that ``vmflow up`` prints; the demo
member's is the ``demo-openrc`` file whose path it prints.  So these tests also
prove that what a user is told to source works.

``openstack`` (python-openstackclient) runs as a subprocess with nothing but
that environment; openstacksdk runs in the test process with the same values.
Each ``openstack`` command costs about 1.5 s of start-up, so the modules share
one cloud and one server where they can.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _free_port

BIN = Path(sys.executable).parent
# Time for `vmflow up` to print its openrc block; one command; a state change.
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 120.0
STATE_TIMEOUT = 60.0
# The settings an openrc block gives; a user sourcing it has exactly these.
OPENRC_KEYS = ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME",
               "OS_USER_DOMAIN_NAME", "OS_PROJECT_DOMAIN_NAME", "OS_IDENTITY_API_VERSION",
               "OS_REGION_NAME", "OS_INTERFACE")


def _executable(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: install the test extras "
                    f"(`{BIN / 'pip'} install -e .[test]`), which bring python-openstackclient")
    return str(path)


def parse_openrc(text: str) -> dict[str, str]:
    """The ``export KEY=VALUE`` lines of an openrc block, as a shell would read them."""
    values = {}
    for line in text.splitlines():
        if not line.startswith("export "):
            continue
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            values[key] = value
    return values


def _user_environment(openrc: dict[str, str], home: Path) -> dict[str, str]:
    """The caller's environment without any OpenStack or vmflow settings, plus the openrc."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OS_", "VMFLOW_"))}
    # No clouds.yaml, cache or keyring of the person running the tests.
    env["HOME"] = str(home)
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("XDG_CACHE_HOME", None)
    # The cloud is on loopback: never through a proxy the caller may have set.
    for key in ("no_proxy", "NO_PROXY"):
        env[key] = ",".join(filter(None, [env.get(key), "127.0.0.1", "localhost"]))
    env.update(openrc)
    return env


class CommandFailed(AssertionError):
    def __init__(self, argv: list[str], result: subprocess.CompletedProcess) -> None:
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        super().__init__(f"`{shlex.join(argv)}` exited {result.returncode}\n"
                         f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}")


class User:
    """One person with a sourced openrc: runs ``openstack`` and openstacksdk."""

    def __init__(self, openrc: dict[str, str], home: Path) -> None:
        missing = [key for key in OPENRC_KEYS if not openrc.get(key)]
        assert not missing, f"the openrc block lacks {missing}: {openrc}"
        self.openrc = openrc
        self.home = home
        self.env = _user_environment(openrc, home)
        self.openstack = _executable("openstack")

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
        """``openstack ARGS``, whatever its exit status."""
        argv = [self.openstack, *args]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True,
                               timeout=timeout, stdin=subprocess.DEVNULL)

    def __call__(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """``openstack ARGS``; its standard output; fails the test on a non-zero exit."""
        result = self.run(*args, timeout=timeout)
        if result.returncode != 0:
            raise CommandFailed([self.openstack, *args], result)
        return result.stdout

    def json(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> Any:
        """``openstack ARGS -f json``, parsed."""
        out = self(*args, "-f", "json", timeout=timeout)
        try:
            return json.loads(out)
        except ValueError as err:
            raise AssertionError(f"`openstack {shlex.join(args)} -f json` printed no JSON: "
                                 f"{out!r}") from err

    def fails(self, *args: str) -> subprocess.CompletedProcess:
        """``openstack ARGS``, which must exit non-zero."""
        result = self.run(*args)
        assert result.returncode != 0, (f"`openstack {shlex.join(args)}` succeeded: "
                                        f"{result.stdout}")
        return result

    def server(self, name_or_id: str) -> dict[str, Any]:
        return self.json("server", "show", name_or_id)

    def wait_server(self, name_or_id: str, status: str,
                    timeout: float = STATE_TIMEOUT) -> dict[str, Any]:
        """Poll ``server show`` (as a script would) until ``status`` with no task running."""
        deadline = time.monotonic() + timeout
        while True:
            server = self.server(name_or_id)
            if server["status"] == status and not server.get("OS-EXT-STS:task_state"):
                return server
            assert server["status"] != "ERROR" or status == "ERROR", server
            if time.monotonic() > deadline:
                raise AssertionError(f"server {name_or_id} never reached {status}: {server}")
            time.sleep(0.5)

    def sdk(self):
        """An openstacksdk connection made from the openrc's values."""
        import openstack

        rc = self.openrc
        return openstack.connect(
            auth_url=rc["OS_AUTH_URL"], username=rc["OS_USERNAME"],
            password=rc["OS_PASSWORD"], project_name=rc["OS_PROJECT_NAME"],
            user_domain_name=rc["OS_USER_DOMAIN_NAME"],
            project_domain_name=rc["OS_PROJECT_DOMAIN_NAME"],
            identity_api_version=rc["OS_IDENTITY_API_VERSION"],
            region_name=rc["OS_REGION_NAME"], interface=rc["OS_INTERFACE"],
            # Only these arguments: no clouds.yaml, no OS_* of the caller.
            load_yaml_config=False, load_envvars=False)


class Cloud:
    """``vmflow up`` in a process of its own, and its two users."""

    def __init__(self, directory: Path, hosts: int = 2) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stdout_path = directory / "vmflow-up.out"
        self.stderr_path = directory / "vmflow-up.err"
        env = _user_environment({}, directory)
        argv = [_executable("vmflow"), "up", "--port", str(self.port), "--data-dir",
                str(self.data_dir), "--hosts", str(hosts)]
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL)
        try:
            printed = self._wait_for_openrc()
            self.admin = User(parse_openrc(printed), directory)
            self.demo = User(parse_openrc(self._demo_openrc(printed)), directory)
        except BaseException:
            self.stop()
            raise

    def _wait_for_openrc(self) -> str:
        """What `vmflow up` printed, once its admin openrc block is complete."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            text = self.stdout_path.read_text()
            if "export OS_INTERFACE=" in text:
                return text
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"`vmflow up` printed no openrc block (exit {self.proc.poll()}):\n{text}\n"
                    f"{self.stderr_path.read_text()[-4000:]}")
            time.sleep(0.1)

    def _demo_openrc(self, printed: str) -> str:
        """The demo user's openrc file, at the path `vmflow up` printed."""
        for line in printed.splitlines():
            words = line.split()
            if words[:1] == ["demo"] and "source" in words:
                return Path(words[words.index("source") + 1]).read_text()
        raise AssertionError(f"`vmflow up` did not say where the demo openrc is:\n{printed}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def user_cloud(tmp_path_factory) -> Iterator[Cloud]:
    running = Cloud(tmp_path_factory.mktemp("acceptance"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(user_cloud: Cloud) -> User:
    return user_cloud.admin


@pytest.fixture(scope="module")
def demo(user_cloud: Cloud) -> User:
    return user_cloud.demo
