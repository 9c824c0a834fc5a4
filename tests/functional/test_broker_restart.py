"""Redis restarts (SIGKILL, no persistence: its queues are lost) while
operations are under way.  The database is the system of record: nothing
stays stuck, and the database, the hypervisors and the claims agree.

The API and two compute hosts run in the test process, the conductor as a
process of its own, all over a Redis of this test's own (``own_redis``).
"""

from __future__ import annotations

import time

from tests.functional.checks import agree, faults, run_of

STOP = {"os-stop": None}


def _active(running) -> str:
    server_id = running.api.create("survivor").json()["server"]["id"]
    assert running.api.wait_status(server_id)["status"] == "ACTIVE"
    return server_id


def _settled(api, server_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            server = api.server(server_id)
        except Exception:  # the API may answer 500 while Redis is away; ask again
            server = None
        if server and server["OS-EXT-STS:task_state"] is None:
            return server
        assert time.monotonic() < deadline, server
        time.sleep(0.1)


def test_an_operation_whose_message_redis_lost_is_driven_from_the_database(
        distributed_own_redis):
    running = distributed_own_redis
    api = running.api
    running.conductor()
    server_id = _active(running)
    running.stop_conductors()

    assert api.post(f"/v2.1/servers/{server_id}/action", STOP).status_code == 202
    running.redis.restart()  # the run_flow message queued for the conductor is gone
    running.conductor()  # finds the unfinished run in the database and drives it

    server = _settled(api, server_id)
    assert server["status"] == "SHUTOFF", server
    assert run_of(running, server_id, "stop").state == "SUCCESS"
    host = server["OS-EXT-SRV-ATTR:host"]
    assert running.driver(host).power_state(server_id) == 4
    agree(running, server_id)


def test_redis_restarting_in_the_middle_of_an_operation(distributed_own_redis):
    running = distributed_own_redis
    api = running.api
    running.conductor()
    server_id = _active(running)
    assert api.post(f"/v2.1/servers/{server_id}/action", STOP).status_code == 202
    time.sleep(1.0)  # the stop waits for a guest that ignores the shutdown request
    assert api.server(server_id)["OS-EXT-STS:task_state"] == "powering-off"
    running.redis.restart()  # host calls and their replies in flight are lost

    server = _settled(api, server_id)
    run = run_of(running, server_id, "stop")
    # Each way is safe, none is stuck: stopped (the forced power-off went
    # through); rolled back (a host call was lost, its step undone); or, when
    # the undo's own call was lost too, ERROR with a fault, from where a hard
    # reboot brings the instance back.
    outcome = (server["status"], run.state)
    assert outcome in (("SHUTOFF", "SUCCESS"), ("ACTIVE", "REVERTED"), ("ERROR", "REVERTED"))
    if server["status"] == "ERROR":
        assert any("Could not undo" in f for f in faults(running, server_id))
        assert api.post(f"/v2.1/servers/{server_id}/action",
                        {"reboot": {"type": "HARD"}}).status_code == 202
        server = _settled(api, server_id)
        assert server["status"] == "ACTIVE", server
    host = server["OS-EXT-SRV-ATTR:host"]
    expected = 4 if server["status"] == "SHUTOFF" else 1
    assert running.driver(host).power_state(server_id) == expected
    agree(running, server_id)
    # and the cloud keeps working
    second = _active(running)
    assert api.delete(f"/v2.1/servers/{second}").status_code == 204
    api.wait_gone(second)
