"""Nova's compute API v2.1: request ids, errors, and the resource blueprints."""

from __future__ import annotations

from flask import Flask

from webapp.api import (
    aggregates,
    errors,
    flavors,
    flows,
    hypervisors,
    images,
    instance_actions,
    keypairs,
    limits,
    live_migrations,
    microversion,
    middleware,
    migrations,
    quotas,
    server_actions,
    server_groups,
    server_metadata,
    servers,
    services,
    usage,
    versions,
    zones,
)


def init_app(app: Flask) -> None:
    middleware.init_app(app)
    errors.init_app(app)
    microversion.init_app(app)
    app.register_blueprint(versions.bp)
    for module in (servers, server_actions, flavors, images, hypervisors, services,
                   aggregates, zones, server_groups, instance_actions, flows, usage,
                   server_metadata):
        app.register_blueprint(module.bp, url_prefix="/v2.1")
    for module in (quotas, limits, keypairs):
        app.register_blueprint(module.bp, url_prefix="/v2.1")
    app.register_blueprint(live_migrations.bp, url_prefix="/v2.1")
    app.register_blueprint(migrations.bp, url_prefix="/v2.1")
