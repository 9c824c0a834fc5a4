"""vmflow: a Nova-style compute cloud controller built on persisted TaskFlow graphs."""

__version__ = "0.1.0"
