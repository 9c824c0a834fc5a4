"""The `vmflow server` commands against a running embedded cloud."""

from __future__ import annotations

from vmflow import cli


def test_server_create_list_show_delete(cloud, capsys):
    url = cloud.api.base
    assert cli.main(["server", "--url", url, "create", "cli-1", "--flavor", "m1.tiny",
                     "--image", "blank-qcow2", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "accepted" in out and "ACTIVE" in out
    server_id = out.split("accepted ", 1)[1].split()[0]

    assert cli.main(["server", "--url", url, "list"]) == 0
    assert server_id in capsys.readouterr().out
    assert cli.main(["server", "--url", url, "show", server_id]) == 0
    assert "compute-" in capsys.readouterr().out

    assert cli.main(["server", "--url", url, "delete", server_id, "--wait"]) == 0
    assert "deleted" in capsys.readouterr().out


def test_errors_are_messages_not_tracebacks(cloud, capsys):
    url = cloud.api.base
    assert cli.main(["server", "--url", url, "create", "x", "--flavor", "nope",
                     "--image", "blank-qcow2"]) == 1
    err = capsys.readouterr().err
    assert "Flavor nope could not be found. (HTTP 400)" in err and "[request req-" in err
    assert cli.main(["server", "--url", "http://127.0.0.1:9", "list"]) == 1
    assert "no vmflow API" in capsys.readouterr().err


def test_server_actions_and_their_record(cloud, capsys):
    url = cloud.api.base
    assert cli.main(["server", "--url", url, "create", "cli-2", "--flavor", "m1.tiny",
                     "--image", "blank-qcow2", "--wait"]) == 0
    server_id = capsys.readouterr().out.split("accepted ", 1)[1].split()[0]
    for verb, extra, status in (("stop", [], "SHUTOFF"), ("start", [], "ACTIVE"),
                                ("reboot", ["--hard"], "ACTIVE"),
                                ("rescue", ["--image", "blank-qcow2"], "RESCUE"),
                                ("unrescue", [], "ACTIVE"),
                                ("image-create", ["--name", "cli-snap"], "ACTIVE")):
        assert cli.main(["server", "--url", url, verb, server_id, *extra, "--wait"]) == 0, verb
        out = capsys.readouterr().out
        assert f"{verb} of {server_id} accepted" in out and status in out, (verb, out)
    assert "image " in out

    assert cli.main(["server", "--url", url, "unpause", server_id]) == 1
    assert "vm_state active" in capsys.readouterr().err

    assert cli.main(["server", "--url", url, "actions", server_id]) == 0
    listing = capsys.readouterr().out
    assert "createImage" in listing and "rescue" in listing and "stop" in listing
    request_id = listing.splitlines()[-1].split()[0]  # the oldest: create
    assert cli.main(["server", "--url", url, "actions", server_id, request_id]) == 0
    assert "launch.select-destinations" in capsys.readouterr().out


def test_up_distributed_runs_every_service_as_a_process(postgres_server, redis_url, tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import requests

    from tests.conftest import _fresh_postgres

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    databases = _fresh_postgres(postgres_server)
    database = next(databases)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMFLOW_")}
    env.update(VMFLOW_DATABASE_URL=database, VMFLOW_BROKER_URL=redis_url,
               VMFLOW_RESULT_BACKEND=redis_url, VMFLOW_QUEUE_PREFIX=f"up{port}",
               VMFLOW_AUTH_STRATEGY="noauth")
    proc = subprocess.Popen([sys.executable, "-m", "vmflow.cli", "up", "--distributed",
                             "--hosts", "2", "--port", str(port), "--data-dir",
                             str(tmp_path / "data")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/v2.1"
    try:
        assert "vmflow is up (distributed)" in proc.stdout.readline()
        deadline = time.monotonic() + 60
        while True:
            try:
                hosts = requests.get(f"{base}/os-hypervisors", timeout=2).json()["hypervisors"]
                if len(hosts) == 2:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "never came up"
            time.sleep(0.2)
        image = requests.get(f"{base}/images", timeout=5).json()["images"][0]["id"]
        server = requests.post(f"{base}/servers", json={"server": {
            "name": "dist", "flavorRef": "1", "imageRef": image}}, timeout=10).json()["server"]
        deadline = time.monotonic() + 60
        while requests.get(f"{base}/servers/{server['id']}", timeout=5).json()[
                "server"]["status"] != "ACTIVE":
            assert time.monotonic() < deadline, "the server never became ACTIVE"
            time.sleep(0.2)
        services = requests.get(f"{base}/os-services", timeout=5).json()["services"]
        assert {s["binary"] for s in services} == {"vmflow-conductor", "vmflow-compute"}
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.stdout.read()
        databases.close()


def test_up_distributed_says_what_is_missing(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("VMFLOW_")}
    env.update(VMFLOW_BROKER_URL="redis://127.0.0.1:9/0", VMFLOW_AUTH_STRATEGY="noauth")
    done = subprocess.run([sys.executable, "-m", "vmflow.cli", "up", "--distributed",
                           "--data-dir", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "Redis does not answer at redis://127.0.0.1:9/0" in done.stderr
    assert "bash scripts/services.sh" in done.stderr


def test_server_moves_from_the_cli(cloud, capsys):
    """resize (confirm and revert), cold and live migration, shelve and unshelve,
    each a verb of `vmflow server`, against the real API and workers."""
    url = cloud.api.base
    assert cli.main(["server", "--url", url, "create", "cli-move", "--flavor", "m1.tiny",
                     "--image", "blank-qcow2", "--wait"]) == 0
    server_id = capsys.readouterr().out.split("accepted ", 1)[1].split()[0]

    def host() -> str:
        return cloud.api.get(f"/v2.1/servers/{server_id}").json()["server"][
            "OS-EXT-SRV-ATTR:host"]

    first = host()
    for verb, extra, status in (("resize", ["--flavor", "m1.small"], "VERIFY_RESIZE"),
                                ("resize-revert", [], "ACTIVE"),
                                ("migrate", [], "VERIFY_RESIZE"),
                                ("resize-confirm", [], "ACTIVE"),
                                ("live-migrate", ["--host", first], "ACTIVE"),
                                ("shelve", [], "SHELVED_OFFLOADED"),
                                ("unshelve", [], "ACTIVE")):
        assert cli.main(["server", "--url", url, verb, server_id, *extra, "--wait"]) == 0, verb
        out = capsys.readouterr().out
        assert f"{verb} of {server_id} accepted" in out and status in out, (verb, out)
        if verb == "resize-confirm":
            assert host() != first  # migrated away and confirmed there
        if verb == "live-migrate":
            assert host() == first  # and live-migrated back
    assert cli.main(["server", "--url", url, "evacuate", server_id]) == 1
    assert "HTTP 409" in capsys.readouterr().err  # its host is up
