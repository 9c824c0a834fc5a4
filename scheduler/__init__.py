"""Choosing a host: host state held in memory, filters and weighers over it.

The conductor asks :class:`scheduler.manager.Scheduler` for candidates, then
claims one atomically in the database (``vmflow.db.claims``); the in-memory view
is an optimisation, the claim is the truth.
"""
