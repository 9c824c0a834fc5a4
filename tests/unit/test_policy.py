"""The policy engine (vmflow/policy.py): the check-string language, implied roles,
rule references, the operator's overrides and what is refused at load."""

from __future__ import annotations

import logging

import pytest

from vmflow import config as config_mod
from vmflow import exception, policy
from vmflow.context import RequestContext


def _ctx(*roles: str, project: str = "p1", user: str = "u1") -> RequestContext:
    return RequestContext(request_id="req-test", project_id=project, user_id=user,
                          is_admin="admin" in roles, roles=roles)


ADMIN, MEMBER, READER, NOBODY = _ctx("admin"), _ctx("member"), _ctx("reader"), _ctx()


def _passes(text: str, ctx: RequestContext, target: dict | None = None) -> bool:
    enforcer = policy.Enforcer({"test:rule": text})
    return enforcer.check(ctx, "test:rule", target)


@pytest.mark.parametrize(("text", "expected"), [
    # reader, member, admin, no role
    ("role:reader", (True, True, True, False)),
    ("role:member", (False, True, True, False)),
    ("role:admin", (False, False, True, False)),
    ("ROLE:admin", None),  # kinds are lower case: malformed
    ("@", (True, True, True, True)),
    ("", (True, True, True, True)),
    ("!", (False, False, False, False)),
    ("not role:member", (True, False, False, True)),
    ("role:member and not role:admin", (False, True, False, False)),
    ("role:admin or role:reader and not role:member", (True, False, True, False)),
    ("(role:admin or role:reader) and not role:member", (True, False, False, False)),
    ("not (role:reader or @)", (False, False, False, False)),
    ("rule:context_is_admin", (False, False, True, False)),
    ("rule:project_member_or_admin", (False, True, True, False)),
    ("rule:project_reader_or_admin", (True, True, True, False)),
])
def test_check_strings_and_implied_roles(text, expected):
    if expected is None:
        with pytest.raises(policy.PolicyError):
            policy.parse(text)
        return
    assert tuple(_passes(text, c) for c in (READER, MEMBER, ADMIN, NOBODY)) == expected


def test_roles_listed_explicitly_or_implied_give_the_same_answers():
    spelled_out = _ctx("admin", "member", "reader")
    for rule in ("rule:project_reader_api", "rule:project_member_api", "rule:admin_api"):
        assert _passes(rule, spelled_out) and _passes(rule, ADMIN)
    assert _passes("role:member", _ctx("Member"))  # role names are case-insensitive


def test_targets_are_substituted_and_a_missing_key_fails():
    rule = "role:member and project_id:%(project_id)s"
    assert _passes(rule, MEMBER, {"project_id": "p1"})
    assert not _passes(rule, MEMBER, {"project_id": "p2"})
    assert not _passes(rule, READER, {"project_id": "p1"})
    assert _passes("user_id:%(user_id)s", MEMBER, {"user_id": "u1"})
    assert not _passes("user_id:%(user_id)s", MEMBER, {"user_id": "u2"})
    assert not _passes("project_id:%(owner)s", MEMBER, {"project_id": "p1"})
    # A target given is taken as it is: the caller's user does not fill it in.
    assert not _passes("user_id:%(user_id)s", MEMBER, {"project_id": "p1"})
    assert _passes("project_id:p1", MEMBER) and not _passes("project_id:p2", MEMBER)
    # Without a target, the caller's own project and user are the target.
    assert _passes("rule:project_member_api", MEMBER)
    # Parentheses inside a substitution are not grouping.
    assert _passes("(role:admin or (project_id:%(project_id)s))", MEMBER, {"project_id": "p1"})


@pytest.mark.parametrize("text", [
    "role:", "role", "rule:", "admin", "role:admin and", "and role:admin",
    "role:admin or or role:member", "(role:admin", "role:admin)", "()", "not",
    "is_admin:True", "project_id:%(project_id", "project_id:%(project_id)d",
    "project_id:%()s", "role:admin role:member",
])
def test_malformed_check_strings_are_refused(text):
    with pytest.raises(policy.PolicyError):
        policy.parse(text)


def test_unknown_and_self_referring_rules_deny_with_a_warning(caplog):
    enforcer = policy.Enforcer({"loop:a": "rule:loop:b", "loop:b": "rule:loop:a or !"})
    with caplog.at_level(logging.WARNING, logger="vmflow.policy"):
        assert not enforcer.check(ADMIN, "no:such:rule")
        assert not enforcer.check(ADMIN, "loop:a")
        assert not _passes("rule:no:such:rule or role:member", READER)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "no:such:rule is not defined" in messages and "refers to itself" in messages
    with pytest.raises(exception.Forbidden) as refused:
        enforcer.authorize(ADMIN, "no:such:rule")
    assert refused.value.code == 403
    assert str(refused.value) == "Policy doesn't allow no:such:rule to be performed."


def test_overrides_replace_defaults_and_refer_to_them():
    create = "os_compute_api:servers:create"
    assert policy.Enforcer().check(MEMBER, create)
    admin_only = policy.Enforcer({create: "rule:admin_api"})
    assert not admin_only.check(MEMBER, create) and admin_only.check(ADMIN, create)
    assert admin_only.rules()[create] == "rule:admin_api"
    assert policy.defaults()[create] == "rule:project_member_or_admin"
    # Replacing a base rule changes every rule built on it.
    strict_admin = policy.Enforcer({"context_is_admin": "role:admin and project_id:ops"})
    assert not strict_admin.check(ADMIN, "os_compute_api:os-hypervisors:list")
    assert strict_admin.check(_ctx("admin", project="ops"), "os_compute_api:os-hypervisors:list")


def test_issue_defaults():
    """The issue's split: admin-only operations, members act, readers read."""
    enforcer = policy.Enforcer()
    own, other = {"project_id": "p1"}, {"project_id": "p2"}
    admin_only = ["os_compute_api:os-migrate-server:migrate",
                  "os_compute_api:os-migrate-server:migrate_live", "os_compute_api:os-evacuate",
                  "os_compute_api:os-services:update", "os_compute_api:os-hypervisors:list",
                  "os_compute_api:os-aggregates:create", "os_compute_api:os-flavor-manage:create",
                  "os_compute_api:os-flavor-manage:delete",
                  "os_compute_api:servers:index:get_all_tenants",
                  "os_compute_api:os-extended-server-attributes",
                  "os_compute_api:os-lock-server:unlock:unlock_override"]
    for rule in admin_only:
        assert enforcer.check(ADMIN, rule, own), rule
        assert not enforcer.check(MEMBER, rule, own), rule
    for rule in ("os_compute_api:servers:stop", "os_compute_api:servers:create",
                 "os_compute_api:os-pause-server:pause", "os_compute_api:servers:delete"):
        assert enforcer.check(MEMBER, rule, own) and not enforcer.check(MEMBER, rule, other)
        assert not enforcer.check(READER, rule, own) and enforcer.check(ADMIN, rule, other)
    for rule in ("os_compute_api:servers:show", "os_compute_api:servers:index",
                 "os_compute_api:os-instance-actions:list"):
        assert enforcer.check(READER, rule, own) and not enforcer.check(READER, rule, other)


def test_a_malformed_policy_in_the_configuration_stops_the_start(tmp_path):
    path = tmp_path / "vmflow.toml"
    path.write_text('[policy]\n"os_compute_api:servers:create" = "role:admin or"\n')
    with pytest.raises(policy.PolicyError, match=r"\[policy\] os_compute_api:servers:create"):
        config_mod.load(path, data_dir=tmp_path)
    path.write_text('[policy]\n"os_compute_api:servers:create" = "rule:admin_api"\n')
    cfg = config_mod.load(path, data_dir=tmp_path)
    assert cfg.policy == {"os_compute_api:servers:create": "rule:admin_api"}


def test_policy_list_prints_the_effective_rules_and_refuses_a_malformed_one(tmp_path, capsys):
    from vmflow import cli

    path = tmp_path / "vmflow.toml"
    path.write_text('[policy]\n"os_compute_api:servers:create" = "rule:admin_api"\n')
    assert cli.main(["policy", "list", "--config", str(path)]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("[policy]\n")
    assert ('"os_compute_api:servers:create" = "rule:admin_api"  # configured; default '
            '"rule:project_member_or_admin"\n') in listed
    assert '"os_compute_api:os-evacuate" = "rule:context_is_admin"\n' in listed
    assert '"project_member_api" = "role:member and project_id:%(project_id)s"\n' in listed
    # What it prints is a configuration that loads, with the same rules.
    (tmp_path / "listed.toml").write_text(listed)
    assert config_mod.load(tmp_path / "listed.toml", data_dir=tmp_path).policy == \
        policy.Enforcer({"os_compute_api:servers:create": "rule:admin_api"}).rules()

    path.write_text('[policy]\n"os_compute_api:servers:create" = "role:admin and (rule:x"\n')
    assert cli.main(["policy", "list", "--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert "invalid configuration: [policy] os_compute_api:servers:create:" in error
    assert "ends where a check was expected" in error


def test_every_operation_on_an_instance_has_a_registered_rule():
    """A new operation without a rule would answer 500 (KeyError): add it to
    compute_api.RULES, with a default registered in vmflow/policy.py."""
    from vmflow.compute_api import RULES, UNLOCK_OVERRIDE
    from vmflow.states.actions import ACTIONS

    assert set(ACTIONS) <= set(RULES)
    for rule in [*RULES.values(), UNLOCK_OVERRIDE]:
        assert rule in policy.defaults(), rule
