"""The web tier: Nova's compute API (``webapp.api``), served by one Flask app."""

from __future__ import annotations

from celery import Celery
from flask import Flask

from vmflow.compute_api import ComputeAPI
from vmflow.config import Config
from vmflow.db.session import Database


def create_app(config: Config, *, db: Database, celery_app: Celery) -> Flask:
    """Build the Flask application for one vmflow API service."""
    from webapp import api, dashboard, identity, image

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False
    app.extensions["vmflow"] = {
        "config": config, "db": db, "compute_api": ComputeAPI(config, db, celery_app),
    }
    api.init_app(app)
    image.init_app(app)  # the image service (Glance v2 subset) at /image
    identity.init_app(app)  # the identity service (Keystone v3 subset) at /identity
    dashboard.init_app(app)
    return app
