"""How resources look in responses (Nova's v2.1 shapes)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

from vmflow.db.models import ComputeNode, Flavor, Image, Instance, InstanceFault, Service
from vmflow.states import status_of, vm_states
from webapp.api import microversion
from webapp.api.common import isotime, links


def host_id(project_id: str, host: str | None) -> str:
    """Nova's opaque per-project host id: equal for servers on the same host."""
    if not host:
        return ""
    return hashlib.sha224((project_id + host).encode()).hexdigest()


def server_brief(instance: Instance) -> dict[str, Any]:
    return {"id": instance.uuid, "name": instance.name,
            "links": links("servers", instance.uuid)}


def hostname_of(name: str) -> str:
    """The guest host name Nova derives from a server name: lower case, runs of
    characters other than letters, digits and '-' become '-', at most 63."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-.")[:63].rstrip("-")
    return text or "server"


def reservation_id(instance_uuid: str) -> str:
    """The id of a server created before reservation ids were recorded: one
    per server, derived from its uuid."""
    digest = hashlib.sha1(instance_uuid.encode()).hexdigest()
    return "r-" + digest[:8]


def reservation_of(instance: Instance) -> str:
    """The id of the create request that made ``instance`` (shared by the
    servers of one request)."""
    return instance.reservation_id or reservation_id(instance.uuid)


def disk_config(instance: Instance) -> str:
    """``OS-DCF:diskConfig`` as last given (create, rebuild, update); MANUAL
    when never given.  Recorded, not acted on: vmflow's hosts neither grow nor
    partition a guest's file system (Nova's AUTO asks the driver to)."""
    return (instance.system_metadata or {}).get("disk_config") or "MANUAL"


def server_flavor(flavor: dict[str, Any], extra_specs: bool = True) -> dict[str, Any]:
    """The server's flavor as it was at boot: a link below 2.47, a copy from 2.47
    (with its extra specs if the caller may see them)."""
    if not microversion.at_least("2.47"):
        flavorid = flavor.get("flavorid", "")
        return {"id": flavorid, "links": links("flavors", flavorid)[1:]}
    body = {"vcpus": flavor.get("vcpus", 0), "ram": flavor.get("memory_mb", 0),
            "disk": flavor.get("root_gb", 0), "ephemeral": flavor.get("ephemeral_gb", 0),
            "swap": flavor.get("swap") or 0, "original_name": flavor.get("name", "")}
    if extra_specs:
        body["extra_specs"] = dict(flavor.get("extra_specs") or {})
    return body


def server(instance: Instance, fault: InstanceFault | None = None,
           show_host: bool = True, *, tags: list[str] | None = None,
           host_status: str | None = None, server_groups: list[str] | None = None,
           compact: bool = False, show_key_name: bool = False,
           flavor_extra_specs: bool = True) -> dict[str, Any]:
    """A server as the request's microversion shows it (``webapp.api.microversion``).

    At 2.1 it holds exactly the fields Nova had then; later fields appear from
    their version on.  ``show_host``: the caller may see host names and the
    other admin-only attributes; ``host_status`` (None: the caller may not see
    it) appears from 2.16; ``server_groups`` (None: not shown, as in lists)
    from 2.71.  ``compact``: the reduced body of update and rebuild answers
    below 2.75 (without the extension attributes; ``show_key_name`` keeps
    rebuild's key_name from 2.54).
    """
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
        "flavor": server_flavor(instance.flavor or {}, flavor_extra_specs),
        "created": isotime(instance.created_at),
        "updated": isotime(instance.updated_at),
        "addresses": {},
        "accessIPv4": instance.access_ip_v4 or "",
        "accessIPv6": instance.access_ip_v6 or "",
        "links": links("servers", instance.uuid),
        "OS-DCF:diskConfig": disk_config(instance),
    }
    if not compact:
        body.update({
            "OS-EXT-AZ:availability_zone": instance.availability_zone or "",
            "config_drive": "True" if instance.config_drive else "",
            "key_name": instance.key_name,
            "OS-SRV-USG:launched_at": isotime(instance.launched_at),
            "OS-SRV-USG:terminated_at": isotime(instance.terminated_at),
            "OS-EXT-STS:task_state": instance.task_state,
            "OS-EXT-STS:vm_state": instance.vm_state,
            "OS-EXT-STS:power_state": instance.power_state,
            "os-extended-volumes:volumes_attached": [],
        })
    elif show_key_name:
        body["key_name"] = instance.key_name
    if status in ("BUILD", "ACTIVE", "REBUILD"):
        body["progress"] = instance.progress or 0
    if show_host and not compact:
        body["OS-EXT-SRV-ATTR:host"] = instance.host
        body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = instance.node
        body["OS-EXT-SRV-ATTR:instance_name"] = f"instance-{instance.uuid}"
        if microversion.at_least("2.3"):
            body.update({
                "OS-EXT-SRV-ATTR:reservation_id": reservation_of(instance),
                "OS-EXT-SRV-ATTR:launch_index": instance.launch_index or 0,
                "OS-EXT-SRV-ATTR:hostname": hostname_of(instance.name),
                "OS-EXT-SRV-ATTR:kernel_id": "",
                "OS-EXT-SRV-ATTR:ramdisk_id": "",
                "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                "OS-EXT-SRV-ATTR:user_data": instance.user_data,
            })
    if microversion.at_least("2.9"):
        body["locked"] = bool(instance.locked)
    if host_status is not None and not compact and microversion.at_least("2.16"):
        body["host_status"] = host_status
    if microversion.at_least("2.19"):
        body["description"] = instance.description
    if microversion.at_least("2.26"):
        body["tags"] = list(tags or [])
    if microversion.at_least("2.63"):
        body["trusted_image_certificates"] = None  # vmflow verifies no image signatures
    if server_groups is not None and microversion.at_least("2.71"):
        body["server_groups"] = list(server_groups)
    if microversion.at_least("2.73"):
        body["locked_reason"] = instance.locked_reason
    if instance.vm_state == vm_states.ERROR and fault is not None:
        body["fault"] = {"code": fault.code, "created": isotime(fault.created_at),
                         "message": fault.message}
        if show_host or fault.code != 500:
            body["fault"]["details"] = fault.details
    return body


def flavor_brief(flavor: Flavor) -> dict[str, Any]:
    body = {"id": flavor.flavorid, "name": flavor.name,
            "links": links("flavors", flavor.flavorid)}
    if microversion.at_least("2.55"):
        body["description"] = flavor.description
    return body


def flavor(flavor: Flavor, show_extra_specs: bool = False) -> dict[str, Any]:
    """A flavor in detail; from 2.61 with its extra specs when the caller may read
    them (``show_extra_specs``)."""
    body = {
        **flavor_brief(flavor),
        "ram": flavor.memory_mb, "vcpus": flavor.vcpus, "disk": flavor.root_gb,
        "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral_gb, "swap": flavor.swap,
        "rxtx_factor": 1.0, "os-flavor-access:is_public": flavor.is_public,
        "OS-FLV-DISABLED:disabled": flavor.disabled,
    }
    if show_extra_specs and microversion.at_least("2.61"):
        body["extra_specs"] = dict(flavor.extra_specs or {})
    return body


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


# Services and compute nodes are named by UUIDs from 2.53 on: derived from what
# identifies them (binary and host; node name), so they are stable and need no column.
_ID_NAMESPACE = uuid.UUID("1b4e2f0c-7a52-4d2e-9a43-6d0c1f7e8a11")


def service_uuid(row: Service) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"service/{row.binary}/{row.host}"))


def node_uuid(node: ComputeNode) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"node/{node.hypervisor_hostname}"))


def service(row: Service, up: bool, zone: str) -> dict[str, Any]:
    return {
        "id": service_uuid(row) if microversion.at_least("2.53") else row.id,
        "binary": row.binary, "host": row.host, "zone": zone,
        "status": "disabled" if row.disabled else "enabled",
        "state": "up" if up else "down", "updated_at": isotime(row.last_seen_up),
        "disabled_reason": row.disabled_reason,
        **({"forced_down": row.forced_down} if microversion.at_least("2.11") else {}),
    }


def hypervisor_brief(node: ComputeNode, svc: Service | None, up: bool) -> dict[str, Any]:
    return {"id": node_uuid(node) if microversion.at_least("2.53") else node.id,
            "hypervisor_hostname": node.hypervisor_hostname,
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
        # A JSON string below 2.28, an object from 2.28 on.
        "cpu_info": ({"arch": node.cpu_arch} if microversion.at_least("2.28")
                     else json.dumps({"arch": node.cpu_arch})),
        "service": {"id": (svc and (service_uuid(svc) if microversion.at_least("2.53")
                                    else svc.id)), "host": node.host,
                    "disabled_reason": svc.disabled_reason if svc else None},
    }
