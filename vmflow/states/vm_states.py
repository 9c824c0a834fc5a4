"""What an instance is, independent of any operation in progress."""

ACTIVE = "active"  # running (or paused/suspended by the hypervisor on its own)
BUILDING = "building"  # being created; not yet running
PAUSED = "paused"  # vCPUs stopped, memory kept in the host's RAM
SUSPENDED = "suspended"  # memory saved to the host's disk (managed save)
STOPPED = "stopped"  # powered off, resources still held on the host
RESCUED = "rescued"  # booted from a rescue disk
RESIZED = "resized"  # moved/resized, waiting for confirm or revert
SHELVED = "shelved"  # powered off and snapshotted, still on its host
SHELVED_OFFLOADED = "shelved_offloaded"  # snapshotted, removed from any host
DELETED = "deleted"  # gone; the row is kept (soft) for usage records
ERROR = "error"  # an operation failed and could not restore the previous state

ALL = frozenset(
    {ACTIVE, BUILDING, PAUSED, SUSPENDED, STOPPED, RESCUED, RESIZED, SHELVED,
     SHELVED_OFFLOADED, DELETED, ERROR}
)
