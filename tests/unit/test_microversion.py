"""The microversion header parser and negotiation (no server)."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import Headers

from vmflow import exception
from webapp.api import microversion as mv


@pytest.mark.parametrize(("text", "version"), [
    ("2.1", (2, 1)), ("2.37", (2, 37)), (" 2.100 ", (2, 100)), ("3.0", (3, 0)),
])
def test_parse_accepts_major_dot_minor(text, version):
    assert mv.parse(text) == version


@pytest.mark.parametrize("text", ["2", "2.", ".1", "2.01", "02.1", "2.1.1", "v2.1", "two",
                                  "", "2,1", "-2.1", "latest-ish"])
def test_parse_refuses_anything_else_with_400(text):
    with pytest.raises(exception.Invalid) as err:
        mv.parse(text)
    assert err.value.code == 400 and "MajorNum.MinorNum" in err.value.text


@pytest.mark.parametrize(("headers", "value"), [
    ({}, None),
    ({"OpenStack-API-Version": "compute 2.9"}, "2.9"),
    ({"OpenStack-API-Version": "image 2.5, compute 2.19"}, "2.19"),
    ({"OpenStack-API-Version": "COMPUTE latest"}, "latest"),
    ({"X-OpenStack-Nova-API-Version": "2.11"}, "2.11"),
    # The new header wins when it names compute; otherwise the legacy one counts.
    ({"OpenStack-API-Version": "compute 2.3", "X-OpenStack-Nova-API-Version": "2.11"}, "2.3"),
    ({"OpenStack-API-Version": "volume 3.0", "X-OpenStack-Nova-API-Version": "2.11"}, "2.11"),
    ({"OpenStack-API-Version": "volume 3.0"}, None),
    ({"OpenStack-API-Version": "compute"}, ""),
])
def test_header_value_reads_either_header(headers, value):
    assert mv.header_value(Headers(headers)) == value


def test_negotiate_range_latest_and_default():
    assert mv.negotiate(None) == (2, 1)
    assert mv.negotiate("latest") == mv.MAX
    assert mv.negotiate(mv.MAX_VERSION) == mv.MAX
    assert mv.negotiate("2.1") == (2, 1)


@pytest.mark.parametrize("text", ["2.0", "1.1", "3.0", f"2.{mv.MAX[1] + 1}"])
def test_negotiate_out_of_range_is_406_in_novas_words(text):
    with pytest.raises(exception.VmflowError) as err:
        mv.negotiate(text)
    assert err.value.code == 406
    assert err.value.text == (f"Version {text} is not supported by the API. Minimum is 2.1 "
                              f"and maximum is {mv.MAX_VERSION}.")


@pytest.mark.parametrize("text", ["", "2.x", "compute"])
def test_negotiate_garbage_is_400(text):
    with pytest.raises(exception.Invalid):
        mv.negotiate(text)


def test_outside_a_request_the_version_is_the_minimum():
    assert mv.requested() == (2, 1)
    assert mv.at_least("2.1") and not mv.at_least("2.2")
