"""openstacksdk, as a script written against it uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# openstacksdk warns about its own future changes, from inside its own calls.
pytestmark = pytest.mark.filterwarnings("ignore::openstack.warnings._RemovedInSDKWarning")


@pytest.fixture(scope="module")
def conn(demo) -> Iterator:
    connection = demo.sdk()
    yield connection
    connection.close()


def test_create_wait_delete(conn):
    image = conn.image.find_image("blank-qcow2", ignore_missing=False)
    flavor = conn.compute.find_flavor("m1.tiny", ignore_missing=False)
    server = conn.compute.create_server(name="accept-sdk", image_id=image.id,
                                        flavor_id=flavor.id, networks="none")
    server = conn.compute.wait_for_server(server, wait=120)
    assert server.status == "ACTIVE"
    assert server.name == "accept-sdk"
    assert server.image.id == image.id
    assert server.flavor.original_name == "m1.tiny"
    assert server.id in {s.id for s in conn.compute.servers()}
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=120)
    assert conn.compute.find_server(server.id) is None


def test_an_action_through_the_sdk(conn):
    image = conn.image.find_image("blank-qcow2", ignore_missing=False)
    server = conn.compute.create_server(name="accept-sdk-2", image_id=image.id,
                                        flavor_id="1", networks="none")
    server = conn.compute.wait_for_server(server, wait=120)
    conn.compute.stop_server(server)
    server = conn.compute.wait_for_server(server, status="SHUTOFF", wait=120)
    assert server.power_state == 4
    conn.compute.start_server(server)
    conn.compute.wait_for_server(server, status="ACTIVE", wait=120)
    actions = [a.action for a in conn.compute.server_actions(server)]
    assert set(actions) >= {"create", "stop", "start"}, actions
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=120)
