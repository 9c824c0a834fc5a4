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
