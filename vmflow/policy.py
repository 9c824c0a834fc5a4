"""Who may do what: named rules, each a check string, with Nova's defaults.

A rule is a name (``os_compute_api:servers:create``) and a check string that
says who passes it.  The language is a small subset of oslo.policy's:

- ``role:<name>``                the caller holds the role (roles are implied:
                                 admin holds member and reader, member holds
                                 reader);
- ``project_id:%(project_id)s``  a caller attribute (``project_id``, ``user_id``)
                                 equals a value, ``%(key)s`` taken from the target
                                 the operation acts on (a missing key fails);
- ``rule:<name>``                another rule passes;
- ``@`` (or an empty string)     always passes; ``!`` never does;
- ``not``, ``and``, ``or`` (in that order of binding) and parentheses.

Modules register their defaults at import with :func:`register`; an operator
replaces any of them in the ``[policy]`` table of the configuration.  An
:class:`Enforcer` holds the effective rules of one deployment: built from the
configuration at start, it refuses a malformed check string there rather than
at the first request that needs it.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from vmflow import exception
from vmflow.context import RequestContext

LOG = logging.getLogger(__name__)

# Roles and the roles they imply (Keystone's default implied roles).
IMPLIED_ROLES: dict[str, tuple[str, ...]] = {
    "admin": ("member", "reader"),
    "member": ("reader",),
}

# The caller attributes a check may compare with a value.
_ATTRIBUTES = ("project_id", "user_id")


class PolicyError(ValueError):
    """A check string that cannot be parsed (raised when rules are loaded)."""


# -- the check language -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Credentials:
    roles: frozenset[str]
    project_id: str
    user_id: str


# A parsed check: given the caller, the target and a way to evaluate other rules
# by name, whether it passes.
Check = Callable[[_Credentials, Mapping[str, Any], Callable[[str], bool]], bool]

_SUBSTITUTION = re.compile(r"%\((\w*)\)s")


def _tokens(text: str) -> list[str]:
    """Words split at whitespace, with the parentheses that group checks peeled
    off their ends (those of a ``%(key)s`` inside a check stay)."""
    out: list[str] = []
    for word in text.split():
        while word.startswith("("):
            out.append("(")
            word = word[1:]
        closing = 0
        while word.endswith(")") and word.count(")") > word.count("("):
            closing += 1
            word = word[:-1]
        if word:
            out.append(word)
        out.extend(")" * closing)
    return out


def _always(_creds, _target, _rules) -> bool:
    return True


def _never(_creds, _target, _rules) -> bool:
    return False


def _leaf(token: str, text: str) -> Check:
    if token == "@":
        return _always
    if token == "!":
        return _never
    kind, sep, value = token.partition(":")
    if not sep or not value:
        raise PolicyError(f"{text!r}: {token!r} is not a check (expected kind:value, "
                          "'@' or '!')")
    if kind == "role":
        role = value.lower()
        return lambda creds, _target, _rules: role in creds.roles
    if kind == "rule":
        return lambda _creds, _target, rules: rules(value)
    if kind in _ATTRIBUTES:
        for key in _SUBSTITUTION.findall(value):
            if not key:
                raise PolicyError(f"{text!r}: empty substitution in {token!r}")
        if "%" in _SUBSTITUTION.sub("", value):
            raise PolicyError(f"{text!r}: malformed substitution in {token!r} "
                              "(write %(key)s)")

        def attribute(creds: _Credentials, target: Mapping[str, Any], _rules) -> bool:
            try:
                expected = _SUBSTITUTION.sub(lambda m: str(target[m.group(1)]), value)
            except KeyError:
                return False
            return getattr(creds, kind) == expected

        return attribute
    raise PolicyError(f"{text!r}: unknown check kind {kind!r} in {token!r} (known: role, "
                      f"rule, {', '.join(_ATTRIBUTES)})")


class _Parser:
    """Recursive descent: or-expression of and-expressions of (not) atoms."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def parse(self) -> Check:
        if not self.tokens:
            return _always
        check = self._or()
        if self.pos != len(self.tokens):
            raise PolicyError(f"{self.text!r}: unexpected {self.tokens[self.pos]!r}")
        return check

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise PolicyError(f"{self.text!r}: ends where a check was expected")
        self.pos += 1
        return token

    def _or(self) -> Check:
        parts = [self._and()]
        while self._peek() == "or":
            self.pos += 1
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        return lambda creds, target, rules: any(p(creds, target, rules) for p in parts)

    def _and(self) -> Check:
        parts = [self._not()]
        while self._peek() == "and":
            self.pos += 1
            parts.append(self._not())
        if len(parts) == 1:
            return parts[0]
        return lambda creds, target, rules: all(p(creds, target, rules) for p in parts)

    def _not(self) -> Check:
        if self._peek() == "not":
            self.pos += 1
            inner = self._not()
            return lambda creds, target, rules: not inner(creds, target, rules)
        return self._atom()

    def _atom(self) -> Check:
        token = self._take()
        if token == "(":
            inner = self._or()
            if self._take() != ")":
                raise PolicyError(f"{self.text!r}: unbalanced parentheses")
            return inner
        if token in (")", "and", "or", "not"):
            raise PolicyError(f"{self.text!r}: unexpected {token!r}")
        return _leaf(token, self.text)


def parse(text: str) -> Check:
    """The check a check string describes; :class:`PolicyError` if it is malformed."""
    if not isinstance(text, str):
        raise PolicyError(f"{text!r} is not a check string")
    return _Parser(text).parse()


# -- the registry of defaults -----------------------------------------------------

_DEFAULTS: dict[str, str] = {}


def register(defaults: Mapping[str, str]) -> None:
    """Add rules (name -> default check string); called by modules at import.

    A malformed default is a programming error and raises at once.
    """
    for name, text in defaults.items():
        parse(text)
        _DEFAULTS[name] = text


def defaults() -> dict[str, str]:
    """Every registered rule with its default check string."""
    return dict(_DEFAULTS)


def _credentials(ctx: RequestContext) -> _Credentials:
    roles = {r.lower() for r in ctx.roles}
    if ctx.is_admin:
        roles.add("admin")
    for role in list(roles):
        roles.update(IMPLIED_ROLES.get(role, ()))
    return _Credentials(roles=frozenset(roles), project_id=ctx.project_id or "",
                        user_id=ctx.user_id or "")


class Enforcer:
    """The effective rules of a deployment: registered defaults replaced by the
    operator's ``[policy]`` entries (parsed here: a malformed one raises)."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self._parsed: dict[str, tuple[str, Check]] = {}
        for name, text in self.overrides.items():
            try:
                self._parsed[name] = (text, parse(text))
            except PolicyError as exc:
                raise PolicyError(f"[policy] {name}: {exc}") from None

    def rules(self) -> dict[str, str]:
        """Every rule with its effective check string."""
        return {**_DEFAULTS, **self.overrides}

    def _check_for(self, name: str) -> Check | None:
        text = self.overrides.get(name, _DEFAULTS.get(name))
        if text is None:
            return None
        cached = self._parsed.get(name)
        if cached is None or cached[0] != text:
            cached = (text, parse(text))
            self._parsed[name] = cached
        return cached[1]

    def check(self, ctx: RequestContext, rule: str,
              target: Mapping[str, Any] | None = None) -> bool:
        """Whether the caller passes ``rule`` for ``target`` (by default its own
        project and user; a target given is taken as it is, as in Nova)."""
        creds = _credentials(ctx)
        if target is None:
            target = {"project_id": ctx.project_id, "user_id": ctx.user_id}
        visiting: list[str] = []

        def evaluate(name: str) -> bool:
            if name in visiting:
                LOG.warning("policy rule %s refers to itself (via %s): denied", name,
                            " -> ".join(visiting))
                return False
            check = self._check_for(name)
            if check is None:
                LOG.warning("policy rule %s is not defined: denied", name)
                return False
            visiting.append(name)
            try:
                return check(creds, target, evaluate)
            finally:
                visiting.pop()

        return evaluate(rule)

    def authorize(self, ctx: RequestContext, rule: str,
                  target: Mapping[str, Any] | None = None) -> None:
        """Raise Forbidden (403) unless the caller passes ``rule``."""
        if not self.check(ctx, rule, target):
            raise exception.Forbidden(f"Policy doesn't allow {rule} to be performed.")


_DEFAULT_ENFORCER = Enforcer()


def authorize(ctx: RequestContext, rule: str, target: Mapping[str, Any] | None = None,
              enforcer: Enforcer | None = None) -> None:
    """Raise Forbidden (403) unless the caller passes ``rule`` (with the rules of
    ``enforcer``; the registered defaults without one)."""
    (enforcer or _DEFAULT_ENFORCER).authorize(ctx, rule, target)


def check(ctx: RequestContext, rule: str, target: Mapping[str, Any] | None = None,
          enforcer: Enforcer | None = None) -> bool:
    """Whether the caller passes ``rule`` (see :func:`authorize`)."""
    return (enforcer or _DEFAULT_ENFORCER).check(ctx, rule, target)


# Modules whose import registers rules (the API's blueprints register theirs).
_REGISTERING_MODULES = ("webapp.api", "webapp.image", "webapp.identity", "webapp.dashboard")


def register_all() -> None:
    """Import every module that registers rules, so that :func:`defaults` is complete."""
    for name in _REGISTERING_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # the module exists but something it needs does not
                raise


def toml_listing(enforcer: Enforcer) -> str:
    """The effective rules as a ``[policy]`` table an operator can copy from:
    every rule, with a comment where the configuration replaced the default."""
    lines = ["[policy]"]
    for name, text in sorted(enforcer.rules().items()):
        line = f"{json.dumps(name)} = {json.dumps(text)}"
        if name in enforcer.overrides:
            default = _DEFAULTS.get(name)
            line += ("  # configured; default " + json.dumps(default) if default is not None
                     else "  # configured; no default")
        lines.append(line)
    return "\n".join(lines) + "\n"


# -- base rules (Nova's names) ----------------------------------------------------

ADMIN = "rule:context_is_admin"
PROJECT_MEMBER_OR_ADMIN = "rule:project_member_or_admin"
PROJECT_READER_OR_ADMIN = "rule:project_reader_or_admin"
PROJECT_MEMBER = "rule:project_member_api"
PROJECT_READER = "rule:project_reader_api"

register({
    "context_is_admin": "role:admin",
    "admin_api": "role:admin",
    "project_member_api": "role:member and project_id:%(project_id)s",
    "project_reader_api": "role:reader and project_id:%(project_id)s",
    "project_member_or_admin": "rule:project_member_api or rule:context_is_admin",
    "project_reader_or_admin": "rule:project_reader_api or rule:context_is_admin",
})

# -- the compute API's rules (Nova's names and defaults) ----------------------------
# Admin only, as the issue asks: moving servers between hosts, services,
# hypervisors, aggregates, flavor management, other projects' servers and the host
# names in server bodies.  Members act on their own project's servers; readers
# only read.  (Nova lets a project manager migrate; vmflow has no manager role.)

_SERVERS = "os_compute_api:servers:"

register({
    # servers
    _SERVERS + "index": PROJECT_READER_OR_ADMIN,
    _SERVERS + "detail": PROJECT_READER_OR_ADMIN,
    _SERVERS + "index:get_all_tenants": ADMIN,
    _SERVERS + "detail:get_all_tenants": ADMIN,
    _SERVERS + "allow_all_filters": ADMIN,
    _SERVERS + "show": PROJECT_READER_OR_ADMIN,
    _SERVERS + "show:flavor-extra-specs": PROJECT_READER_OR_ADMIN,
    _SERVERS + "show:host_status": ADMIN,
    _SERVERS + "show:host_status:unknown-only": ADMIN,
    _SERVERS + "create": PROJECT_MEMBER_OR_ADMIN,
    _SERVERS + "create:forced_host": ADMIN,
    _SERVERS + "create:attach_network": PROJECT_MEMBER_OR_ADMIN,
    "compute:servers:create:requested_destination": ADMIN,
    _SERVERS + "delete": PROJECT_MEMBER_OR_ADMIN,
    _SERVERS + "update": PROJECT_MEMBER_OR_ADMIN,
    _SERVERS + "start": PROJECT_MEMBER_OR_ADMIN,
    _SERVERS + "stop": PROJECT_MEMBER_OR_ADMIN,
    _SERVERS + "reboot": PROJECT_MEMBER_OR_ADMIN,
    _SERVERS + "rebuild": PROJECT_MEMBER_OR_ADMIN,
    _SERVERS + "resize": PROJECT_MEMBER_OR_ADMIN,
    _SERVERS + "confirm_resize": PROJECT_MEMBER_OR_ADMIN,
    _SERVERS + "revert_resize": PROJECT_MEMBER_OR_ADMIN,
    _SERVERS + "create_image": PROJECT_MEMBER_OR_ADMIN,
    _SERVERS + "trigger_crash_dump": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-extended-server-attributes": ADMIN,
    # server actions
    "os_compute_api:os-pause-server:pause": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-pause-server:unpause": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-suspend-server:suspend": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-suspend-server:resume": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-lock-server:lock": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-lock-server:unlock": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-lock-server:unlock:unlock_override": ADMIN,
    "os_compute_api:os-rescue": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-unrescue": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-shelve:shelve": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-shelve:unshelve": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-shelve:shelve_offload": ADMIN,
    "os_compute_api:os-shelve:unshelve_to_host": ADMIN,
    "os_compute_api:os-create-backup": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-console-output": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-remote-consoles": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-server-diagnostics": ADMIN,
    "os_compute_api:os-admin-actions:reset_state": ADMIN,
    "os_compute_api:os-migrate-server:migrate": ADMIN,
    "os_compute_api:os-migrate-server:migrate:host": ADMIN,
    "os_compute_api:os-migrate-server:migrate_live": ADMIN,
    "os_compute_api:os-migrate-server:migrate_live:host": ADMIN,
    "os_compute_api:os-evacuate": ADMIN,
    "os_compute_api:os-migrations:index": ADMIN,
    "os_compute_api:servers:migrations:index": ADMIN,
    "os_compute_api:servers:migrations:show": ADMIN,
    "os_compute_api:servers:migrations:force_complete": ADMIN,
    "os_compute_api:servers:migrations:delete": ADMIN,
    "os_compute_api:server-metadata:index": PROJECT_READER_OR_ADMIN,
    "os_compute_api:server-metadata:show": PROJECT_READER_OR_ADMIN,
    "os_compute_api:server-metadata:create": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:server-metadata:update": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:server-metadata:update_all": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:server-metadata:delete": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:ips:index": PROJECT_READER_OR_ADMIN,
    "os_compute_api:ips:show": PROJECT_READER_OR_ADMIN,
    # instance actions (the events of an action hold host details: admin)
    "os_compute_api:os-instance-actions:list": PROJECT_READER_OR_ADMIN,
    "os_compute_api:os-instance-actions:show": PROJECT_READER_OR_ADMIN,
    "os_compute_api:os-instance-actions:events": ADMIN,
    "os_compute_api:os-instance-actions:events:details": ADMIN,
    # services, hypervisors, aggregates, zones
    "os_compute_api:os-services:list": ADMIN,
    "os_compute_api:os-services:update": ADMIN,
    "os_compute_api:os-services:delete": ADMIN,
    "os_compute_api:os-hypervisors:list": ADMIN,
    "os_compute_api:os-hypervisors:list-detail": ADMIN,
    "os_compute_api:os-hypervisors:statistics": ADMIN,
    "os_compute_api:os-hypervisors:show": ADMIN,
    "os_compute_api:os-hypervisors:uptime": ADMIN,
    "os_compute_api:os-hypervisors:search": ADMIN,
    "os_compute_api:os-hypervisors:servers": ADMIN,
    "os_compute_api:os-aggregates:index": ADMIN,
    "os_compute_api:os-aggregates:create": ADMIN,
    "os_compute_api:os-aggregates:show": ADMIN,
    "os_compute_api:os-aggregates:update": ADMIN,
    "os_compute_api:os-aggregates:delete": ADMIN,
    "os_compute_api:os-aggregates:add_host": ADMIN,
    "os_compute_api:os-aggregates:remove_host": ADMIN,
    "os_compute_api:os-aggregates:set_metadata": ADMIN,
    "os_compute_api:os-availability-zone:list": "@",
    "os_compute_api:os-availability-zone:detail": ADMIN,
    # flavors (listing and showing flavors needs no rule, as in Nova)
    "os_compute_api:os-flavor-manage:create": ADMIN,
    "os_compute_api:os-flavor-manage:update": ADMIN,
    "os_compute_api:os-flavor-manage:delete": ADMIN,
    "os_compute_api:os-flavor-extra-specs:index": PROJECT_READER_OR_ADMIN,
    "os_compute_api:os-flavor-extra-specs:show": PROJECT_READER_OR_ADMIN,
    "os_compute_api:os-flavor-extra-specs:create": ADMIN,
    "os_compute_api:os-flavor-extra-specs:update": ADMIN,
    "os_compute_api:os-flavor-extra-specs:delete": ADMIN,
    "os_compute_api:os-flavor-access": ADMIN,
    # server groups
    "os_compute_api:os-server-groups:index": PROJECT_READER_OR_ADMIN,
    "os_compute_api:os-server-groups:index:all_projects": ADMIN,
    "os_compute_api:os-server-groups:show": PROJECT_READER_OR_ADMIN,
    "os_compute_api:os-server-groups:create": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:os-server-groups:delete": PROJECT_MEMBER_OR_ADMIN,
    # usage
    "os_compute_api:os-simple-tenant-usage:list": ADMIN,
    "os_compute_api:os-simple-tenant-usage:show": PROJECT_READER_OR_ADMIN,
    # vmflow's own: the flow runs behind every operation, and the dashboard
    "vmflow:os-flows:list": ADMIN,
    "vmflow:os-flows:show": ADMIN,
    "vmflow:os-flows:action": ADMIN,
    "vmflow:dashboard:flows": ADMIN,
    "vmflow:dashboard:trace": ADMIN,
})
