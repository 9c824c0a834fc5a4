"""The `vmflow` command: run the services, and talk to the API.

    vmflow up [--hosts N]                 embedded all-in-one cloud
    vmflow api | conductor | compute ...  one service per process (distributed)
    vmflow db upgrade                     apply schema migrations
    vmflow server create|list|show|delete talk to a running API
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import tomllib
from typing import Any

import requests

from vmflow import config as config_mod
from vmflow import log

DEFAULT_URL = "http://127.0.0.1:8774"


# -- services -------------------------------------------------------------------------

def _load_config(args: argparse.Namespace, **overrides: Any) -> config_mod.Config:
    overrides.update({k: getattr(args, k, None) for k in ("data_dir", "api_port", "api_host",
                                                           "database_url")})
    if getattr(args, "hosts", None) is not None:
        overrides["host_count"] = args.hosts
    return config_mod.load(args.config, **overrides)


def _tune_interpreter() -> None:
    """Hand the GIL over every 1 ms instead of 5 ms.

    A service thread mostly waits (broker, database, hypervisor) and each wait
    gives the GIL up; getting it back behind a busy thread costs up to a whole
    switch interval, and a launch takes that hit on every step.  Measured with
    bench/launch.py at concurrency 4: boots per second +30%, p50 -25%.
    """
    sys.setswitchinterval(0.001)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def _serve(cfg: config_mod.Config, flask_app, on_listen=None) -> None:
    from werkzeug.serving import make_server

    server = make_server(cfg.api_host, cfg.api_port, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="api", daemon=True)
    thread.start()
    if on_listen:
        on_listen()
    try:
        _wait_for_signal()
    finally:
        server.shutdown()


def cmd_up(args: argparse.Namespace) -> int:
    from vmflow.cloud import Cloud
    from webapp import create_app

    cfg = _load_config(args)
    if args.distributed:
        from vmflow import launcher

        return launcher.run(cfg, args.config)
    if not cfg.log_dir:  # a log file out of the box, so the dashboard's request trace works
        cfg.log_dir = str(cfg.data_dir / "logs")
    _tune_interpreter()
    log.setup(cfg.log_level, cfg.log_dir, service="vmflow")
    cloud = Cloud(cfg)
    cloud.start()
    app = create_app(cfg, db=cloud.db, celery_app=cloud.app)
    from vmflow.identity import bootstrap

    accounts = bootstrap.on_start(cloud.db, cfg)

    def announce() -> None:
        print(f"vmflow is up: compute API at http://{cfg.api_host}:{cfg.api_port}/v2.1 "
              f"({len(cloud.hosts)} simulated hosts, data in {cfg.data_dir})", flush=True)
        print(f"  dashboard: http://{cfg.api_host}:{cfg.api_port}/dashboard/", flush=True)
        print("  try: vmflow server create demo --flavor m1.tiny --image blank-qcow2 --wait",
              flush=True)
        print(accounts, end="", flush=True)

    try:
        _serve(cfg, app, announce)
    finally:
        cloud.stop()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    _tune_interpreter()
    from vmflow.cloud import prepare_database
    from webapp import create_app
    from workers.celery_app import make_app

    cfg = _load_config(args)
    log.setup(cfg.log_level, cfg.log_dir, service="vmflow-api")
    db = prepare_database(cfg)
    app = create_app(cfg, db=db, celery_app=make_app(cfg))
    _serve(cfg, app, lambda: print(f"vmflow API at http://{cfg.api_host}:{cfg.api_port}/",
                                   flush=True))
    return 0


def _run_service(cfg: config_mod.Config, service: str, **roles: bool) -> int:
    """Run some of the cloud's services in this process until SIGINT/SIGTERM."""
    from vmflow.cloud import Cloud

    _tune_interpreter()
    log.setup(cfg.log_level, cfg.log_dir, service=service)
    cloud = Cloud(cfg, **roles)
    cloud.start()
    print(f"{service} running", flush=True)
    try:
        _wait_for_signal()
    finally:
        cloud.stop()
    return 0


def cmd_conductor(args: argparse.Namespace) -> int:
    return _run_service(_load_config(args), "vmflow-conductor", run_compute=False)


def _simulated_hypervisor(args: argparse.Namespace) -> str:
    """Where the simulated hosts' hypervisors live: ``--hypervisor daemon|in-process``,
    else ``simulated_hypervisor`` when the environment or the configuration file
    sets it, else "daemon" (the built-in default, "in-process", is the embedded
    mode's)."""
    if args.hypervisor:
        return args.hypervisor
    value = os.environ.get("VMFLOW_SIMULATED_HYPERVISOR")
    path = args.config or os.environ.get("VMFLOW_CONFIG")
    if value is None and path:
        with open(path, "rb") as fh:
            value = tomllib.load(fh).get("simulated_hypervisor")
    return value or "daemon"


def cmd_compute(args: argparse.Namespace) -> int:
    """Serve one or more hosts (``--host`` repeated) from this process.

    Each host keeps its own queue ``<prefix>.compute.<host>``, bound to its own
    routing key ``compute.<host>``: the conductor's calls reach the host, not the
    process, and a host can move to another process between restarts.  One
    Celery consumer and one thread pool serve all of them.
    """
    from workers.celery_app import compute_queue, make_app
    from workers.compute import ComputeService
    from workers.embedded import ThreadedWorker

    names = args.host
    if len(set(names)) != len(names):
        raise SystemExit("vmflow compute: a host is named twice")
    cfg = _load_config(args)
    uri = args.hypervisor or ""
    if uri in ("", "daemon", "in-process"):  # simulated hosts
        cfg.simulated_hypervisor = _simulated_hypervisor(args)
        if cfg.simulated_hypervisor not in ("daemon", "in-process"):
            raise SystemExit(f"vmflow compute: simulated_hypervisor is "
                             f"{cfg.simulated_hypervisor!r}, not 'daemon' or 'in-process'")
        uri = ""
    elif len(names) > 1:
        raise SystemExit("vmflow compute: a libvirt URI (--hypervisor) serves one host")
    cfg.hosts = [config_mod.HostConfig(name=name, uri=uri, vcpus=args.vcpus,
                                       memory_mb=args.memory_mb, disk_gb=args.disk_gb)
                 for name in names]
    # One log file per process: vmflow-compute-<host>.log, or <first host>+<others>.
    service = f"vmflow-compute-{names[0]}" + (f"+{len(names) - 1}" if len(names) > 1 else "")
    _tune_interpreter()
    log.setup(cfg.log_level, cfg.log_dir, service=service)
    queues = [compute_queue(cfg, [name]) for name in names]
    app = make_app(cfg, compute_queues=queues)
    compute = ComputeService(app, cfg, cfg.hosts, report_interval=cfg.report_interval)
    worker = ThreadedWorker(app, name="compute", queues=[q.name for q in queues],
                            concurrency=cfg.compute_concurrency)
    worker.start()
    try:
        compute.start()
        print(f"{service} running ({len(names)} host{'s' if len(names) > 1 else ''}: "
              f"{', '.join(names)})", flush=True)
        _wait_for_signal()
    finally:
        compute.stop()
        worker.stop()
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from vmflow.db import migrate
    from vmflow.db.session import Database

    cfg = _load_config(args)
    db = Database(cfg.database_url)
    migrate.upgrade(db)
    print(f"database at revision {migrate.current(db)}")
    return 0


def cmd_policy_list(args: argparse.Namespace) -> int:
    """Print the effective policy: every rule's default, or the configuration's."""
    from vmflow import policy

    cfg = _load_config(args)
    policy.register_all()
    print(policy.toml_listing(policy.Enforcer(cfg.policy)), end="")
    return 0


# -- API client -----------------------------------------------------------------------

class ApiError(Exception):
    pass


class Client:
    def __init__(self, url: str) -> None:
        self.root = url.rstrip("/")
        self.url = self.root + "/v2.1"
        self.http = requests.Session()
        # The newest compute microversion: lock reasons, createImage's image_id, event details.
        from webapp.api.microversion import HEADER, MAX_VERSION

        self.http.headers[HEADER] = f"compute {MAX_VERSION}"

    def _authenticate(self) -> bool:
        """Get a token (OS_* environment, else the data directory's admin-openrc)."""
        from vmflow.identity import client as identity_client

        creds = identity_client.credentials()
        if creds is None or "X-Auth-Token" in self.http.headers:
            return False
        try:
            self.http.headers["X-Auth-Token"] = identity_client.token(self.root, creds)
        except requests.HTTPError as err:
            raise ApiError(f"authentication as {creds['OS_USERNAME']} failed "
                           f"(HTTP {err.response.status_code})") from None
        return True

    def request(self, method: str, path: str, body: dict | None = None, *,
                base: str | None = None, headers: dict[str, str] | None = None) -> Any:
        url = (base or self.url) + path
        response = self.http.request(method, url, json=body, timeout=30, headers=headers)
        if response.status_code == 401 and self._authenticate():
            response = self.http.request(method, url, json=body, timeout=30, headers=headers)
        if response.status_code >= 400:
            try:
                payload = response.json()
                (kind, err), = payload.items()
                message = f"{err.get('message')} (HTTP {err.get('code')})"
            except Exception:
                message = f"HTTP {response.status_code}: {response.text[:200]}"
            rid = response.headers.get("X-OpenStack-Request-Id", "-")
            raise ApiError(f"{message} [request {rid}]")
        return response.json() if response.content else None

    def resolve_image(self, ref: str) -> str:
        images = self.request("GET", f"/v2/images?name={requests.utils.quote(ref)}",
                              base=self.root + "/image")["images"]
        return images[0]["id"] if images else ref


def _print_server(server: dict) -> None:
    keys = ["id", "name", "status", "OS-EXT-STS:vm_state", "OS-EXT-STS:task_state",
            "OS-EXT-STS:power_state", "OS-EXT-SRV-ATTR:host", "flavor", "image", "created",
            "updated", "tenant_id", "user_id", "fault"]
    for key in keys:
        if key in server:
            value = server[key]
            if isinstance(value, dict):
                value = value.get("id", json.dumps(value))
            print(f"{key:28} {value}")


def _wait(client: Client, server_id: str, until_gone: bool | None, timeout: float
          ) -> dict | None:
    """Follow a server's status until ACTIVE/ERROR, until it is gone, or (with
    ``until_gone=None``) until no operation holds it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            server = client.request("GET", f"/servers/{server_id}")["server"]
        except ApiError as err:
            if until_gone and "HTTP 404" in str(err):
                print("deleted", flush=True)
                return None
            raise
        step = (server["status"], server.get("OS-EXT-STS:task_state"))
        if step != last:
            print(f"  {server['status']:8} task_state={step[1]}", flush=True)
            last = step
        if until_gone is False and server["status"] in ("ACTIVE", "ERROR"):
            return server
        if until_gone is None and step[1] is None:  # an action: until it is done
            return server
        time.sleep(0.2)
    raise ApiError(f"timed out after {timeout:.0f}s waiting for server {server_id}")


def cmd_server(args: argparse.Namespace) -> int:
    client = Client(args.url)
    try:
        if args.action == "create":
            body = {"server": {"name": args.name, "flavorRef": args.flavor,
                               "imageRef": client.resolve_image(args.image),
                               "networks": "none"}}  # no networking yet
            server = client.request("POST", "/servers", body)["server"]
            print(f"accepted {server['id']}", flush=True)
            if args.wait:
                server = _wait(client, server["id"], until_gone=False, timeout=args.timeout)
                _print_server(server)
                return 0 if server["status"] == "ACTIVE" else 1
        elif args.action == "list":
            servers = client.request("GET", "/servers/detail")["servers"]
            print(f"{'ID':36}  {'NAME':20} {'STATUS':8} {'TASK':14} HOST")
            for s in servers:
                print(f"{s['id']:36}  {s['name'][:20]:20} {s['status']:8} "
                      f"{str(s.get('OS-EXT-STS:task_state') or '-'):14} "
                      f"{s.get('OS-EXT-SRV-ATTR:host') or '-'}")
        elif args.action == "show":
            _print_server(client.request("GET", f"/servers/{args.id}")["server"])
        elif args.action == "delete":
            client.request("DELETE", f"/servers/{args.id}")
            print(f"delete of {args.id} accepted", flush=True)
            if args.wait:
                _wait(client, args.id, until_gone=True, timeout=args.timeout)
        elif args.action == "actions":
            _print_actions(client, args.id, args.request_id)
        else:
            return _server_action(client, args)
    except ApiError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except requests.ConnectionError:
        print(f"error: no vmflow API at {args.url} (is `vmflow up` running?)", file=sys.stderr)
        return 1
    return 0


# `vmflow server <verb>` -> the body of POST /servers/{id}/action, from the
# arguments and the image they name (resolved by name or id, as for create).
_ACTION_BODIES = {
    "stop": lambda a, image: {"os-stop": None}, "start": lambda a, image: {"os-start": None},
    "reboot": lambda a, image: {"reboot": {"type": "HARD" if a.hard else "SOFT"}},
    "pause": lambda a, image: {"pause": None}, "unpause": lambda a, image: {"unpause": None},
    "suspend": lambda a, image: {"suspend": None}, "resume": lambda a, image: {"resume": None},
    "lock": lambda a, image: {"lock": {"locked_reason": a.reason} if a.reason else None},
    "unlock": lambda a, image: {"unlock": None},
    "rescue": lambda a, image: {"rescue": {"rescue_image_ref": image} if image else None},
    "unrescue": lambda a, image: {"unrescue": None},
    "rebuild": lambda a, image: {"rebuild": {"imageRef": image,
                                             **({"name": a.name} if a.name else {})}},
    "image-create": lambda a, image: {"createImage": {"name": a.name}},
    # Moves (issue #6); migrate, live-migrate, shelve-offload and evacuate are
    # an admin's by default.
    "resize": lambda a, image: {"resize": {"flavorRef": a.flavor}},
    "resize-confirm": lambda a, image: {"confirmResize": None},
    "resize-revert": lambda a, image: {"revertResize": None},
    "migrate": lambda a, image: {"migrate": {"host": a.target} if a.target else None},
    "live-migrate": lambda a, image: {"os-migrateLive": {
        "host": a.target, "block_migration": "auto"}},
    "shelve": lambda a, image: {"shelve": None},
    "shelve-offload": lambda a, image: {"shelveOffload": None},
    "unshelve": lambda a, image: {"unshelve": None},
    "evacuate": lambda a, image: {"evacuate": {"host": a.target} if a.target else {}},
}
# The microversion each verb's body needs (the host of a migrate is 2.56's;
# "auto" block migration 2.25's; evacuate without onSharedStorage 2.14's).
_ACTION_VERSIONS = {"migrate": "2.56", "live-migrate": "2.25", "evacuate": "2.14"}


def _server_action(client: Client, args: argparse.Namespace) -> int:
    image = getattr(args, "image", None)
    body = _ACTION_BODIES[args.action](args, client.resolve_image(image) if image else None)
    version = _ACTION_VERSIONS.get(args.action)
    answer = client.request("POST", f"/servers/{args.id}/action", body,
                            headers={"OpenStack-API-Version": f"compute {version}"}
                            if version else None)
    print(f"{args.action} of {args.id} accepted", flush=True)
    if answer and answer.get("image_id"):
        print(f"image {answer['image_id']}", flush=True)
    if args.wait:
        server = _wait(client, args.id, until_gone=None, timeout=args.timeout)
        _print_server(server)
        return 1 if server["status"] == "ERROR" else 0
    return 0


def _print_actions(client: Client, server_id: str, request_id: str | None) -> None:
    if request_id is None:
        actions = client.request("GET", f"/servers/{server_id}/os-instance-actions")
        print(f"{'REQUEST':40}  {'ACTION':12} {'RESULT':7} START")
        for a in actions["instanceActions"]:
            print(f"{a['request_id']:40}  {a['action']:12} {a['message'] or 'ok':7} "
                  f"{a['start_time']}")
        return
    action = client.request("GET", f"/servers/{server_id}/os-instance-actions/"
                                   f"{request_id}")["instanceAction"]
    print(f"{action['action']} ({action['message'] or 'ok'}), by {action['user_id']}")
    for e in action["events"]:
        print(f"  {e['start_time']}  {e['result']:7} {e['event']}  {e.get('host') or ''}")
        if e["result"] == "Error" and e.get("details"):
            print(f"      {e['details']}")


# -- parser ---------------------------------------------------------------------------

def _service_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML configuration file (also VMFLOW_CONFIG)")
    p.add_argument("--data-dir", dest="data_dir", help="where state is kept")
    p.add_argument("--database-url", dest="database_url")
    p.add_argument("--port", dest="api_port", type=int)
    p.add_argument("--host", dest="api_host", help="address the API listens on")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmflow", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the embedded all-in-one cloud")
    _service_args(up)
    up.add_argument("--hosts", type=int, help="number of simulated compute hosts (default 4)")
    up.add_argument("--distributed", action="store_true",
                    help="every service as a process of its own, over local Redis and "
                         "PostgreSQL")
    up.set_defaults(func=cmd_up)

    api = sub.add_parser("api", help="run the API service")
    _service_args(api)
    api.set_defaults(func=cmd_api)

    cond = sub.add_parser("conductor", help="run a conductor")
    _service_args(cond)
    cond.set_defaults(func=cmd_conductor)

    comp = sub.add_parser("compute", help="run the compute service of one or more hosts")
    comp.add_argument("--config")
    comp.add_argument("--data-dir", dest="data_dir")
    comp.add_argument("--host", required=True, action="append", metavar="NAME",
                      help="a host's name; repeat it for a process serving several hosts "
                           "(--host=compute-{1..10} in bash), each on its own queue")
    comp.add_argument("--hypervisor",
                      help="libvirt URI (one host only), or simulated hosts: 'daemon' (its "
                           "own libvirtd per host, which outlives this process) or "
                           "'in-process'; default: simulated_hypervisor if the configuration "
                           "or VMFLOW_SIMULATED_HYPERVISOR sets it, else 'daemon'")
    comp.add_argument("--vcpus", type=int, default=16, help="per host")
    comp.add_argument("--memory-mb", dest="memory_mb", type=int, default=32768, help="per host")
    comp.add_argument("--disk-gb", dest="disk_gb", type=int, default=500, help="per host")
    comp.set_defaults(func=cmd_compute)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply migrations")
    _service_args(upgrade)
    upgrade.set_defaults(func=cmd_db_upgrade)

    pol = sub.add_parser("policy", help="authorization rules")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    pol_list = pol_sub.add_parser("list", help="print every rule with its effective check "
                                               "string (defaults merged with [policy])")
    pol_list.add_argument("--config", help="TOML configuration file (also VMFLOW_CONFIG)")
    pol_list.set_defaults(func=cmd_policy_list)

    from vmflow.identity import commands as identity_commands

    identity_commands.add_parser(sub, _service_args, _load_config)

    server = sub.add_parser("server", help="manage servers through the API")
    server.add_argument("--url", default=os.environ.get("VMFLOW_URL", DEFAULT_URL))
    s_sub = server.add_subparsers(dest="action", required=True)
    create = s_sub.add_parser("create")
    create.add_argument("name")
    create.add_argument("--flavor", required=True)
    create.add_argument("--image", required=True, help="image name or id")
    create.add_argument("--wait", action="store_true", help="wait until ACTIVE or ERROR")
    create.add_argument("--timeout", type=float, default=300)
    s_sub.add_parser("list")
    show = s_sub.add_parser("show")
    show.add_argument("id")
    delete = s_sub.add_parser("delete")
    delete.add_argument("id")
    delete.add_argument("--wait", action="store_true", help="wait until it is gone")
    delete.add_argument("--timeout", type=float, default=300)
    for verb in _ACTION_BODIES:
        act = s_sub.add_parser(verb, help=f"{verb} a server (POST /servers/<id>/action)")
        act.add_argument("id")
        if verb == "reboot":
            act.add_argument("--hard", action="store_true", help="power-cycle")
        if verb == "lock":
            act.add_argument("--reason")
        if verb in ("rescue", "rebuild"):
            act.add_argument("--image", required=verb == "rebuild", help="image name or id")
        if verb == "resize":
            act.add_argument("--flavor", required=True, help="the new flavor (name or id)")
        if verb in ("migrate", "live-migrate", "evacuate"):
            act.add_argument("--host", dest="target",
                             help="the target host (default: the scheduler's choice)")
        if verb in ("rebuild", "image-create"):
            act.add_argument("--name", required=verb == "image-create",
                             help="the snapshot's name" if verb == "image-create"
                             else "a new name for the server")
        act.add_argument("--wait", action="store_true", help="wait until it is done")
        act.add_argument("--timeout", type=float, default=300)
    actions = s_sub.add_parser("actions", help="a server's instance actions, or the events "
                                               "of one (by request id)")
    actions.add_argument("id")
    actions.add_argument("request_id", nargs="?")
    server.set_defaults(func=cmd_server)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vmflow.policy import PolicyError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PolicyError as err:  # a malformed [policy] entry: say which, do not start
        print(f"vmflow: invalid configuration: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
