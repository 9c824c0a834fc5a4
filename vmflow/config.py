"""Configuration: one TOML file plus ``VMFLOW_*`` environment variables.

Precedence (lowest first): built-in defaults, the TOML file named by ``--config``
or ``VMFLOW_CONFIG``, then environment variables.  Every service of a deployment
reads the same file, so an operator changes a setting in one place.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

# Filters run in this order.  Those whose verdicts do not depend on usage come
# first: they are answered from a per-load cache, and every host they drop is
# one the usage-dependent filters after them need not look at.
DEFAULT_FILTERS = (
    "AvailabilityZoneFilter", "ComputeFilter", "ComputeCapabilitiesFilter",
    "ImagePropertiesFilter", "RetryFilter", "RamFilter", "DiskFilter", "CoreFilter",
    "ServerGroupAntiAffinityFilter", "ServerGroupAffinityFilter",
)

EMBEDDED_BROKER = "memory://"
EMBEDDED_RESULT_BACKEND = "cache+memory://"


@dataclasses.dataclass
class HostConfig:
    """One compute host: its name, hypervisor URI and capacity.

    ``uri`` empty means "a libvirt test-driver host generated under the data
    directory with this capacity" (see ``virt.libvirt_driver``).
    """

    name: str
    uri: str = ""
    vcpus: int = 16
    memory_mb: int = 32768
    disk_gb: int = 500
    arch: str = "x86_64"
    hypervisor_type: str = "QEMU"
    hypervisor_version: int = 8002000
    # Per-host allocation ratios; None means the cloud-wide setting.
    cpu_allocation_ratio: float | None = None
    ram_allocation_ratio: float | None = None
    disk_allocation_ratio: float | None = None
    # Simulated hosts only: False makes guests ignore ACPI shutdown requests (the
    # request is accepted, the guest keeps running), to exercise graceful-then-forced stops.
    acpi_shutdown: bool = True


@dataclasses.dataclass
class Config:
    data_dir: Path = dataclasses.field(
        default_factory=lambda: Path(os.path.expanduser("~/.local/share/vmflow"))
    )
    database_url: str = ""
    broker_url: str = EMBEDDED_BROKER
    result_backend: str = EMBEDDED_RESULT_BACKEND
    # How often an in-process (memory) transport looks for new messages.
    broker_polling_interval: float = 0.005
    # Namespace of every queue and exchange (two clouds may share one broker).
    queue_prefix: str = "vmflow"
    api_host: str = "127.0.0.1"
    api_port: int = 8774
    # Public base URL used in links; derived from api_host/api_port when empty.
    public_url: str = ""
    max_body_bytes: int = 256 * 1024
    # The image API's uploads (PUT /image/v2/images/{id}/file) are streamed to
    # disk; max_body_bytes does not apply to them, this does.
    max_image_upload_bytes: int = 10 * 1024**3
    # Authentication: "keystone" (every compute and image request needs a valid
    # X-Auth-Token from the built-in identity service at /identity/v3) or "noauth"
    # (the caller is whoever the X-Auth-Project-Id / X-Auth-User / X-Roles
    # headers say: for tests and benchmarks only, never for a shared cloud).
    auth_strategy: str = "keystone"
    noauth_project_id: str = "demo"
    noauth_user_id: str = "demo"
    # Seconds a token stays valid after it was issued (Keystone's default).
    token_expiration: int = 3600
    # Where a simulated host's hypervisor lives: "in-process" (libvirt's test
    # driver inside the compute process: its guests die with it) or "daemon"
    # (a libvirtd of its own that outlives the compute process, as on a real
    # host; `vmflow compute` uses it).  See virt/hostd.py.
    simulated_hypervisor: str = "in-process"
    # Simulated hosts for the embedded mode and `vmflow up`.
    host_count: int = 4
    host_prefix: str = "compute-"
    host_vcpus: int = 16
    host_memory_mb: int = 32768
    host_disk_gb: int = 500
    hosts: list[HostConfig] = dataclasses.field(default_factory=list)
    # Scheduling and claims.
    scheduler_driver: str = "filter_scheduler"  # or "chance"
    available_filters: list[str] = dataclasses.field(default_factory=lambda: ["all"])
    enabled_filters: list[str] = dataclasses.field(default_factory=lambda: list(
        DEFAULT_FILTERS))
    ram_weight_multiplier: float = 1.0
    cpu_weight_multiplier: float = 1.0
    disk_weight_multiplier: float = 1.0
    # Soft server-group policies (scheduler/weights/affinity.py), as in Nova.
    soft_affinity_weight_multiplier: float = 1.0
    soft_anti_affinity_weight_multiplier: float = 1.0
    host_subset_size: int = 1
    default_availability_zone: str = "nova"
    internal_service_availability_zone: str = "internal"
    max_attempts: int = 3
    cpu_allocation_ratio: float = 16.0
    ram_allocation_ratio: float = 1.5
    disk_allocation_ratio: float = 1.0
    # Services and heartbeats (Nova's defaults).
    service_down_time: float = 60.0
    report_interval: float = 10.0
    # Conductor and compute.
    conductor_concurrency: int = 32
    compute_concurrency: int = 16
    compute_rpc_timeout: float = 60.0
    spawn_poll_attempts: int = 30
    # How long a conductor's hold on a flow run lasts unless renewed (renewed
    # every third of it): after a conductor dies, its flows are driven again by
    # another (or by it, restarted) within about this time.
    flow_lease_seconds: float = 30.0
    # A flow run taken by conductors more often than this (its conductor died
    # each time: a poison run) is given up: FAILURE, and its instance in ERROR.
    max_flow_attempts: int = 5
    # A host command older than this when it arrives (the host was down or
    # backed up), or delivered again, is acted on only once the conductor has
    # confirmed its operation is still under way, at the same lease epoch, for
    # an instance on that host.  Younger ones are current: their sender still
    # holds the lease.
    host_command_fresh_seconds: float = 5.0
    # A guest on a compute host that no live instance owns: destroyed when True,
    # only reported when False (the guests of instances that now live on
    # another host are always destroyed).
    destroy_unknown_guests: bool = True
    # Evacuate: True when every host's instance directory (<data_dir>/hosts/<host>/
    # instances) is on storage all hosts mount, so an instance evacuated from a
    # dead host keeps its disk; False (the default): it is rebuilt on its new
    # host from its image, as Nova does without shared storage.
    shared_instance_storage: bool = False
    # Quotas: every project's default hard limits (Nova's defaults; -1 is
    # unlimited).  An admin overrides them per project (os-quota-sets).
    quota_instances: int = 10
    quota_cores: int = 20
    quota_ram: int = 51200
    quota_key_pairs: int = 100  # per user
    quota_server_groups: int = 10
    quota_server_group_members: int = 10  # per server group
    quota_metadata_items: int = 128  # per server (or image)
    quota_injected_files: int = 5
    quota_injected_file_content_bytes: int = 10240
    quota_injected_file_path_bytes: int = 255
    # A guest gets a config drive (ISO 9660 labelled config-2: its metadata and
    # SSH key, virt/configdrive.py) when it asks for one or has a key pair (there
    # is no metadata service); True gives every guest one (Nova's option).
    force_config_drive: bool = False
    # Logging.
    log_level: str = "INFO"
    log_dir: str = ""
    # Fault injection for tests and demos: {"host": "step"} makes that host's
    # compute step raise.  Empty in any real deployment.
    inject_failures: dict[str, str] = dataclasses.field(default_factory=dict)
    # Flow steps (by name, e.g. "stop.finish") whose execution fails on purpose.
    inject_step_failures: list[str] = dataclasses.field(default_factory=list)
    # Crash tests: "<step>:before-save" or "<step>:after-save" ends the process
    # driving the flow at that point, as kill -9 would.
    inject_crash: str = ""
    # Resize and cold migration (flows/migrate.py): whether a resize may choose
    # the instance's own host (a cold migration never does), and after how many
    # seconds a resize left waiting in VERIFY_RESIZE is confirmed by the
    # conductor (0: never), as Nova's options of the same names.
    allow_resize_to_same_host: bool = False
    resize_confirm_window: float = 0
    # Lifecycle operations: how long a guest gets to shut down (ACPI) before it is
    # powered off (stop, soft reboot), as Nova's shutdown_timeout.
    shutdown_timeout: float = 60.0
    # Shelve, as Nova's options: seconds a SHELVED instance keeps its host before
    # it is offloaded (0: at once, in the shelve itself; -1: never, until an
    # admin's shelveOffload), and how often the conductor looks for instances
    # due (shelved_poll_interval, seconds).
    shelved_offload_time: int = 0
    shelved_poll_interval: float = 3600.0
    # Live migration between simulated hosts (libvirt's test driver): how long
    # the modelled memory (and, for a block migration, disk) transfer takes.
    # Progress is recorded in the migration in a few increments meanwhile, and
    # it can be aborted or forced to complete.  Real hypervisors take as long
    # as libvirt's migration takes.
    live_migration_simulated_seconds: float = 2.0
    # Authorization: rule name -> check string, replacing the defaults (see
    # vmflow/policy.py and `vmflow policy list`), e.g.
    # [policy]
    # "os_compute_api:servers:create" = "rule:admin_api"
    policy: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.auth_strategy not in ("keystone", "noauth"):
            raise ValueError(f"auth_strategy is {self.auth_strategy!r}: it must be "
                             f"'keystone' or 'noauth'")
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'vmflow.db'}"

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.api_host}:{self.api_port}"

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("memory://")

    def compute_hosts(self) -> list[HostConfig]:
        """The configured hosts, or ``host_count`` generated ones."""
        if self.hosts:
            return list(self.hosts)
        return [
            HostConfig(
                name=f"{self.host_prefix}{i}",
                vcpus=self.host_vcpus,
                memory_mb=self.host_memory_mb,
                disk_gb=self.host_disk_gb,
            )
            for i in range(1, self.host_count + 1)
        ]


_ENV_PREFIX = "VMFLOW_"


def _coerce(field: dataclasses.Field, raw: str) -> Any:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    if kind.startswith("bool"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind.startswith("Path"):
        return Path(raw)
    if kind.startswith("str"):
        return raw
    if kind.startswith("list[str]"):
        return [item.strip() for item in raw.split(",") if item.strip()]
    raise ValueError(f"{field.name} cannot be set from the environment")


def load(path: str | os.PathLike | None = None, **overrides: Any) -> Config:
    """Build the configuration from the file, the environment and overrides."""
    values: dict[str, Any] = {}
    path = path or os.environ.get("VMFLOW_CONFIG")
    if path:
        with open(path, "rb") as fh:
            values.update(tomllib.load(fh))
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for name, field in fields.items():
        raw = os.environ.get(_ENV_PREFIX + name.upper())
        if raw is not None and name not in ("hosts", "inject_failures", "policy"):
            values[name] = _coerce(field, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    hosts = values.pop("hosts", None)
    cfg = Config(**values)
    if hosts:
        cfg.hosts = [h if isinstance(h, HostConfig) else HostConfig(**h) for h in hosts]
    from vmflow import policy  # a malformed [policy] entry stops the start, named
    policy.Enforcer(cfg.policy)
    return cfg
