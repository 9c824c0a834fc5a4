"""PostgreSQL restarts (an immediate stop, as a crash) in the middle of an
operation: no loop, and the operation completes or is rolled back cleanly
once the database is back; the database, the hypervisors and the claims agree.

The API and two compute hosts run in the test process, the conductor as a
process of its own, over a PostgreSQL cluster of this test's own.
"""

from __future__ import annotations

import time

from tests.functional.checks import agree, run_of

STOP = {"os-stop": None}


def _settled(api, server_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/v2.1/servers/{server_id}")
        if response.status_code == 200 and \
                response.json()["server"]["OS-EXT-STS:task_state"] is None:
            return response.json()["server"]
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)


def test_postgres_restarting_in_the_middle_of_an_operation(distributed_own_postgres):
    running = distributed_own_postgres
    api = running.api
    running.conductor()
    server_id = api.create("survivor").json()["server"]["id"]
    assert api.wait_status(server_id, timeout=90)["status"] == "ACTIVE"
    assert api.post(f"/v2.1/servers/{server_id}/action", STOP).status_code == 202
    time.sleep(1.0)  # the stop waits for a guest that ignores the shutdown request
    assert api.server(server_id)["OS-EXT-STS:task_state"] == "powering-off"
    running.postgres.restart()

    server = _settled(api, server_id)
    run = run_of(running, server_id, "stop")
    assert (server["status"], run.state) in (("SHUTOFF", "SUCCESS"), ("ACTIVE", "REVERTED"))
    host = server["OS-EXT-SRV-ATTR:host"]
    expected = 4 if server["status"] == "SHUTOFF" else 1
    assert running.driver(host).power_state(server_id) == expected
    agree(running, server_id)
    # and the cloud keeps working
    second = api.create("after").json()["server"]["id"]
    assert api.wait_status(second, timeout=90)["status"] == "ACTIVE"
