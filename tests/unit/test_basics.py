"""States, the log line format, domain XML and configuration."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import pytest

from virt.domain_xml import domain_xml
from vmflow import config, context, log
from vmflow.states import status_of, task_states, vm_states


@pytest.mark.parametrize("vm_state,task_state,status", [
    (vm_states.BUILDING, task_states.SCHEDULING, "BUILD"),
    (vm_states.BUILDING, task_states.SPAWNING, "BUILD"),
    (vm_states.ACTIVE, None, "ACTIVE"),
    (vm_states.ACTIVE, task_states.DELETING, "ACTIVE"),
    (vm_states.STOPPED, None, "SHUTOFF"),
    (vm_states.ERROR, None, "ERROR"),
    (vm_states.ERROR, task_states.DELETING, "ERROR"),
    (vm_states.DELETED, None, "DELETED"),
    ("nonsense", None, "UNKNOWN"),
])
def test_status_of(vm_state, task_state, status):
    assert status_of(vm_state, task_state) == status


def test_log_line_format_carries_request_id():
    record = logging.LogRecord("workers.conductor", logging.INFO, __file__, 1, "hello %s",
                               ("world",), None)
    with context.request_id_scope("req-1234"):
        log.RequestIdFilter().filter(record)
    line = log.formatter().format(record)
    stamp, pid, level, module, rid, message = line.split(" ", 6)[1:]
    assert line.split(" ")[0].count("-") == 2  # date
    assert (level, module, rid, message) == ("INFO", "workers.conductor", "[req-1234]",
                                             "hello world")
    assert pid.isdigit()


def test_domain_xml_for_test_and_qemu():
    instance = {"uuid": "0b9e6f4e-7d4f-4c5e-9f3a-3c1b2a1d0e9f", "name": "a<b",
                "flavor": {"name": "m1.tiny", "vcpus": 2, "memory_mb": 512}}
    root = ET.fromstring(domain_xml(virt_type="test", instance=instance, disk_path="/d/disk",
                                    disk_format="raw"))
    assert root.get("type") == "test"
    assert root.findtext("uuid") == instance["uuid"]
    assert root.findtext("name") == f"instance-{instance['uuid']}"
    assert root.findtext("vcpu") == "2" and root.find("memory").text == "512"
    assert root.find("devices/disk/source").get("file") == "/d/disk"
    assert root.find("devices/serial") is None
    qemu = ET.fromstring(domain_xml(virt_type="kvm", instance=instance, disk_path="/d/disk",
                                    disk_format="qcow2", console_log="/d/console.log"))
    assert qemu.find("devices/serial/source").get("path") == "/d/console.log"
    assert qemu.find("devices/disk/driver").get("type") == "qcow2"


def test_config_file_environment_and_overrides(tmp_path, monkeypatch):
    path = tmp_path / "vmflow.toml"
    path.write_text('host_count = 7\napi_port = 9000\n'
                    '[[hosts]]\nname = "big"\nvcpus = 64\n')
    monkeypatch.setenv("VMFLOW_API_PORT", "9100")
    cfg = config.load(path, data_dir=tmp_path)
    assert cfg.api_port == 9100  # environment beats the file
    assert [h.name for h in cfg.compute_hosts()] == ["big"]
    assert cfg.database_url == f"sqlite:///{tmp_path / 'vmflow.db'}"
    monkeypatch.delenv("VMFLOW_API_PORT")
    assert [h.name for h in config.load(None, host_count=2).compute_hosts()] == \
        ["compute-1", "compute-2"]
    path.write_text("no_such_setting = 1\n")
    with pytest.raises(ValueError, match="no_such_setting"):
        config.load(path)


def test_compute_workers_do_not_load_the_database_layer():
    """Compute hosts hold no database credentials, and do not even import the code."""
    import subprocess
    import sys

    probe = ("import sys, workers.compute; "
             "print(sorted(m for m in sys.modules if m.startswith(('vmflow.db', 'sqlalchemy'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
