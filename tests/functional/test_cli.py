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
