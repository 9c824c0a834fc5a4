"""Credentials for vmflow's own command-line client (`vmflow server ...`).

The usual OpenStack environment (``OS_USERNAME``, ``OS_PASSWORD``,
``OS_PROJECT_NAME``, ``OS_AUTH_URL``, as an openrc sets them), else the admin
openrc that `vmflow up` wrote in the data directory.  A token is asked for only
when the API answers 401, so a no-auth cloud never needs any of this.
"""

from __future__ import annotations

import os
from pathlib import Path

import requests

from vmflow.identity import DEFAULT_DOMAIN_NAME, bootstrap


def _data_dir() -> Path | None:
    from vmflow import config as config_mod

    try:
        return config_mod.load(None).data_dir
    except (OSError, ValueError):
        return None


def credentials() -> dict[str, str] | None:
    """OS_* settings with a user name and password, or None."""
    env = {k: v for k, v in os.environ.items() if k.startswith("OS_")}
    if env.get("OS_USERNAME") and env.get("OS_PASSWORD"):
        return env
    data_dir = _data_dir()
    if data_dir is not None:
        values = bootstrap.read_openrc(data_dir / "admin-openrc")
        if values.get("OS_USERNAME") and values.get("OS_PASSWORD"):
            # The identity service is the API's own: use the URL the command was
            # given, whatever address the file was written for.
            values.pop("OS_AUTH_URL", None)
            return values
    return None


def token(api_url: str, creds: dict[str, str]) -> str:
    """A project-scoped token for ``creds`` (raises requests.HTTPError when refused)."""
    auth_url = (creds.get("OS_AUTH_URL") or f"{api_url.rstrip('/')}/identity/v3").rstrip("/")
    if not auth_url.endswith("/v3"):
        auth_url += "/v3"
    domain = {"name": creds.get("OS_USER_DOMAIN_NAME", DEFAULT_DOMAIN_NAME)}
    auth = {"identity": {"methods": ["password"], "password": {"user": {
        "name": creds["OS_USERNAME"], "domain": domain, "password": creds["OS_PASSWORD"]}}}}
    if creds.get("OS_PROJECT_NAME"):
        auth["scope"] = {"project": {"name": creds["OS_PROJECT_NAME"], "domain": {
            "name": creds.get("OS_PROJECT_DOMAIN_NAME", DEFAULT_DOMAIN_NAME)}}}
    response = requests.post(f"{auth_url}/auth/tokens", json={"auth": auth}, timeout=30)
    response.raise_for_status()
    return response.headers["X-Subject-Token"]
