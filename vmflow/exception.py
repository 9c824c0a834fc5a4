"""Errors that cross layers, each with the HTTP status the API answers with.

``kind`` is the key of Nova's error body (``{"itemNotFound": {...}}``).
"""

from __future__ import annotations


class VmflowError(Exception):
    code = 500
    kind = "computeFault"
    message = "An unknown error occurred."

    def __init__(self, message: str | None = None, **kwargs: object) -> None:
        self.kwargs = kwargs
        text = message or self.message
        if kwargs:
            text = text.format(**kwargs)
        super().__init__(text)

    @property
    def text(self) -> str:
        return str(self)


class Invalid(VmflowError):
    code = 400
    kind = "badRequest"
    message = "Invalid request."


class Unauthorized(VmflowError):
    """No valid credentials (a missing, wrong, expired or revoked token or password)."""

    code = 401
    kind = "unauthorized"
    message = "The request you have made requires authentication."


class Forbidden(VmflowError):
    code = 403
    kind = "forbidden"
    message = "Forbidden."


class NotImplementedByDriver(VmflowError):
    code = 501
    kind = "notImplemented"
    message = "Virt driver does not implement {what} function."


class NotFound(VmflowError):
    code = 404
    kind = "itemNotFound"
    message = "Resource could not be found."


class InstanceNotFound(NotFound):
    message = "Instance {instance_id} could not be found."


class FlavorNotFound(NotFound):
    message = "Flavor {flavor_id} could not be found."


class ImageNotFound(NotFound):
    message = "Image {image_id} could not be found."


class Conflict(VmflowError):
    code = 409
    kind = "conflictingRequest"
    message = "There was a conflict when trying to complete your request."


class InstanceInvalidState(Conflict):
    message = ("Cannot '{action}' instance {instance_id} while it is in "
               "vm_state {vm_state} and task_state {task_state}.")


class InstanceGone(Conflict):
    """The instance changed under a running operation (deleted, or taken over)."""

    message = "Instance {instance_id} is being deleted or is no longer in the expected state."


class QuotaExceeded(VmflowError):
    code = 403
    kind = "forbidden"
    message = ("Quota exceeded for {resource}: Requested {requested}, but already used "
               "{used} of {limit} {resource}")


class NoValidHost(VmflowError):
    code = 500
    kind = "computeFault"
    message = "No valid host was found. {reason}"


class HypervisorError(VmflowError):
    """A compute host failed to carry out a step."""

    message = "Compute host {host} failed during {step}: {reason}"


class ComputeUnavailable(VmflowError):
    message = "Compute host {host} did not answer {step} within {timeout} seconds."


class InstanceLocked(Conflict):
    message = "Instance {instance_id} is locked"


class InjectedFailure(VmflowError):
    """Raised by a flow step named in ``inject_step_failures`` (tests, demos)."""

    message = "Failure injected by configuration in step {step}"


class RollbackRequested(VmflowError):
    """An operator asked for the flow run to be rolled back (os-flows); raised
    before a step starts, so the step did nothing."""

    message = "Rolled back at an operator's request before step {step}"


class StepInterrupted(VmflowError):
    """A step was interrupted by an operator's rollback while it ran (or its
    conductor died in it): whether its effect happened is unknown."""

    message = "Step {step} was cut short: rolled back at an operator's request"


class GaveUp(VmflowError):
    """A flow run was taken by conductors more often than ``max_flow_attempts``
    (each time its conductor died): it is not driven again."""

    message = "Gave up on {operation} after {attempts} attempts (its conductor died each time)"


class MigrationPreCheckError(Invalid):
    """A live migration that cannot start: the destination does not suit the
    instance (400, as Nova answers its pre-checks)."""

    message = "Migration pre-check error: {reason}"


class MigrationNotFoundForInstance(NotFound):
    message = "Migration {migration_id} not found for instance {instance_id}"


class InvalidMigrationState(Invalid):
    message = ("Migration {migration_id} of instance {instance_uuid} is {state}: "
               "cannot {method} while the migration is in this state.")
