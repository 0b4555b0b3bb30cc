"""The OpenAPI document: generated from the models, and in step with the routes really registered."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from functions.openapi import ALL_METHODS, OPERATIONS, build_document
from tests.unit.test_api_http import FUNCTIONS, call


def registered_routes() -> dict[tuple[str, str], str]:
    routes = {}
    for fn in FUNCTIONS.values():
        for binding in json.loads(fn.get_function_json())["bindings"]:
            if binding["type"] == "httpTrigger":
                for method in binding["methods"]:
                    routes[(method.upper(), binding["route"])] = fn.get_function_name()
    return routes


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_every_registered_api_route_is_documented_and_nothing_else() -> None:
    routes = registered_routes()
    routes.pop(("GET", "health"))
    for method in ALL_METHODS:
        assert routes.pop((method, "{*path}")) == "zz_unmatched_route"
    documented = {(op.method, op.route): op.function_name for op in OPERATIONS}
    assert documented == routes


def test_document_is_openapi_3_1_with_resolvable_refs() -> None:
    document = build_document()
    assert document["openapi"] == "3.1.0"
    schemas = document["components"]["schemas"]
    for ref in refs(document):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref


def test_request_schemas_are_strict_and_camel_case() -> None:
    document = build_document()
    target = document["components"]["schemas"]["TargetSettings"]
    assert target["additionalProperties"] is False
    assert {
        "resourceGroup",
        "virtualNetwork",
        "subnet",
        "vmSize",
        "staticIpAddress",
        "autoRepairReplication",
    } <= set(target["properties"])
    put = document["paths"]["/api/machines/{machineId}/replication"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TargetSettings"
    }
    assert set(put["responses"]) == {"202", "400", "401", "403", "404", "409", "500", "503"}


def test_policy_ranges_appear_in_the_schema() -> None:
    policy = build_document()["components"]["schemas"]["ReplicationPolicyUpdate"]["properties"]
    assert (policy["uploadThreadsPerVm"]["minimum"], policy["uploadThreadsPerVm"]["maximum"]) == (1, 32)
    assert (policy["workHoursBandwidthKbps"]["minimum"], policy["workHoursBandwidthKbps"]["maximum"]) == (
        512,
        1_047_552,
    )


def test_security_appliance_routes_need_both_key_and_credential() -> None:
    paths = build_document()["paths"]
    assert paths["/api/appliances/{applianceId}/machines"]["post"]["security"] == [
        {"functionKey": [], "applianceCredential": []}
    ]
    assert paths["/api/machines"]["get"]["security"] == [{"functionKey": [], "operatorToken": []}]
    params = {p["name"]: p for p in paths["/api/machines"]["get"]["parameters"]}
    assert set(params) == {"applianceId", "state", "pageSize", "continuationToken"}


def test_every_operator_operation_names_its_role_and_answers_401_and_403() -> None:
    from functions.auth import REQUIRED_ROLES

    document = build_document()
    assert document["components"]["securitySchemes"]["operatorToken"]["bearerFormat"] == "JWT"
    seen = set()
    for methods in document["paths"].values():
        for operation in methods.values():
            assert {"401", "403"} <= set(operation["responses"]), operation["operationId"]
            if any("operatorToken" in requirement for requirement in operation["security"]):
                role = REQUIRED_ROLES[operation["operationId"]]
                assert operation["x-required-role"] == role.value
                assert role.value in operation["description"]
                seen.add(operation["operationId"])
    assert seen == set(REQUIRED_ROLES)
    paths = document["paths"]
    assert paths["/api/machines/{machineId}/migrate"]["post"]["x-required-role"] == "Migration.Operator"
    assert (
        paths["/api/appliances/{applianceId}/policy"]["put"]["x-required-role"] == "Migration.Administrator"
    )
    assert paths["/api/openapi.json"]["get"]["security"] == [{"functionKey": []}]


def test_served_by_the_function() -> None:
    fn = FUNCTIONS["openapi_document"]
    response = fn.get_user_function()(req=func.HttpRequest("GET", "/api/openapi.json", body=b""))
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert json.loads(response.get_body()) == build_document()


def test_failover_settings_are_patched_with_a_merge_patch_of_the_same_document() -> None:
    document = build_document()
    path = document["paths"]["/api/machines/{machineId}/failover-settings"]
    ref = {"$ref": "#/components/schemas/FailoverSettings"}
    assert path["get"]["responses"]["200"]["content"]["application/json"]["schema"] == ref
    assert path["patch"]["requestBody"]["content"] == {"application/merge-patch+json": {"schema": ref}}
    assert set(path["patch"]["responses"]) == {"200", "400", "401", "403", "404", "409", "500", "503"}
    settings = document["components"]["schemas"]["FailoverSettings"]
    assert settings["additionalProperties"] is False
    assert {
        "vmName",
        "resourceGroup",
        "vmSize",
        "virtualNetwork",
        "subnet",
        "staticIpAddress",
        "disks",
    } <= set(settings["properties"])


def test_allowed_operations_and_the_409_detail_are_in_the_schema() -> None:
    document = build_document()
    schemas = document["components"]["schemas"]
    operations = schemas["Operation"]["enum"]
    assert {"enableReplication", "testMigrate", "failover", "changeRecoveryPoint", "commit"} <= set(
        operations
    )
    assert schemas["MachineSummary"]["properties"]["allowedOperations"]["items"] == {
        "$ref": "#/components/schemas/Operation"
    }
    assert "allowedOperations" in schemas["MachineDetail"]["properties"]
    assert "reprotect" in operations
    assert schemas["MachineSummary"]["properties"]["activeLocation"] == {
        "$ref": "#/components/schemas/Location",
        "description": schemas["MachineSummary"]["properties"]["activeLocation"]["description"],
    }
    assert schemas["Location"]["enum"] == ["azure", "onPremises"]
    assert "activeLocation" in schemas["MachineSummary"]["required"]
    assert {"ReverseReprotecting", "ReverseReplicating"} <= set(schemas["MachineState"]["enum"])
    detail = schemas["ForbiddenTransitionDetail"]
    assert {"machineId", "from", "to", "allowed", "allowedOperations"} <= set(detail["properties"])
    points = document["paths"]["/api/machines/{machineId}/recovery-points"]["get"]
    assert set(points["responses"]) == {"200", "400", "401", "403", "404", "500", "503"}
    point = schemas["RecoveryPointView"]["properties"]
    assert set(point) == {"id", "time", "consistency", "cycleId", "disks"}


def test_the_catch_all_sorts_after_every_other_http_function() -> None:
    # The Functions host tries routes in the order of the function names: the catch-all must be last.
    names = [
        fn.get_function_name()
        for fn in FUNCTIONS.values()
        if any(b["type"] == "httpTrigger" for b in json.loads(fn.get_function_json())["bindings"])
    ]
    assert max(names) == "zz_unmatched_route"
    assert max(names, key=str.casefold) == "zz_unmatched_route"


def test_an_unknown_route_is_a_json_404() -> None:
    status, body, response = call("zz_unmatched_route", "GET", "/", route={"path": "machine/vm-1"})
    assert status == 404 and response.mimetype == "application/json"
    assert body["error"]["code"] == "RouteNotFound"
    assert "/api/machine/vm-1 is not a route" in body["error"]["message"]


def test_a_wrong_method_on_a_known_route_is_a_json_405_with_allow() -> None:
    status, body, response = call("zz_unmatched_route", "DELETE", "/", route={"path": "machines/vm-1"})
    assert status == 405 and response.headers["Allow"] == "GET"
    assert body["error"]["code"] == "MethodNotAllowed"
    assert body["error"]["details"] == [{"allowed": ["GET"]}]
    status, body, response = call(
        "zz_unmatched_route", "POST", "/", route={"path": "machines/vm-1/replication"}
    )
    assert status == 405 and response.headers["Allow"] == "DELETE, PUT"


def test_every_202_names_its_job_in_location_and_says_when_to_poll() -> None:
    document = build_document()
    accepted = [
        (path, method, operation["responses"]["202"])
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if "202" in operation["responses"]
    ]
    assert len(accepted) >= 15
    for path, method, response in accepted:
        assert set(response["headers"]) == {"Location", "Retry-After"}, (path, method)
        assert all(h["required"] for h in response["headers"].values())


def test_every_operation_answers_500_and_every_write_409_with_the_error_shape() -> None:
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, methods in build_document()["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            assert responses["500"]["content"]["application/json"]["schema"] == error, (path, method)
            if method in ("post", "put", "patch", "delete"):
                assert responses["409"]["content"]["application/json"]["schema"] == error, (path, method)
            for status, response in responses.items():
                if status.startswith(("4", "5")) and status != "401":
                    assert response["content"]["application/json"]["schema"] == error, (path, status)


def test_error_codes_are_an_enum_of_every_code_the_api_answers() -> None:
    from shared.domain.errors import DomainError

    def walk(kind: type[DomainError]) -> list[type[DomainError]]:
        return [k for sub in kind.__subclasses__() for k in (sub, *walk(sub))]

    enum = build_document()["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
    assert {k.code for k in walk(DomainError)} <= set(enum)
    for code in (
        "ValidationFailed",
        "ForbiddenTransition",
        "JobNotCancellable",
        "InternalError",
        "RouteNotFound",
    ):
        assert code in enum
    assert enum == sorted(set(enum))


def test_optional_bodies_are_marked_optional() -> None:
    paths = build_document()["paths"]
    for route in ("test-migrate", "migrate", "failover"):
        assert paths[f"/api/machines/{{machineId}}/{route}"]["post"]["requestBody"]["required"] is False, (
            route
        )
    assert paths["/api/machines/{machineId}/replication"]["put"]["requestBody"]["required"] is True


def test_no_storage_notes_leak_into_the_document() -> None:
    text = json.dumps(build_document())
    for internal in ("Stored in", "(pk /", "partition key"):
        assert internal not in text, internal
