"""Every Bicep file parses (pycep, as checkov does) and follows the documentation conventions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra.bicep_model import INFRA, MAIN, bicep_files, parse

FILES = bicep_files()
IDS = [str(path.relative_to(INFRA)) for path in FILES]


def test_the_expected_modules_exist() -> None:
    names = {path.name for path in (INFRA / "modules").glob("*.bicep")}
    assert {"functionapp.bicep", "storage.bicep", "cosmos.bicep", "keyvault.bicep", "rbac.bicep"} <= names
    assert MAIN in FILES


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_parses(path: Path) -> None:
    parsed = parse(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path.name} declares nothing"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_every_parameter_is_described_and_choices_are_listed(path: Path) -> None:
    for name, parameter in parse(path).get("parameters", {}).items():
        decorators = {decorator["type"]: decorator.get("argument") for decorator in parameter["decorators"]}
        assert decorators.get("description"), f"{path.name}: param {name} has no @description"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_every_output_is_described(path: Path) -> None:
    for name, output in parse(path).get("outputs", {}).items():
        assert any(d["type"] == "description" and d["argument"] for d in output["decorators"]), (
            f"{path.name}: output {name} has no @description"
        )


def test_closed_choice_parameters_list_their_allowed_values() -> None:
    closed = {"eventSchema", "appliancePublisherPrincipalType", "instanceMemoryMB", "replicaStorageSku"}
    parameters = parse(MAIN)["parameters"]
    for name in closed:
        assert any(d["type"] == "allowed" for d in parameters[name]["decorators"]), name


def test_modules_referenced_by_main_exist() -> None:
    for name, module in parse(MAIN)["modules"].items():
        assert (INFRA / module["detail"]["path"]).is_file(), name


def test_parameters_file_sets_only_declared_parameters_and_no_secret() -> None:
    declared = parse(MAIN)["parameters"]
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(values) <= set(declared), set(values) - set(declared)
    required = {name for name, p in declared.items() if "default" not in p}
    assert required <= set(values), (
        f"required parameters missing from main.parameters.json: {required - set(values)}"
    )
    secure = {name for name, p in declared.items() if any(d["type"] == "secure" for d in p["decorators"])}
    assert not secure & set(values), "secure parameters belong on the command line, not in a committed file"
