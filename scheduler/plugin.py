"""What filters and weighers have in common: the configuration and a name."""

from __future__ import annotations

from vmflow.config import Config


class Plugin:
    """A scheduler plugin, built once per scheduler from the configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return type(self).__name__
