"""The spec checker itself: it must catch what breaks the spec, or the traffic checks prove nothing."""

from __future__ import annotations

from flow_backend.testing.openapi_check import SpecChecker, SpecExchange, to_json_schema

GOOD_BID: dict[str, object] = {
    "fid": "bid_abc",
    "name": "hf-1-0",
    "project": "proj_abc",
    "created_by": "user_abc",
    "created_at": "2024-01-01T00:00:00Z",
    "deactivated_at": None,
    "limit_price": "$15.60",
    "instance_quantity": 1,
    "instance_type": "it_abc",
    "region": "us-central1-a",
    "instances": [],
    "launch_specification": {"volumes": [], "ssh_keys": [], "startup_script": None},
    "status": "Open",
}


def exchange(**changes: object) -> SpecExchange:
    fields: dict[str, object] = {
        "method": "GET",
        "path": "/v2/spot/bids/bid_abc",
        "query": {},
        "request_body": None,
        "status": 200,
        "response_body": GOOD_BID,
    }
    fields.update(changes)
    return SpecExchange(**fields)  # type: ignore[arg-type]


def test_nullable_becomes_a_null_type() -> None:
    assert to_json_schema({"type": "string", "nullable": True}) == {"type": ["string", "null"]}
    assert to_json_schema({"$ref": "#/components/schemas/X", "nullable": True}) == {
        "anyOf": [{"$ref": "#/$defs/X"}, {"type": "null"}]
    }


def test_a_good_exchange_passes(spec_checker: SpecChecker) -> None:
    assert spec_checker.problems_in([exchange()]) == []


def test_wrong_shapes_are_caught(spec_checker: SpecChecker) -> None:
    assert spec_checker.response_problems(exchange(response_body={**GOOD_BID, "status": "Done"}))
    missing = {key: value for key, value in GOOD_BID.items() if key != "instances"}
    assert spec_checker.response_problems(exchange(response_body=missing))
    assert spec_checker.response_problems(
        exchange(response_body={**GOOD_BID, "created_at": "yesterday"})
    )
    assert spec_checker.response_problems(
        exchange(response_body={**GOOD_BID, "instance_quantity": "1"})
    )


def test_request_problems_are_caught(spec_checker: SpecChecker) -> None:
    listing = exchange(path="/v2/instances", response_body={"data": []})
    assert any("'project'" in p for p in spec_checker.request_problems(listing))
    assert spec_checker.request_problems(exchange(path="/v2/spot/bids", query={"limit": ["500"]}))
    assert spec_checker.request_problems(exchange(path="/v2/spot/bids", query={"colour": ["red"]}))
    post = exchange(method="POST", path="/v2/spot/bids", request_body={"name": "x"}, status=201)
    assert any("required" in p for p in spec_checker.request_problems(post))
    assert spec_checker.request_problems(exchange(path="/v2/nothing-here"))


def test_status_codes_and_bodies_are_checked(spec_checker: SpecChecker) -> None:
    deleted = exchange(method="DELETE", status=204, response_body=None)
    assert spec_checker.response_problems(deleted) == []
    assert spec_checker.response_problems(exchange(method="DELETE", status=200, response_body=None))
    assert spec_checker.response_problems(exchange(status=503, response_body="oops"))
    assert spec_checker.response_problems(exchange(status=503, response_body={"detail": "x"})) == []
