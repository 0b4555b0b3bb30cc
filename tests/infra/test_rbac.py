"""Role assignments: least privilege, named guid(scope, principal, role), never subscription-wide."""

from __future__ import annotations

import re
from typing import Any

from tests.infra.bicep_model import INFRA, MAIN, bicep_files, function_call, parse, resources, variables

ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
# Roles that would let the app (or anything) take over the subscription or grant itself more.
FORBIDDEN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
}
TARGET_RG_ROLES = {
    "9980e02c-c2be-4d73-94e8-173b1dc7cf3c",  # Virtual Machine Contributor
    "4d97b98b-1d4f-4787-a291-c67834d212e7",  # Network Contributor
    "7efff54f-a5b4-42b5-a1c5-5411624893ce",  # Disk Snapshot Contributor
}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def role_variable(assignment: Any) -> str:
    call = function_call(assignment.config["properties"]["roleDefinitionId"], "subscription_resource_id")
    assert call is not None and call["resource_type"] == "Microsoft.Authorization/roleDefinitions", (
        assignment.symbol
    )
    name: str = call["resource_name_1"]
    return name


def role_ids_of(assignment: Any) -> set[str]:
    """Role GUIDs an assignment can grant: its variable's value, or every value of the array it loops over."""
    values = variables(assignment.file)
    name = role_variable(assignment)
    if name in values:
        return {values[name]}
    loop = parse(assignment.file)["resources"][assignment.symbol]["config"]["loop_type"]["detail"]
    assert loop["item_name"] == name, (
        f"{assignment.symbol}: role must come from a variable or the looped array"
    )
    return {values[item] for item in values[loop["array_name"]]}


def assignments() -> list[Any]:
    return [r for r in resources() if r.type == ROLE_ASSIGNMENT and not r.existing]


def test_there_are_role_assignments_to_check() -> None:
    assert len(assignments()) >= 10


def test_no_file_deploys_above_resource_group_scope() -> None:
    for path in bicep_files():
        scope = parse(path)["globals"].get("scope", {}).get("value", "resourceGroup")
        assert scope == "resourceGroup", f"{path.name} targets {scope}"


def test_every_assignment_is_named_guid_of_scope_principal_role() -> None:
    for assignment in assignments():
        call = function_call(assignment.config["name"], "guid")
        assert call is not None, f"{assignment.symbol}: name must be guid(scope, principal, role)"
        arguments = list(call.values())
        assert len(arguments) == 3, f"{assignment.symbol}: guid needs exactly scope, principal and role"
        assert arguments[2] == role_variable(assignment), (
            f"{assignment.symbol}: third guid argument is the role"
        )
        assert arguments[1] == assignment.config["properties"]["principalId"], assignment.symbol


def test_every_role_id_is_a_commented_variable_and_none_is_broad() -> None:
    for assignment in assignments():
        for role in role_ids_of(assignment):
            assert GUID.match(role), f"{assignment.symbol}: {role}"
            assert role not in FORBIDDEN_ROLES, f"{assignment.symbol} grants {FORBIDDEN_ROLES[role]}"
            line = next(line for line in assignment.file.read_text().splitlines() if f"'{role}'" in line)
            assert "//" in line, f"role id {role} in {assignment.file.name} needs a comment naming the role"
    everything = "\n".join(path.read_text() for path in bicep_files())
    for role, name in FORBIDDEN_ROLES.items():
        assert role not in everything, f"{name} appears in infra/"


def test_app_identity_assignments_are_service_principal_and_resource_scoped() -> None:
    for assignment in assignments():
        properties = assignment.config["properties"]
        principal_type = properties["principalType"]
        if properties["principalId"] == "appPrincipalId" or assignment.symbol == "topicDeadLetterWriter":
            assert principal_type == "ServicePrincipal", assignment.symbol
        else:
            # Appliance publishers: the type is a parameter restricted to non-user principals.
            parameter = parse(assignment.file)["parameters"][principal_type]
            allowed = next(d["argument"] for d in parameter["decorators"] if d["type"] == "allowed")
            assert set(allowed) <= {"ServicePrincipal", "Group"}, assignment.symbol
        if assignment.file.name == "target-rg-rbac.bicep":
            continue  # scoped by the module deployment to one target resource group, checked below
        scope = assignment.config.get("scope")
        assert isinstance(scope, str) and scope in parse(assignment.file)["resources"], (
            f"{assignment.symbol} must be scoped to a resource in its file, not the resource group"
        )


def test_target_resource_groups_get_only_vm_network_and_snapshot_roles_via_resource_group_scope() -> None:
    target = INFRA / "modules" / "target-rg-rbac.bicep"
    granted: set[str] = set()
    for assignment in assignments():
        if assignment.file == target:
            granted |= role_ids_of(assignment)
    assert granted == TARGET_RG_ROLES
    module = parse(MAIN)["modules"]["targetRbac"]
    assert module["detail"]["path"] == "modules/target-rg-rbac.bicep"
    loop = module["config"]["loop_type"]["detail"]
    assert loop["array_name"] == "targetResourceGroupNames"
    scope = function_call(module["config"]["config"]["scope"], "resource_group")
    assert scope is not None and scope["resource_group_name"] == loop["item_name"]
    assert scope["subscription_id"] is None, "targets live in the deployment's subscription"


def test_only_the_target_module_is_deployed_to_another_scope() -> None:
    for name, module in parse(MAIN)["modules"].items():
        config = module["config"]
        config = config.get("config", config) if "loop_type" in config or "condition" in config else config
        if name != "targetRbac":
            assert "scope" not in config, f"module {name} must deploy into the control plane resource group"


def test_cosmos_data_role_is_contributor_on_the_database_only() -> None:
    (assignment,) = [r for r in resources() if r.type.endswith("/sqlRoleAssignments")]
    values = variables(assignment.file)
    role = values["cosmosDataContributorRoleId"]
    assert role == "00000000-0000-0000-0000-000000000002"  # Cosmos DB Built-in Data Contributor
    properties = assignment.config["properties"]
    assert properties["roleDefinitionId"].endswith("/sqlRoleDefinitions/${cosmosDataContributorRoleId}")
    assert properties["scope"] == "${account.id}/dbs/${databaseName}"
