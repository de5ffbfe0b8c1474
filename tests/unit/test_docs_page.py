"""The OpenAPI document described as the project's, and the page that loads nothing from elsewhere."""

from __future__ import annotations

import re
from types import SimpleNamespace

from service.http.docs_page import CONTENT_SECURITY_POLICY, _page
from service.http.openapi import describe, tags

SERVED = SimpleNamespace(name="digits-classifier", version="7")


def bentoml_like_document() -> dict:
    infra = {"tags": ["Infrastructure"], "responses": {"200": {}}, "description": "Health check endpoint."}
    return {
        "info": {"title": "nbship", "version": "None", "contact": {"name": "BentoML Team"}},
        "tags": [{"name": "Service APIs"}, {"name": "Infrastructure"}],
        "paths": {
            "/livez": {"get": infra},
            "/predict": {
                "post": {"tags": ["Service APIs"], "responses": {}, "description": "Class of rows."}
            },
            "/model": {"get": {"responses": {}, "summary": "Model Lineage"}},
            "/jobs/": {"post": {"responses": {}, "summary": "Submit Job"}},
            "/jobs/{job_id}": {"get": {"responses": {}}},
            "/other": {
                "post": {"tags": ["Service APIs"], "responses": {}, "description": "Another route. More."}
            },
        },
    }


def test_info_names_the_project_and_the_served_model():
    info = describe(bentoml_like_document(), SERVED)["info"]
    assert info["title"] == "nbship prediction service"
    assert info["version"] == "digits-classifier 7"
    assert "**digits-classifier** version **7**" in info["description"]
    assert "contact" not in info and "BentoML Team" not in str(info)


def test_every_operation_has_our_tag_and_a_summary():
    document = describe(bentoml_like_document(), SERVED)
    assert [tag["name"] for tag in document["tags"]] == [tag["name"] for tag in tags(None)]
    operations = {
        (path, method): op for path, item in document["paths"].items() for method, op in item.items()
    }
    assert {key: op["tags"] for key, op in operations.items()} == {
        ("/livez", "get"): ["infrastructure"],
        ("/predict", "post"): ["predict"],
        ("/model", "get"): ["model"],
        ("/jobs/", "post"): ["jobs"],
        ("/jobs/{job_id}", "get"): ["jobs"],
        ("/other", "post"): ["predict"],
    }
    assert all(op["summary"] for op in operations.values())
    assert (
        operations[("/other", "post")]["summary"] == "Another route"
    )  # a route not in the table: its docstring


def test_the_page_references_only_its_own_files():
    page = _page(SERVED)
    assert "<title>nbship prediction service: digits-classifier 7</title>" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script>" not in page  # no inline script: the policy allows only the service's own files
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "script-src 'self';" in CONTENT_SECURITY_POLICY


def test_what_predict_answers_follows_the_served_models_task():
    for task, answer in (("classification", "class probabilities"), ("regression", "each row's values")):
        document = describe(bentoml_like_document(), SERVED, task)
        assert answer in document["paths"]["/predict"]["post"]["summary"]
        assert answer in document["info"]["description"]
        assert answer in document["tags"][0]["description"].lower()
    regressor = str(describe(bentoml_like_document(), SERVED, "regression"))
    assert "probabilities" not in regressor


def test_every_operation_documents_its_errors_in_the_one_shape_and_no_500():
    document = bentoml_like_document()
    document["paths"]["/predict"]["post"]["responses"] = {
        "200": {"description": "ok"},
        "400": {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InvalidArgument"}}}
        },
        "500": {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InternalServerError"}}}
        },
    }
    document["components"] = {"schemas": {"InvalidArgument": {}, "InternalServerError": {}}}
    described = describe(document, SERVED)
    responses = {
        (path, method): set(op["responses"])
        for path, item in described["paths"].items()
        for method, op in item.items()
    }
    assert responses[("/predict", "post")] == {"200", "400", "413", "415", "422", "503", "504"}
    assert responses[("/jobs/", "post")] == {"202", "400", "409", "413", "415", "422", "503", "504"}
    assert responses[("/jobs/{job_id}", "get")] == {"200", "404", "503", "504"}
    assert all("500" not in codes for codes in responses.values())
    errors = [
        answer
        for item in described["paths"].values()
        for op in item.values()
        for code, answer in op["responses"].items()
        if int(code) >= 400
    ]
    assert all(
        answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        for answer in errors
    )
    schemas = described["components"]["schemas"]
    assert "Error" in schemas and "InvalidArgument" not in schemas and "InternalServerError" not in schemas
    assert schemas["Error"]["properties"]["errors"]["minItems"] == 1


def test_the_error_schema_validates_what_the_service_sends():
    import jsonschema

    from service.http.error_shape import ERROR_SCHEMA, error_document, validation_document

    for document in (
        error_document(404, "Not Found"),
        error_document(503, "job store unavailable"),
        validation_document([{"type": "missing", "loc": ["header", "idempotency-key"], "msg": "x" * 900}]),
    ):
        jsonschema.validate(document, ERROR_SCHEMA)
