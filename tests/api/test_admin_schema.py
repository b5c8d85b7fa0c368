"""The OpenAPI schema types the admin bodies (rules, weights, experiments, preview, keys)
instead of free objects, while the codecs in search/ stay the one validator; every integer an
admin route takes is bounded, so 2**63 is a 422, not a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.schemas import MAX_REQUEST_INT
from api.settings import Settings
from tests.api import build_snapshot


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    work: Path = tmp_path_factory.mktemp("admin-schema")
    app = create_app(
        Settings(index_dir=build_snapshot(work), text_embedder="none", events_db="none")
    )
    _, token = app.state.security.keys.create("ops", "admin", rate_per_minute=100_000, burst=1000)
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


@pytest.fixture(scope="module")
def schema(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def body_schema(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation = schema["paths"][path][method]
    return resolve(schema, operation["requestBody"]["content"]["application/json"]["schema"])


def nullable(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of ``X | None``."""
    for branch in node.get("anyOf", [node]):
        if branch.get("type") != "null":
            return resolve(schema, branch)
    raise AssertionError(node)


RULE_FIELDS = {
    "id", "match", "query", "actions", "channels", "segments", "active_from", "active_to",
    "priority", "enabled", "description",
}  # fmt: skip
ACTIONS = {"pin", "boost", "bury", "hide", "synonyms", "redirect"}


class TestRuleSchema:
    @pytest.mark.parametrize(
        ("method", "path"), [("post", "/admin/rules"), ("put", "/admin/rules/{rule_id}")]
    )
    def test_rule_body_has_the_rule_fields(
        self, schema: dict[str, Any], method: str, path: str
    ) -> None:
        body = body_schema(schema, method, path)
        assert set(body["properties"]) == RULE_FIELDS
        assert body["properties"]["match"]["enum"] == ["exact", "contains", "pattern", "global"]
        assert body["additionalProperties"] is False
        if method == "post":
            assert {"id", "match", "actions"} <= set(body["required"])
        else:
            assert "id" not in body.get("required", [])

    def test_actions_are_a_union_discriminated_by_type(self, schema: dict[str, Any]) -> None:
        body = body_schema(schema, "post", "/admin/rules")
        items = body["properties"]["actions"]["items"]
        assert items["discriminator"]["propertyName"] == "type"
        assert set(items["discriminator"]["mapping"]) == ACTIONS
        by_type = {
            kind: resolve(schema, {"$ref": ref})
            for kind, ref in items["discriminator"]["mapping"].items()
        }
        assert set(by_type["pin"]["properties"]) == {"type", "product_id", "position"}
        assert by_type["pin"]["properties"]["position"]["maximum"] == 10_000
        assert {"product_ids", "filter", "weight"} <= set(by_type["boost"]["properties"])
        assert set(by_type["synonyms"]["properties"]) == {"type", "words", "one_way"}
        assert set(by_type["redirect"]["properties"]) == {"type", "url"}
        boost_filter = nullable(schema, by_type["boost"]["properties"]["filter"])
        assert {"brands", "categories", "attributes", "price_min", "price_max"} <= set(
            boost_filter["properties"]
        )

    def test_rule_set_and_preview_bodies_are_typed(self, schema: dict[str, Any]) -> None:
        rules = body_schema(schema, "put", "/admin/rules")["properties"]["rules"]
        assert set(resolve(schema, rules["items"])["properties"]) == RULE_FIELDS
        preview = body_schema(schema, "post", "/admin/preview")["properties"]
        assert set(nullable(schema, preview["rule"])["properties"]) == RULE_FIELDS
        assert "colour_weight" in nullable(schema, preview["weights"])["properties"]

    def test_no_admin_body_refers_to_the_codec_instead_of_fields(
        self, schema: dict[str, Any]
    ) -> None:
        for path, operations in schema["paths"].items():
            if not path.startswith("/admin"):
                continue
            for method, operation in operations.items():
                assert "see :func:" not in operation.get("description", ""), (method, path)
                content = operation.get("requestBody", {}).get("content", {})
                if "application/json" in content:
                    body = resolve(schema, content["application/json"]["schema"])
                    assert body.get("properties"), (method, path)


class TestWeightsAndExperimentsSchema:
    def test_weights_body(self, schema: dict[str, Any]) -> None:
        body = body_schema(schema, "put", "/admin/weights")
        assert set(body["properties"]) == {
            "retrievers", "colour_weight", "colour_rerank", "behaviour", "personalisation",
        }  # fmt: skip
        personalisation = nullable(schema, body["properties"]["personalisation"])
        assert personalisation["maximum"] == 0.9

    def test_experiment_body(self, schema: dict[str, Any]) -> None:
        body = body_schema(schema, "put", "/admin/experiments/{experiment_id}")
        assert set(body["properties"]) == {"id", "unit", "variants", "enabled", "description"}
        assert body["properties"]["unit"]["enum"] == ["user", "session"]
        variant = resolve(schema, body["properties"]["variants"]["items"])
        assert set(variant["properties"]) == {"name", "share", "weights"}


class TestCodecStaysTheValidator:
    def test_codec_messages_still_name_the_field(self, client: TestClient) -> None:
        rule = {"id": "r1", "match": "exact", "query": "sofa", "actions": [], "colour": "x"}
        response = client.post("/admin/rules", json=rule)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "rule.colour"]

    def test_a_valid_rule_is_saved(self, client: TestClient) -> None:
        rule = {
            "id": "pin-sofa",
            "match": "exact",
            "query": "sofa",
            "actions": [{"type": "pin", "product_id": "SOFA-1", "position": 1}],
        }
        response = client.post("/admin/rules", json=rule)
        assert response.status_code == 201, response.text
        assert response.json()["rule"]["actions"] == rule["actions"]

    @pytest.mark.parametrize("body", [[1, 2], "rule", 3])
    def test_a_body_that_is_not_an_object_is_422(self, client: TestClient, body: Any) -> None:
        for method, path in [
            ("post", "/admin/rules"),
            ("put", "/admin/weights"),
            ("put", "/admin/experiments/e1"),
        ]:
            response = client.request(method, path, json=body)
            assert response.status_code == 422, (path, response.text)


BIG = [2**63, 2**64, MAX_REQUEST_INT + 1]


class TestIntegerBounds:
    @pytest.mark.parametrize("value", BIG)
    @pytest.mark.parametrize(
        ("method", "url"),
        [
            ("get", "/admin/versions?offset={}"),
            ("get", "/admin/audit?offset={}"),
            ("get", "/admin/versions/{}"),
            ("post", "/admin/rollback/{}"),
            ("delete", "/admin/rules/x?expected_version={}"),
            ("delete", "/admin/experiments/x?expected_version={}"),
        ],
    )
    def test_huge_integers_are_422(
        self, client: TestClient, method: str, url: str, value: int
    ) -> None:
        response = client.request(method, url.format(value))
        assert response.status_code == 422, response.text

    @pytest.mark.parametrize("value", BIG)
    def test_huge_counts_and_limits_in_bodies_are_422(self, client: TestClient, value: int) -> None:
        counts = {"control": {"units": value, "clicked": 1, "converted": 1}}
        response = client.post("/admin/experiments/e1/report", json={"counts": counts})
        assert response.status_code == 422, response.text
        key = {"name": "k", "scope": "search", "rate_per_minute": value}
        assert client.post("/admin/keys", json=key).status_code == 422

    def test_every_admin_integer_parameter_declares_a_maximum(self, schema: dict[str, Any]) -> None:
        unbounded = []
        for path, operations in schema["paths"].items():
            if not path.startswith("/admin"):
                continue
            for method, operation in operations.items():
                for parameter in operation.get("parameters", []):
                    node = parameter["schema"]
                    branches = node.get("anyOf", [node])
                    for branch in branches:
                        if branch.get("type") == "integer" and "maximum" not in branch:
                            unbounded.append(f"{method} {path} {parameter['name']}")
        assert unbounded == []
