"""Each flow's graph: stable names, what every step needs and provides, order."""

from __future__ import annotations

from taskflow import engines
from taskflow.patterns import graph_flow

import flows
from flows import delete, launch
from flows.base import Services
from vmflow import config
from vmflow.states.actions import ACTIONS


def _services() -> Services:
    return Services(config=config.Config(data_dir="/nonexistent"), db=None)


def _atoms(flow):
    for item in flow.iter_nodes():
        node = item[0]
        if hasattr(node, "iter_nodes"):
            if node.retry is not None:
                yield node.retry
            yield from _atoms(node)
        else:
            yield node


def _validate(flow, inputs):
    """Compile the graph; every requirement must come from an input or a step."""
    engine = engines.load(flow, store=inputs, engine="serial")
    engine.compile()
    engine.prepare()
    engine.validate()


def test_launch_graph():
    flow = launch.get_flow(_services(), max_attempts=3, poll_attempts=5)
    assert isinstance(flow, graph_flow.Flow)
    names = [a.name for a in _atoms(flow)]
    assert names.count("launch.mark-active") == 1 and len(names) == len(set(names))
    assert set(names) == {
        "launch.validate-request", "launch.check-quota", "launch.create-instance-record",
        "launch.reschedule", "launch.select-destinations", "launch.claim-resources",
        "launch.cache-image", "launch.create-disk", "launch.define-domain", "launch.power-on",
        "launch.poll", "launch.wait-for-running", "launch.mark-active"}
    by_name = {a.name: a for a in _atoms(flow)}
    assert set(by_name["launch.validate-request"].provides) == {"flavor", "image"}
    assert by_name["launch.claim-resources"].provides == {"host"}
    assert {"instance_uuid", "host"} <= set(by_name["launch.define-domain"].requires)
    assert "attempt" in by_name["launch.select-destinations"].requires
    assert flow.requires == {"instance_uuid", "request"}
    _validate(flow, {"instance_uuid": "u", "request": {}})


def test_launch_admission_precedes_build():
    flow = launch.get_flow(_services())
    graph = flow._graph
    create = next(n for n in graph if getattr(n, "name", "") == launch.ADMISSION_LAST_STEP)
    quota = next(n for n in graph if getattr(n, "name", "") == "launch.check-quota")
    build = next(n for n in graph if getattr(n, "name", "") == "launch.build")
    assert graph.has_edge(quota, create) and graph.has_edge(create, build)


def test_delete_graph():
    flow = delete.get_flow(_services())
    names = [a.name for a in _atoms(flow)]
    assert names == ["delete.begin", "delete.find-hosts", "delete.destroy-guests",
                     "delete.delete-disks", "delete.release-claims", "delete.mark-deleted"]
    assert flow.requires == {"instance_uuid"}
    _validate(flow, {"instance_uuid": "u"})


def _every_flow():
    for operation, factory in flows.FACTORIES.items():
        yield operation, factory(_services())


def test_every_changing_task_says_how_it_reverts():
    for operation, flow in _every_flow():
        for atom in _atoms(flow):
            doc = type(atom).__doc__ or ""
            assert "Revert" in doc or "revert" in doc, (operation, atom.name)


# What each operation's flow needs besides instance_uuid (the API supplies it).
_INPUTS = {"launch": {"request"}, "delete": set(), "lock": {"locked_by", "reason"},
           "snapshot": {"image_id"}, "backup": {"image_id"}, "rebuild": {"image", "new_name"},
           "rescue": {"rescue_image"},
           "shelve": {"image_id"}, "shelve_offload": {"image_id"},
           "evacuate": {"migration_uuid", "requested_host", "force"},
           "live_migrate": {"migration_uuid", "requested_host", "block_migration", "force"},
           "resize": {"migration_uuid", "new_flavor", "requested_host"},
           "migrate": {"migration_uuid", "new_flavor", "requested_host"}}


def test_every_operation_on_an_instance_is_a_framed_flow():
    for name, action in ACTIONS.items():
        assert name in flows.FACTORIES, name
        flow = flows.FACTORIES[name](_services())
        names = [a.name for a in _atoms(flow)]
        assert len(names) == len(set(names)), name
        assert all(n.startswith(f"{name}.") for n in names), names
        if action.task_state is not None:  # run by the conductor: begin ... finish
            assert names[0] == f"{name}.begin" and names[-1] == f"{name}.finish", names
        assert flow.requires == {"instance_uuid"} | _INPUTS.get(name, set()), name
        _validate(flow, dict.fromkeys(flow.requires, {}))


def test_soft_reboot_shuts_down_gracefully_then_boots():
    names = [a.name for a in _atoms(flows.FACTORIES["reboot"](_services()))]
    assert names == ["reboot.begin", "reboot.request-shutdown", "reboot.poll-off",
                     "reboot.wait-for-shutoff", "reboot.power-on", "reboot.poll-on",
                     "reboot.wait-for-running", "reboot.finish"]
    hard = [a.name for a in _atoms(flows.FACTORIES["reboot_hard"](_services()))]
    assert hard[:2] == ["reboot_hard.begin", "reboot_hard.power-off"]


def test_a_stopped_instance_is_rebuilt_without_booting_it():
    names = [a.name for a in _atoms(flows.build("rebuild", _services(), {"start": False}))]
    assert "rebuild.power-on" not in names and names[-1] == "rebuild.finish"
    names = [a.name for a in _atoms(flows.build("rebuild", _services(), {"start": True}))]
    assert names.index("rebuild.replace-disk") < names.index("rebuild.power-on")


def test_factories_are_registered_and_rebuild_identically():
    services = _services()
    for operation, params in (("launch", {"max_attempts": 2, "poll_attempts": 3}),
                              ("delete", {})):
        one = [a.name for a in _atoms(flows.build(operation, services, params))]
        two = [a.name for a in _atoms(flows.build(operation, services, params))]
        assert one == two
