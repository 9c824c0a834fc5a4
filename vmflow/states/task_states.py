"""What is being done to an instance right now (None: nothing).

A flow's first step sets one of these with a compare-and-swap, which is how one
operation at a time per instance is enforced.
"""

# launch
SCHEDULING = "scheduling"  # choosing and claiming a host
BLOCK_DEVICE_MAPPING = "block_device_mapping"  # preparing image cache and disks
SPAWNING = "spawning"  # defining and starting the guest
# delete
DELETING = "deleting"  # tearing the guest down and releasing its resources

TRANSITIONAL = frozenset({SCHEDULING, BLOCK_DEVICE_MAPPING, SPAWNING, DELETING})
