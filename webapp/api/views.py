"""How resources look in responses (Nova's v2.1 shapes)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vmflow.db.models import ComputeNode, Flavor, Image, Instance, InstanceFault, Service
from vmflow.states import status_of, vm_states
from webapp.api.common import isotime, links


def host_id(project_id: str, host: str | None) -> str:
    """Nova's opaque per-project host id: equal for servers on the same host."""
    if not host:
        return ""
    return hashlib.sha224((project_id + host).encode()).hexdigest()


def server_brief(instance: Instance) -> dict[str, Any]:
    return {"id": instance.uuid, "name": instance.name,
            "links": links("servers", instance.uuid)}


def server(instance: Instance, fault: InstanceFault | None = None,
           show_host: bool = True) -> dict[str, Any]:
    status = status_of(instance.vm_state, instance.task_state)
    body: dict[str, Any] = {
        "id": instance.uuid,
        "name": instance.name,
        "status": status,
        "tenant_id": instance.project_id,
        "user_id": instance.user_id,
        "metadata": dict(instance.metadata_ or {}),
        "hostId": host_id(instance.project_id, instance.host),
        "image": {"id": instance.image_ref, "links": links("images", instance.image_ref)[1:]},
        "flavor": {"id": instance.flavor.get("flavorid"),
                   "links": links("flavors", instance.flavor.get("flavorid", ""))[1:]},
        "created": isotime(instance.created_at),
        "updated": isotime(instance.updated_at),
        "addresses": {},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": links("servers", instance.uuid),
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": instance.availability_zone or "",
        "config_drive": "",
        "key_name": None,
        "OS-SRV-USG:launched_at": isotime(instance.launched_at),
        "OS-SRV-USG:terminated_at": isotime(instance.terminated_at),
        "OS-EXT-STS:task_state": instance.task_state,
        "OS-EXT-STS:vm_state": instance.vm_state,
        "OS-EXT-STS:power_state": instance.power_state,
        "os-extended-volumes:volumes_attached": [],
        "locked": bool(instance.locked),
        "locked_reason": instance.locked_reason,
    }
    if status in ("BUILD", "ACTIVE"):
        body["progress"] = instance.progress or 0
    if show_host:
        body["OS-EXT-SRV-ATTR:host"] = instance.host
        body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = instance.node
        body["OS-EXT-SRV-ATTR:instance_name"] = f"instance-{instance.uuid}"
    if instance.vm_state == vm_states.ERROR and fault is not None:
        body["fault"] = {"code": fault.code, "created": isotime(fault.created_at),
                         "message": fault.message}
        if show_host or fault.code != 500:
            body["fault"]["details"] = fault.details
    return body


def flavor_brief(flavor: Flavor) -> dict[str, Any]:
    return {"id": flavor.flavorid, "name": flavor.name, "links": links("flavors", flavor.flavorid)}


def flavor(flavor: Flavor) -> dict[str, Any]:
    return {
        **flavor_brief(flavor),
        "ram": flavor.memory_mb, "vcpus": flavor.vcpus, "disk": flavor.root_gb,
        "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral_gb, "swap": flavor.swap,
        "rxtx_factor": 1.0, "os-flavor-access:is_public": flavor.is_public,
        "OS-FLV-DISABLED:disabled": flavor.disabled,
    }


def image_brief(image: Image) -> dict[str, Any]:
    return {"id": image.id, "name": image.name, "links": links("images", image.id)}


def image(image: Image) -> dict[str, Any]:
    return {
        **image_brief(image),
        "status": image.status.upper(), "minDisk": image.min_disk, "minRam": image.min_ram,
        "progress": 100 if image.status == "active" else 0,
        "created": isotime(image.created_at), "updated": isotime(image.updated_at),
        "metadata": dict(image.properties or {}), "OS-EXT-IMG-SIZE:size": image.size,
    }


def service(row: Service, up: bool, zone: str) -> dict[str, Any]:
    return {
        "id": row.id, "binary": row.binary, "host": row.host, "zone": zone,
        "status": "disabled" if row.disabled else "enabled",
        "state": "up" if up else "down", "updated_at": isotime(row.last_seen_up),
        "disabled_reason": row.disabled_reason, "forced_down": row.forced_down,
    }


def hypervisor_brief(node: ComputeNode, svc: Service | None, up: bool) -> dict[str, Any]:
    return {"id": node.id, "hypervisor_hostname": node.hypervisor_hostname,
            "state": "up" if up else "down",
            "status": "disabled" if svc is not None and svc.disabled else "enabled"}


def hypervisor(node: ComputeNode, svc: Service | None, up: bool) -> dict[str, Any]:
    return {
        **hypervisor_brief(node, svc, up),
        "hypervisor_type": node.hypervisor_type, "hypervisor_version": node.hypervisor_version,
        "host_ip": node.host_ip, "vcpus": node.vcpus, "memory_mb": node.memory_mb,
        "local_gb": node.local_gb, "vcpus_used": node.vcpus_used,
        "memory_mb_used": node.memory_mb_used, "local_gb_used": node.local_gb_used,
        "free_ram_mb": node.memory_mb - node.memory_mb_used,
        "free_disk_gb": node.local_gb - node.local_gb_used,
        "disk_available_least": node.local_gb - node.local_gb_used,
        "current_workload": 0, "running_vms": node.running_vms,
        "cpu_info": json.dumps({"arch": node.cpu_arch}),  # a string below 2.28
        "service": {"id": svc.id if svc else None, "host": node.host,
                    "disabled_reason": svc.disabled_reason if svc else None},
    }
