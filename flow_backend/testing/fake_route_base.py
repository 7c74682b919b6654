"""What every group of the fake's endpoints shares: JSON bodies checked like FastAPI's, the
state, and the checks of a project and a region."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic

from flow_backend.testing.fake_http_types import ApiError, FakeRequest, FakeResponse
from flow_backend.testing.fake_lifecycle import Lifecycle

__all__ = ["Handler", "RouteGroup", "parse_body"]

Handler = Callable[[FakeRequest, dict[str, str]], FakeResponse]


def parse_body(request: FakeRequest, model: type[pydantic.BaseModel]) -> Any:
    """Validate a JSON body like FastAPI: 422 with ``loc`` starting at ``"body"``."""
    if request.body_error is not None:
        raise ApiError(
            422,
            [
                {
                    "loc": ["body"],
                    "msg": f"JSON decode error: {request.body_error}",
                    "type": "json_invalid",
                }
            ],
        )
    if request.body is None:
        raise ApiError(422, [{"loc": ["body"], "msg": "Field required", "type": "missing"}])
    try:
        return model.model_validate(request.body)
    except pydantic.ValidationError as error:
        detail = [
            {"loc": ["body", *item["loc"]], "msg": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False)
        ]
        raise ApiError(422, detail) from None


class RouteGroup:
    """Endpoints of one concept; :meth:`routes` lists them for the router."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.state = lifecycle.state
        self.settings = lifecycle.settings

    def routes(self) -> list[tuple[str, str, Handler]]:
        """``(method, path template, handler)`` of each endpoint."""
        raise NotImplementedError

    def _project(self, fid: str) -> None:
        if fid not in self.state.projects:
            raise ApiError(404, f"Project {fid!r} not found")

    def _region(self, region: str) -> None:
        if region not in self.state.regions:
            raise ApiError(404, f"Region {region!r} not found")
