"""The functional scenarios again, with PostgreSQL as the database."""

from __future__ import annotations

import contextlib

import pytest

from tests.conftest import _fresh_postgres
from tests.functional import test_servers


@pytest.fixture
def pg_cloud_factory(cloud_factory, postgres_server):
    started = []
    with contextlib.ExitStack() as stack:
        def start(**overrides):
            url = stack.enter_context(contextlib.contextmanager(_fresh_postgres)(postgres_server))
            started.append(cloud_factory(database_url=url, **overrides))
            return started[-1]

        yield start
        for running in started:  # stop the clouds before their databases are dropped
            running.stop()


def test_launch_show_list_delete(pg_cloud_factory):
    test_servers.test_launch_show_list_delete(pg_cloud_factory())


def test_failure_on_every_host(pg_cloud_factory):
    test_servers.test_failure_on_every_host_ends_in_error_with_fault_and_no_leaks(
        pg_cloud_factory)


def test_twenty_concurrent_launches_never_overcommit(pg_cloud_factory):
    test_servers.test_twenty_concurrent_launches_never_overcommit(pg_cloud_factory)


def test_delete_while_building(pg_cloud_factory):
    test_servers.test_delete_while_building_leaves_nothing(pg_cloud_factory)
