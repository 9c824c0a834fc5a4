"""Hypervisor power states as integers (the values clients expect)."""

NOSTATE = 0  # unknown, or no guest on the hypervisor
RUNNING = 1
PAUSED = 3
SHUTDOWN = 4  # the guest is defined but not running
CRASHED = 6
SUSPENDED = 7  # saved to disk by managed save

NAMES = {
    NOSTATE: "NOSTATE",
    RUNNING: "RUNNING",
    PAUSED: "PAUSED",
    SHUTDOWN: "SHUTDOWN",
    CRASHED: "CRASHED",
    SUSPENDED: "SUSPENDED",
}
