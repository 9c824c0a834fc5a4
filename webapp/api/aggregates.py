"""/os-aggregates (admin): host aggregates, their hosts and metadata."""

from __future__ import annotations

import contextvars
import logging
import threading

from flask import Blueprint, jsonify
from sqlalchemy import select

from vmflow import exception, policy
from vmflow.db import aggregates as aggregates_db
from vmflow.db import catalog
from vmflow.db.models import Aggregate, ComputeNode
from webapp.api import common, microversion, validation

bp = Blueprint("aggregates", __name__)
LOG = logging.getLogger(__name__)


def _view(row: Aggregate, hosts: list[str]) -> dict:
    metadata = dict(row.metadata_ or {})
    body = {"id": row.id, "name": row.name,
            "availability_zone": metadata.get(aggregates_db.ZONE_KEY),
            "hosts": hosts, "metadata": metadata,
            "created_at": common.isotime(row.created_at),
            "updated_at": common.isotime(row.updated_at), "deleted_at": None,
            "deleted": False}
    if microversion.at_least("2.41"):
        body["uuid"] = row.uuid
    return body


def _one(session, aggregate_id: str):
    row = aggregates_db.get(session, aggregate_id)
    return jsonify({"aggregate": _view(row, aggregates_db.hosts_of(session).get(row.id, []))})


def _zone(body: dict, where: str) -> str | None:
    zone = validation.string(body, "availability_zone", where, min_len=1)
    if zone is not None and zone == common.config().internal_service_availability_zone:
        raise exception.Invalid(f"The zone name {zone!r} is reserved for internal services.")
    return zone


@bp.get("/os-aggregates")
def index():
    common.authorize("os_compute_api:os-aggregates:index")
    with common.db().read() as session:
        hosts = aggregates_db.hosts_of(session)
        return jsonify({"aggregates": [_view(a, hosts.get(a.id, []))
                                       for a in aggregates_db.list_(session)]})


@bp.post("/os-aggregates")
def create():
    common.authorize("os_compute_api:os-aggregates:create")
    agg = validation.body_object(common.json_body(), "aggregate",
                                 {"name", "availability_zone"})
    name = validation.string(agg, "name", "aggregate", required=True, min_len=1)
    zone = _zone(agg, "aggregate")
    with common.db().write() as session:
        row = aggregates_db.create(session, name, zone)
        return jsonify({"aggregate": _view(row, [])})


@bp.get("/os-aggregates/<aggregate_id>")
def show(aggregate_id: str):
    common.authorize("os_compute_api:os-aggregates:show")
    with common.db().read() as session:
        return _one(session, aggregate_id)


@bp.put("/os-aggregates/<aggregate_id>")
def update(aggregate_id: str):
    common.authorize("os_compute_api:os-aggregates:update")
    body = common.json_body()
    agg = body.get("aggregate")
    if not isinstance(agg, dict) or not agg:
        raise exception.Invalid("Invalid input: 'aggregate' must be a non-empty object.")
    validation.only_keys(agg, {"name", "availability_zone"}, "aggregate")
    with common.db().write() as session:
        row = aggregates_db.get(session, aggregate_id)
        if "name" in agg:
            row.name = validation.string(agg, "name", "aggregate", required=True, min_len=1)
        if "availability_zone" in agg:
            aggregates_db.set_metadata(session, row,
                                       {aggregates_db.ZONE_KEY: _zone(agg, "aggregate")})
        session.flush()
        return _one(session, aggregate_id)


@bp.delete("/os-aggregates/<aggregate_id>")
def delete(aggregate_id: str):
    common.authorize("os_compute_api:os-aggregates:delete")
    with common.db().write() as session:
        aggregates_db.destroy(session, aggregates_db.get(session, aggregate_id))
    return "", 200


@bp.post("/os-aggregates/<aggregate_id>/action")
def action(aggregate_id: str):
    body = common.json_body()
    if len(body) != 1 or next(iter(body)) not in ("add_host", "remove_host", "set_metadata"):
        raise exception.Invalid("Exactly one of add_host, remove_host, set_metadata is "
                                "required.")
    (name, args), = body.items()
    common.authorize(f"os_compute_api:os-aggregates:{name}")
    if not isinstance(args, dict):
        raise exception.Invalid(f"Invalid input for {name}: it must be an object.")
    with common.db().write() as session:
        row = aggregates_db.get(session, aggregate_id)
        if name == "set_metadata":
            validation.only_keys(args, {"metadata"}, name)
            metadata = args.get("metadata")
            if not isinstance(metadata, dict) or not all(
                    isinstance(v, (str, type(None))) and 0 < len(k) <= 255
                    for k, v in metadata.items()):
                raise exception.Invalid("Invalid input for set_metadata: 'metadata' must map "
                                        "keys to strings (or null to remove a key).")
            if metadata.get(aggregates_db.ZONE_KEY) is not None:
                _zone({"availability_zone": metadata[aggregates_db.ZONE_KEY]}, name)
            aggregates_db.set_metadata(session, row, metadata)
        else:
            validation.only_keys(args, {"host"}, name)
            host = validation.string(args, "host", name, required=True, min_len=1)
            known = session.scalar(select(ComputeNode.id).where(ComputeNode.host == host))
            if known is None:
                raise exception.NotFound(f"Compute host {host} could not be found.")
            if name == "add_host":
                aggregates_db.add_host(session, row, host)
            else:
                aggregates_db.remove_host(session, row, host)
        session.flush()
        return _one(session, aggregate_id)


policy.register({"compute:aggregates:images": policy.ADMIN})


@bp.post("/os-aggregates/<aggregate_id>/images")
def cache_images(aggregate_id: str):
    """2.81: have every host of the aggregate cache these images ahead of boots.

    Answered at once (202); each host fetches into its image cache in the
    background, as a launch's cache-image step does, and a failure is logged.
    """
    microversion.require("2.81")
    common.authorize("compute:aggregates:images")
    body = common.json_body()
    validation.only_keys(body, {"cache"}, "the request body")
    wanted = body.get("cache")
    if (not isinstance(wanted, list) or not wanted
            or not all(isinstance(i, dict) and set(i) == {"id"} for i in wanted)):
        raise exception.Invalid("Invalid input for field 'cache': a non-empty list of "
                                "objects with just an 'id' is required.")
    with common.db().read() as session:
        row = aggregates_db.get(session, aggregate_id)
        hosts = aggregates_db.hosts_of(session).get(row.id, [])
        images = []
        for item in wanted:
            image_id = common.require_uuid(str(item["id"]), exception.ImageNotFound,
                                           image_id=item["id"])
            try:
                images.append(catalog.image_dict(catalog.get_image(session, image_id)))
            except exception.ImageNotFound as err:
                raise exception.Invalid(str(err)) from None
    client = common.compute_api().compute
    carried = contextvars.copy_context()  # the request id follows into the log lines
    threading.Thread(target=carried.run, args=(_cache_on_hosts, client, hosts, images),
                     name=f"cache-images-{row.id}", daemon=True).start()
    return "", 202


def _cache_on_hosts(client, hosts: list[str], images: list[dict]) -> None:
    for host in hosts:
        for image in images:
            try:
                client.call(host, "prepare_image", image=image)
                LOG.info("image %s cached on %s", image["id"], host)
            except exception.VmflowError as err:
                LOG.warning("caching image %s on %s failed: %s", image["id"], host, err)
