"""What the API does for each operation before the conductor takes over.

Kept out of the HTTP layer so the CLI, the dashboard and tests drive the same
code.  Each operation records a flow run, and either runs the flow's admission
steps here (launch) or makes the state change that decides 202 versus 409
(delete), then hands the flow run to the conductor.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Celery
from taskflow import states as tf_states

from flows import delete as delete_flow
from flows import engine as flow_engine
from flows import launch as launch_flow
from flows.base import Services
from vmflow import exception
from vmflow.config import Config
from vmflow.context import RequestContext
from vmflow.db import instances as instances_db
from vmflow.db.flowstore import FlowStore
from vmflow.db.session import Database
from vmflow.states import task_states
from workers.conductor import RUN_FLOW_TASK

LOG = logging.getLogger(__name__)


class ComputeAPI:
    def __init__(self, cfg: Config, db: Database, app: Celery) -> None:
        self.cfg = cfg
        self.db = db
        self.app = app
        self.store = FlowStore(db)
        self.services = Services(config=cfg, db=db)

    def _hand_to_conductor(self, flow_id: str) -> None:
        self.app.send_task(RUN_FLOW_TASK, args=[flow_id])

    def create(self, ctx: RequestContext, *, name: str, flavor_ref: str, image_ref: str,
               availability_zone: str | None = None,
               metadata: dict[str, str] | None = None, group: str | None = None) -> str:
        """Admit a launch (validate, quota, record) and start it; returns the uuid."""
        instance_uuid = str(uuid.uuid4())
        request = {"name": name, "flavor_ref": str(flavor_ref), "image_ref": image_ref,
                   "project_id": ctx.project_id, "user_id": ctx.user_id,
                   "availability_zone": availability_zone, "metadata": metadata or {},
                   "group": group}
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

    def delete(self, ctx: RequestContext, instance_uuid: str) -> None:
        """Mark the instance deleting (from any state) and start the delete flow."""
        with self.db.write() as session:
            instance = instances_db.get(
                session, instance_uuid,
                project_id=None if ctx.is_admin else ctx.project_id)
            if instance.task_state == task_states.DELETING:
                return  # a delete is already under way
            if not instances_db.update_if(session, instance_uuid,
                                          {"task_state": task_states.DELETING},
                                          expected_task_state=instance.task_state):
                raise exception.Conflict(
                    f"Instance {instance_uuid} changed state while being deleted; try again.")
        detail = self.store.create_run(name="delete", operation="delete",
                                       request_id=ctx.request_id, user_id=ctx.user_id,
                                       project_id=ctx.project_id,
                                       instance_uuid=instance_uuid, params={})
        graph = delete_flow.get_flow(self.services)
        engine = flow_engine.load(self.store, graph, detail,
                                  inputs={"instance_uuid": instance_uuid})
        engine.compile()
        engine.prepare()
        self._hand_to_conductor(detail.uuid)
        LOG.info("accepted delete of %s as flow %s", instance_uuid, detail.uuid)
