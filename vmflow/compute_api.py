"""What the API does for each operation before the conductor takes over.

Kept out of the HTTP layer so the CLI, the dashboard and tests drive the same
code.  Each operation records a flow run, and either runs the flow's admission
steps here (launch) or makes the state change that decides 202 versus 409
(delete), then hands the flow run to the conductor.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session
from taskflow import states as tf_states

import flows
from flows import delete as delete_flow
from flows import engine as flow_engine
from flows import evacuate as evacuate_flow
from flows import launch as launch_flow
from flows import live_migrate as live_migrate_flow
from flows.base import Services
from vmflow import exception, policy
from vmflow.config import Config
from vmflow.context import RequestContext
from vmflow.db import instances as instances_db
from vmflow.db import leases, moves
from vmflow.db.flowstore import FlowStore
from vmflow.db.models import Instance, Migration
from vmflow.db.session import Database
from vmflow.notifications import Notifier
from vmflow.states import task_states, vm_states
from vmflow.states.actions import ACTIONS, Action, allows
from workers.conductor import RUN_FLOW_TASK
from workers.rpc import ComputeClient

LOG = logging.getLogger(__name__)

# The policy rule each operation on an existing instance needs (Nova's names).
RULES: dict[str, str] = {
    "stop": "os_compute_api:servers:stop",
    "start": "os_compute_api:servers:start",
    "reboot": "os_compute_api:servers:reboot",
    "reboot_hard": "os_compute_api:servers:reboot",
    "pause": "os_compute_api:os-pause-server:pause",
    "unpause": "os_compute_api:os-pause-server:unpause",
    "suspend": "os_compute_api:os-suspend-server:suspend",
    "resume": "os_compute_api:os-suspend-server:resume",
    "snapshot": "os_compute_api:servers:create_image",
    "backup": "os_compute_api:os-create-backup",
    "rebuild": "os_compute_api:servers:rebuild",
    "rescue": "os_compute_api:os-rescue",
    "unrescue": "os_compute_api:os-unrescue",
    "live_migrate": "os_compute_api:os-migrate-server:migrate_live",
    "lock": "os_compute_api:os-lock-server:lock",
    "unlock": "os_compute_api:os-lock-server:unlock",
    "delete": "os_compute_api:servers:delete",
    "console_output": "os_compute_api:os-console-output",
    "diagnostics": "os_compute_api:os-server-diagnostics",
    "resize": "os_compute_api:servers:resize",
    "migrate": "os_compute_api:os-migrate-server:migrate",
    "confirm_resize": "os_compute_api:servers:confirm_resize",
    "revert_resize": "os_compute_api:servers:revert_resize",
    "shelve": "os_compute_api:os-shelve:shelve",
    "shelve_offload": "os_compute_api:os-shelve:shelve_offload",
    "unshelve": "os_compute_api:os-shelve:unshelve",
    "evacuate": "os_compute_api:os-evacuate",
}
UNLOCK_OVERRIDE = "os_compute_api:os-lock-server:unlock:unlock_override"

# vm_states in which an instance has no guest to ask anything.
_NO_GUEST = frozenset({vm_states.BUILDING, vm_states.SHELVED_OFFLOADED, vm_states.DELETED})


class ComputeAPI:
    def __init__(self, cfg: Config, db: Database, app: Celery) -> None:
        self.cfg = cfg
        self.db = db
        self.app = app
        self.store = FlowStore(db)
        self.policy = policy.Enforcer(cfg.policy)
        self.compute = ComputeClient(app, cfg)
        self.services = Services(config=cfg, db=db,
                                 notifier=Notifier(cfg, app, binary="vmflow-api"))

    def _hand_to_conductor(self, flow_id: str) -> None:
        self.app.send_task(RUN_FLOW_TASK, args=[flow_id])

    def resume(self, flow_id: str) -> None:
        """Ask the conductors to drive a flow run again (an operator's resume)."""
        LOG.info("resume of flow %s requested", flow_id)
        self._hand_to_conductor(flow_id)

    def create(self, ctx: RequestContext, *, name: str, flavor_ref: str, image_ref: str,
               availability_zone: str | None = None,
               metadata: dict[str, str] | None = None, group: str | None = None,
               description: str | None = None, tags: list[str] | None = None,
               key_name: str | None = None, key_data: str | None = None,
               config_drive: bool = False, user_data: str | None = None,
               host: str | None = None, access_ip_v4: str | None = None,
               access_ip_v6: str | None = None, reservation_id: str | None = None,
               launch_index: int = 0, system_metadata: dict[str, str] | None = None) -> str:
        """Admit a launch (validate, quota, record) and start it; returns the uuid.

        ``key_name``/``key_data``: the caller's key pair (checked by the API) and
        its public key, copied onto the instance.  ``reservation_id``,
        ``launch_index``: the create request that asked for it (shared by the
        servers of one request) and its place among them; ``system_metadata``:
        the instance's first system metadata (``disk_config``).
        """
        instance_uuid = str(uuid.uuid4())
        request = {"name": name, "flavor_ref": str(flavor_ref), "image_ref": image_ref,
                   "project_id": ctx.project_id, "user_id": ctx.user_id,
                   "availability_zone": availability_zone, "metadata": metadata or {},
                   "group": group, "description": description, "tags": tags or [],
                   "key_name": key_name, "key_data": key_data, "config_drive": config_drive,
                   "user_data": user_data, "host": host,
                   "access_ip_v4": access_ip_v4, "access_ip_v6": access_ip_v6,
                   "reservation_id": reservation_id, "launch_index": launch_index,
                   "system_metadata": system_metadata or {}}
        params = {"max_attempts": self.cfg.max_attempts,
                  "poll_attempts": self.cfg.spawn_poll_attempts}
        detail = self.store.create_run(name="launch", operation="launch",
                                       request_id=ctx.request_id, user_id=ctx.user_id,
                                       project_id=ctx.project_id,
                                       instance_uuid=instance_uuid, params=params)
        graph = launch_flow.get_flow(self.services, **params)
        engine = flow_engine.load(self.store, graph, detail,
                                  inputs={"instance_uuid": instance_uuid, "request": request})

        def _suspend_after_admission(state: str, details: dict[str, Any]) -> None:
            if state == tf_states.SUCCESS and details.get("task_name") == \
                    launch_flow.ADMISSION_LAST_STEP:
                engine.suspend()

        engine.atom_notifier.register(tf_states.SUCCESS, _suspend_after_admission)
        try:
            engine.run()
        except Exception as err:
            # Refused at admission: nothing was created, so keep no trace.
            self.store.get_connection().destroy_logbook(detail.uuid)
            if isinstance(err, (exception.FlavorNotFound, exception.ImageNotFound)):
                raise exception.Invalid(str(err)) from None  # a bad reference: 400, as Nova
            raise
        if engine.storage.get_flow_state() != tf_states.SUSPENDED:
            raise RuntimeError(f"launch flow {detail.uuid} did not stop after admission")
        self._hand_to_conductor(detail.uuid)
        LOG.info("accepted launch of %s (%s) as flow %s", instance_uuid, name, detail.uuid)
        return instance_uuid

    def act(self, ctx: RequestContext, instance_uuid: str, name: str, *,
            inputs: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
            prepare: Callable[[Session, Instance], dict[str, Any] | None] | None = None
            ) -> None:
        """Start operation ``name`` on an existing instance, or refuse it.

        Refusals come before anything is recorded: 404 for an instance the
        caller may not see, 403 if policy refuses the operation (rule
        ``RULES[name]``, for the instance's project), 409 if it is locked (for
        a non-admin) or its state
        does not allow the operation, or if another operation holds it (the
        task_state compare-and-swap lost).  ``prepare`` runs in the same
        transaction as that compare-and-swap (the snapshot's image record) and
        may return more of the flow's parameters, decided on the state it saw.
        Operations decided in the API (lock, unlock) run their flow here;
        the others are handed to the conductor.
        """
        action = ACTIONS[name]
        with self.db.write() as session:
            instance = self._owned(session, ctx, instance_uuid)
            self._authorize(ctx, RULES[name], instance)
            if name == "unlock":
                self._check_unlock_override(ctx, instance)
            elif name != "lock":
                self._check_unlocked(ctx, instance)
            self._check_state(instance, action)
            if action.task_state is not None and not instances_db.update_if(
                    session, instance_uuid, {"task_state": action.task_state},
                    expected_task_state=None, expected_vm_state=instance.vm_state):
                session.refresh(instance)
                self._check_state(instance, action)
                raise exception.InstanceInvalidState(
                    action=action.api, instance_id=instance_uuid, vm_state=instance.vm_state,
                    task_state=instance.task_state)
            params = dict(params or {})
            if prepare is not None:
                params.update(prepare(session, instance) or {})
        inputs = {"instance_uuid": instance_uuid, **(inputs or {})}
        try:
            detail = self.store.create_run(name=name, operation=name, request_id=ctx.request_id,
                                           user_id=ctx.user_id, project_id=ctx.project_id,
                                           instance_uuid=instance_uuid, params=params)
            engine = flow_engine.load(self.store, flows.build(name, self.services, params),
                                      detail, inputs=inputs)
            if action.task_state is None:
                engine.run()
                return
            engine.compile()
            engine.prepare()
            self._hand_to_conductor(detail.uuid)
        except Exception:
            if action.task_state is not None:  # nothing will run: let the instance go
                with self.db.write() as session:
                    instances_db.update_if(session, instance_uuid, {"task_state": None},
                                           expected_task_state=action.task_state)
            raise
        LOG.info("accepted %s of %s as flow %s", name, instance_uuid, detail.uuid)

    # -- live migration (flows/live_migrate.py) ---------------------------------------

    def live_migrate(self, ctx: RequestContext, instance_uuid: str, *, host: str | None,
                     block_migration: bool | None, force: bool = False) -> str:
        """Start a live migration, or refuse it before anything is recorded: the
        refusals of :meth:`act`, then 400 (with the reason) when the source's
        compute service is down or the requested ``host`` cannot take the guest
        (``live_migrate.check_destination``).  The migration ("queued") is
        recorded with the task_state change.  Returns the migration's uuid."""
        migration_uuid = str(uuid.uuid4())

        def check_and_record(session: Session, instance: Instance) -> None:
            if host:
                self._authorize(ctx, RULES["live_migrate"] + ":host", instance)
            live_migrate_flow.check_source(session, self.cfg, instance)
            if host:
                live_migrate_flow.check_destination(session, self.cfg, instance, host)
            moves.create(session, instance_uuid, moves.LIVE_MIGRATION, "queued",
                         source_compute=instance.host, dest_compute=host,
                         old_flavor_id=instance.flavor_id, new_flavor_id=instance.flavor_id,
                         user_id=ctx.user_id, project_id=ctx.project_id,
                         migration_uuid=migration_uuid)

        self.act(ctx, instance_uuid, "live_migrate", prepare=check_and_record,
                 inputs={"migration_uuid": migration_uuid, "requested_host": host,
                         "block_migration": block_migration, "force": bool(force)})
        return migration_uuid

    def abort_live_migration(self, ctx: RequestContext, instance_uuid: str, migration_id: int,
                             *, queued_too: bool) -> None:
        """Abort an in-progress live migration: 404 (instance or migration of it
        unknown), 403 (policy), 409 (locked, or not migrating), 400 unless the
        migration is running (or, ``queued_too`` (2.65), queued or preparing).
        The migration becomes "cancelling" and its flow run is rolled back: the
        guest stays on (or returns to) the source, and the migration ends
        "cancelled"."""
        with self.db.write() as session:
            instance = self._migrating(session, ctx, instance_uuid,
                                       "os_compute_api:servers:migrations:delete",
                                       "abort live migration")
            migration = self._live_migration(session, instance_uuid, migration_id)
            allowed = live_migrate_flow.ABORTABLE if queued_too else ("running",)
            if migration.status not in allowed or not moves.set_status(
                    session, migration.uuid, live_migrate_flow.CANCELLING,
                    expected=migration.status):
                raise exception.InvalidMigrationState(
                    migration_id=migration_id, instance_uuid=instance.uuid,
                    state=migration.status, method="abort live migration")
            flow_id = migration.flow_id or live_migrate_flow.run_of(session, instance_uuid)
            if flow_id is not None:
                leases.request_rollback(session, flow_id)
        if flow_id is not None:
            self.resume(flow_id)
        LOG.info("abort of live migration %s of %s requested", migration_id, instance_uuid)

    def force_complete_live_migration(self, ctx: RequestContext, instance_uuid: str,
                                      migration_id: int) -> None:
        """Ask a running live migration to complete now: 404, 403, 409 (locked, not
        ACTIVE and migrating), 400 unless the migration is running."""
        with self.db.write() as session:
            instance = self._migrating(session, ctx, instance_uuid,
                                       "os_compute_api:servers:migrations:force_complete",
                                       "force_complete", vm_state=vm_states.ACTIVE)
            migration = self._live_migration(session, instance_uuid, migration_id)
            if migration.status != "running":
                raise exception.InvalidMigrationState(
                    migration_id=migration_id, instance_uuid=instance.uuid,
                    state=migration.status, method="force complete")
            instance.system_metadata = {**(instance.system_metadata or {}),
                                        live_migrate_flow.FORCE_COMPLETE_KEY: migration.uuid}
        LOG.info("live migration %s of %s: completion forced", migration_id, instance_uuid)

    def _migrating(self, session: Session, ctx: RequestContext, instance_uuid: str, rule: str,
                   action: str, vm_state: str | None = None) -> Instance:
        instance = self._owned(session, ctx, instance_uuid)
        self._authorize(ctx, rule, instance)
        self._check_unlocked(ctx, instance)
        if instance.task_state != task_states.MIGRATING or (
                vm_state is not None and instance.vm_state != vm_state):
            raise exception.InstanceInvalidState(
                action=action, instance_id=instance_uuid, vm_state=instance.vm_state,
                task_state=instance.task_state)
        return instance

    @staticmethod
    def _live_migration(session: Session, instance_uuid: str, migration_id: int) -> Migration:
        row = session.scalar(select(Migration).where(
            Migration.id == migration_id, Migration.instance_uuid == instance_uuid,
            Migration.migration_type == moves.LIVE_MIGRATION, Migration.deleted.is_(False)))
        if row is None:
            raise exception.MigrationNotFoundForInstance(migration_id=migration_id,
                                                         instance_id=instance_uuid)
        return row

    @staticmethod
    def _owned(session: Session, ctx: RequestContext, instance_uuid: str) -> Instance:
        return instances_db.get(session, instance_uuid,
                                project_id=None if ctx.is_admin else ctx.project_id)

    def _authorize(self, ctx: RequestContext, rule: str, instance: Instance) -> None:
        self.policy.authorize(ctx, rule, {"project_id": instance.project_id,
                                          "user_id": instance.user_id})

    def _check_unlocked(self, ctx: RequestContext, instance: Instance) -> None:
        """A locked instance refuses its owner's operations (409), not an admin's."""
        if instance.locked and not self.policy.check(ctx, "context_is_admin"):
            raise exception.InstanceLocked(instance_id=instance.uuid)

    def _check_unlock_override(self, ctx: RequestContext, instance: Instance) -> None:
        """Undoing the other party's lock (an owner an admin's, or an admin an
        owner's) needs the override rule, as in Nova."""
        caller = "owner" if ctx.project_id == instance.project_id else "admin"
        if instance.locked and instance.locked_by not in (None, caller):
            self._authorize(ctx, UNLOCK_OVERRIDE, instance)

    @staticmethod
    def _check_state(instance: Instance, action: Action) -> None:
        if not allows(action, instance.vm_state, instance.task_state):
            raise exception.InstanceInvalidState(
                action=action.api, instance_id=instance.uuid, vm_state=instance.vm_state,
                task_state=instance.task_state)

    def evacuate(self, ctx: RequestContext, instance_uuid: str, *, host: str | None,
                 force: bool = False, on_shared_storage: bool | None = None) -> None:
        """Rebuild the instance on another host because its own is down (409 while
        it is up); ``host``: the target an admin names (404 unknown, 400 the
        instance's own or down), checked by the scheduler's filters unless
        ``force``.  The migration record is made in the compare-and-swap's
        transaction, so a refusal leaves nothing (``flows.evacuate.admit``)."""
        migration_uuid = str(uuid.uuid4())

        def prepare(session: Session, instance: Instance) -> dict[str, Any]:
            return evacuate_flow.admit(session, self.cfg, ctx, instance, migration_uuid,
                                       host=host, force=force,
                                       on_shared_storage=on_shared_storage)

        self.act(ctx, instance_uuid, "evacuate", prepare=prepare,
                 inputs={"migration_uuid": migration_uuid, "requested_host": host,
                         "force": force})

    # -- reads from the instance's host (no flow: nothing changes) --------------------

    def console_output(self, ctx: RequestContext, instance_uuid: str,
                       length: int | None = None) -> str:
        """The guest's console log, from its host."""
        return self._ask_host(ctx, instance_uuid, "os-getConsoleOutput", "console_output",
                              rule=RULES["console_output"], length=length)

    def diagnostics(self, ctx: RequestContext, instance_uuid: str) -> dict[str, Any]:
        """The hypervisor's figures for the guest, from its host."""
        return self._ask_host(ctx, instance_uuid, "diagnostics", "diagnostics",
                              rule=RULES["diagnostics"])

    def _ask_host(self, ctx: RequestContext, instance_uuid: str, action: str, step: str, *,
                  rule: str, **kwargs: Any) -> Any:
        with self.db.read() as session:
            instance = self._owned(session, ctx, instance_uuid)
            self._authorize(ctx, rule, instance)
            if not instance.host or instance.vm_state in _NO_GUEST:
                raise exception.InstanceInvalidState(
                    action=action, instance_id=instance_uuid, vm_state=instance.vm_state,
                    task_state=instance.task_state)
            host = instance.host
        try:
            return self.compute.call(host, step, instance_uuid=instance_uuid, **kwargs)
        except exception.VmflowError as err:
            raise exception.Conflict(f"The {action} of instance {instance_uuid} is not "
                                     f"available from its host: {err}") from None

    def delete(self, ctx: RequestContext, instance_uuid: str) -> None:
        """Mark the instance deleting (from any state) and start the delete flow."""
        with self.db.write() as session:
            instance = self._owned(session, ctx, instance_uuid)
            self._authorize(ctx, RULES["delete"], instance)
            self._check_unlocked(ctx, instance)
            if instance.task_state == task_states.DELETING:
                return  # a delete is already under way
            if not instances_db.update_if(session, instance_uuid,
                                          {"task_state": task_states.DELETING},
                                          expected_task_state=instance.task_state):
                raise exception.Conflict(
                    f"Instance {instance_uuid} changed state while being deleted; try again.")
        flow_id = flow_engine.record(self.store, delete_flow.get_flow(self.services),
                                     operation="delete", request_id=ctx.request_id,
                                     user_id=ctx.user_id, project_id=ctx.project_id,
                                     instance_uuid=instance_uuid,
                                     inputs={"instance_uuid": instance_uuid})
        self._hand_to_conductor(flow_id)
        LOG.info("accepted delete of %s as flow %s", instance_uuid, flow_id)
