"""The hypervisor side: a driver interface and its libvirt implementation.

Only compute workers import this package.
"""
