"""The fake's projects and SSH keys."""

from __future__ import annotations

from datetime import UTC, datetime

from flow_backend.providers.mithril.api.models import CreateSshKeyRequest
from flow_backend.testing.fake_http_types import FakeRequest, FakeResponse, QueryReader
from flow_backend.testing.fake_route_base import Handler, RouteGroup, parse_body
from flow_backend.testing.fake_state import iso, new_fid

__all__ = ["AccountRoutes"]


class AccountRoutes(RouteGroup):
    """The fake's projects and SSH keys."""

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v2/projects", self.list_projects),
            ("GET", "/v2/ssh-keys", self.list_ssh_keys),
            ("POST", "/v2/ssh-keys", self.create_ssh_key),
        ]

    def list_projects(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        return FakeResponse(200, list(self.state.projects.values()))

    def list_ssh_keys(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        query = QueryReader(request.query)
        project = query.text("project", required=True)
        query.raise_problems()
        keys = [key for key in self.state.ssh_keys.values() if key["project"] == project]
        return FakeResponse(
            200, [{k: v for k, v in key.items() if k != "private_key"} for key in keys]
        )

    def create_ssh_key(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        body = parse_body(request, CreateSshKeyRequest)
        self._project(body.project)
        private_key = None
        public_key = body.public_key
        if not public_key:
            public_key, private_key = _generate_key_pair()
        key = {
            "fid": new_fid("sshkey"),
            "name": body.name,
            "project": body.project,
            "public_key": public_key,
            "created_at": iso(datetime.now(UTC)),
            "required": body.required,
        }
        self.state.ssh_keys[key["fid"]] = key
        return FakeResponse(201, {**key, "private_key": private_key})


def _generate_key_pair() -> tuple[str, str]:
    """A fresh RSA pair (OpenSSH public, PEM private), as the API makes when no key is given."""
    import io

    import paramiko

    key = paramiko.RSAKey.generate(2048)
    private = io.StringIO()
    key.write_private_key(private)
    return f"{key.get_name()} {key.get_base64()}", private.getvalue()
