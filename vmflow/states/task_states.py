"""What is being done to an instance right now (None: nothing).

The API sets one of these with a compare-and-swap (``task_state IS NULL``)
before it starts an operation's flow, which is how one operation at a time
per instance is enforced.  Names and meanings are Nova's.
"""

# launch
SCHEDULING = "scheduling"  # choosing and claiming a host
BLOCK_DEVICE_MAPPING = "block_device_mapping"  # preparing image cache and disks
SPAWNING = "spawning"  # defining and starting the guest
# stop / start
POWERING_OFF = "powering-off"  # shutting the guest down (gracefully, then forced)
POWERING_ON = "powering-on"  # starting a stopped guest
# reboot
REBOOTING = "rebooting"  # soft: the guest is asked to restart (ACPI), hard after a timeout
REBOOTING_HARD = "rebooting_hard"  # power cycle
# pause / suspend
PAUSING = "pausing"  # stopping the vCPUs, memory kept in host RAM
UNPAUSING = "unpausing"
SUSPENDING = "suspending"  # saving memory to the host's disk
RESUMING = "resuming"  # restoring from the saved memory
# snapshot
IMAGE_SNAPSHOT = "image_snapshot"  # copying the root disk into a new image
IMAGE_BACKUP = "image_backup"  # the same, as a backup (then older backups rotated out)
# rebuild
REBUILDING = "rebuilding"  # replacing the root disk from an image
# rescue
RESCUING = "rescuing"  # booting from a rescue disk
UNRESCUING = "unrescuing"  # back to the instance's own disk
# delete
DELETING = "deleting"  # tearing the guest down and releasing its resources
# Moves (resize, cold and live migration, shelve, evacuate).
RESIZE_PREP = "resize_prep"  # choosing and claiming the target host
RESIZE_MIGRATING = "resize_migrating"  # stopping the guest and copying its disk
RESIZE_MIGRATED = "resize_migrated"  # the disk is on the target
RESIZE_FINISH = "resize_finish"  # defining and starting the guest on the target
RESIZE_REVERTING = "resize_reverting"  # back to the source host and old flavor
RESIZE_CONFIRMING = "resize_confirming"  # freeing the source host
MIGRATING = "migrating"  # live migration: the guest runs while it moves
SHELVING = "shelving"  # stopping the guest
SHELVING_IMAGE_PENDING_UPLOAD = "shelving_image_pending_upload"
SHELVING_IMAGE_UPLOADING = "shelving_image_uploading"  # copying its disk into an image
SHELVING_OFFLOADING = "shelving_offloading"  # removing it from its host
UNSHELVING = "unshelving"  # scheduling a host and booting from the shelved image
REBUILD_SPAWNING = "rebuild_spawning"  # evacuate: spawning on the new host

TRANSITIONAL = frozenset({
    SCHEDULING, BLOCK_DEVICE_MAPPING, SPAWNING, POWERING_OFF, POWERING_ON, REBOOTING,
    REBOOTING_HARD, PAUSING, UNPAUSING, SUSPENDING, RESUMING, IMAGE_SNAPSHOT, IMAGE_BACKUP,
    REBUILDING,
    RESCUING, UNRESCUING, DELETING, RESIZE_PREP, RESIZE_MIGRATING, RESIZE_MIGRATED,
    RESIZE_FINISH, RESIZE_REVERTING, RESIZE_CONFIRMING, MIGRATING, SHELVING,
    SHELVING_IMAGE_PENDING_UPLOAD, SHELVING_IMAGE_UPLOADING, SHELVING_OFFLOADING, UNSHELVING,
    REBUILD_SPAWNING,
})
