"""Identity pieces without a server: password hashes, secrets kept out of logs,
which requests need a token, the catalog, openrc files, the configuration."""

from __future__ import annotations

import logging
import stat

import pytest

from vmflow import config, log
from vmflow.identity import bootstrap, catalog, passwords
from webapp.api.middleware import needs_token


def test_password_hashes_are_salted_and_checked():
    first, second = passwords.hash_password("hunter2"), passwords.hash_password("hunter2")
    assert first != second  # a salt per hash
    assert first.startswith("scrypt$") and "hunter2" not in first
    assert passwords.verify_password("hunter2", first)
    assert passwords.verify_password("hunter2", second)
    assert not passwords.verify_password("hunter3", first)
    assert not passwords.verify_password("", first)
    # No user (None), a user without a password, or a damaged hash: never a match.
    assert not passwords.verify_password("hunter2", None)
    assert not passwords.verify_password("hunter2", "scrypt$oops")
    assert not passwords.verify_password("hunter2", "md5$x$y$z$a$b")


def test_secrets_are_masked_in_log_lines():
    cases = {
        'GET /v2.1/servers?token=abc123&limit=1': "GET /v2.1/servers?token=***&limit=1",
        "{'X-Auth-Token': 'gAAAA_x-y'}": "{'X-Auth-Token': '***'}",
        'X-Subject-Token: abc': "X-Subject-Token: ***",
        '{"password": "with space \\" and quote", "name": "x"}':
            '{"password": "***", "name": "x"}',
        "export OS_PASSWORD=s3cret": "export OS_PASSWORD=***",
        "original_password=old&password=new": "original_password=***&password=***",
    }
    for text, masked in cases.items():
        assert log.mask_secrets(text) == masked, text
    for harmless in ("issued token ab12 to user u1", "token_expiration=3600",
                     "revoked token audit-1 of user u2"):
        assert log.mask_secrets(harmless) == harmless


def test_the_log_filter_masks_messages_and_arguments(tmp_path):
    log.setup("INFO", str(tmp_path), service="secrets")
    try:
        logger = logging.getLogger("vmflow.test.secrets")
        logger.info("login with %s", {"password": "pa55word"})
        logger.info("headers: X-Auth-Token: tok-en-value")
        try:
            raise ValueError("password=in-a-traceback")
        except ValueError:
            logger.exception("failed")
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()
        log.setup("INFO")
    text = (tmp_path / "secrets.log").read_text()
    assert "login with" in text and "X-Auth-Token: ***" in text and "ValueError" in text
    for secret in ("pa55word", "tok-en-value", "in-a-traceback"):
        assert secret not in text


@pytest.mark.parametrize("method,path,needed", [
    ("GET", "/", False), ("GET", "/v2.1", False), ("GET", "/v2.1/", False),
    ("HEAD", "/v2.1/", False), ("GET", "/image", False), ("GET", "/image/versions", False),
    ("POST", "/", True), ("POST", "/v2.1/", True), ("GET", "/v2.1/servers", True),
    ("GET", "/v2.1/flavors/detail", True), ("GET", "/image/v2/images", True),
    ("GET", "/identity/v3/projects", False), ("POST", "/identity/v3/auth/tokens", False),
    ("GET", "/dashboard/", False), ("GET", "/dashboard/static/common.js", False),
    ("GET", "/dashboard/api/flows", True), ("GET", "/anything-else", True),
])
def test_which_requests_need_a_token(method, path, needed):
    assert needs_token(path, method) is needed


def test_catalog_lists_every_service_with_stable_ids():
    entries = catalog.catalog("http://cloud.example:8774/")
    assert [(e["type"], e["name"]) for e in entries] == [
        ("compute", "nova"), ("image", "glance"), ("identity", "keystone")]
    urls = {e["type"]: {ep["url"] for ep in e["endpoints"]} for e in entries}
    assert urls == {"compute": {"http://cloud.example:8774/v2.1"},
                    "image": {"http://cloud.example:8774/image"},
                    "identity": {"http://cloud.example:8774/identity/v3"}}
    assert catalog.catalog("http://cloud.example:8774") == entries
    ids = [ep["id"] for e in entries for ep in e["endpoints"]]
    assert len(set(ids)) == len(ids) == 9


def test_openrc_files_round_trip_and_are_private(tmp_path):
    path = tmp_path / "rc"
    bootstrap.write_private(path, bootstrap.openrc("http://h/identity/v3", "o'neil",
                                                   "p a$s", "team one"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = bootstrap.read_openrc(path)
    assert values["OS_USERNAME"] == "o'neil" and values["OS_PASSWORD"] == "p a$s"
    assert values["OS_PROJECT_NAME"] == "team one"
    assert bootstrap.read_password(tmp_path / "missing") is None


def test_keystone_is_the_default_and_other_strategies_are_refused(monkeypatch):
    monkeypatch.delenv("VMFLOW_AUTH_STRATEGY", raising=False)
    cfg = config.load(None, data_dir="/nonexistent")
    assert cfg.auth_strategy == "keystone" and cfg.token_expiration == 3600
    with pytest.raises(ValueError, match="auth_strategy"):
        config.load(None, data_dir="/nonexistent", auth_strategy="none")
