"""template.yaml and samconfig.toml: valid for SAM, and consistent with the function's code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from samcli.yamlhelper import yaml_parse

from classifier import observability, settings
from support import REPO

TEMPLATE = yaml_parse((REPO / "template.yaml").read_text())
FUNCTION = TEMPLATE["Resources"]["PredictFunction"]


def sam() -> str:
    return shutil.which("sam") or str(Path(sys.executable).with_name("sam"))


def test_sam_validate_lint_passes():
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}  # no usage metrics sent from tests
    result = subprocess.run(
        [sam(), "validate", "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_function_is_a_container_image_built_from_predict_function():
    props = FUNCTION["Properties"]
    assert props["PackageType"] == "Image"
    assert FUNCTION["Metadata"]["DockerContext"] == "./predict_function"
    assert (REPO / "predict_function" / FUNCTION["Metadata"]["Dockerfile"]).is_file()
    assert TEMPLATE["Globals"]["Function"]["Timeout"] < 29  # API Gateway's integration timeout


def test_api_routes_and_binary_media_types():
    events = FUNCTION["Properties"]["Events"]
    routes = {(e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in events.values()}
    assert routes == {("POST", "/predict"), ("GET", "/model")}
    api = TEMPLATE["Resources"]["PredictApi"]["Properties"]
    assert "image~1*" in api["BinaryMediaTypes"]


def test_environment_names_the_settings_the_code_reads():
    variables = FUNCTION["Properties"]["Environment"]["Variables"]
    known = {
        value
        for module in (settings, observability)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str)
    }
    assert set(variables) <= known, set(variables) - known
    assert variables["ALLOW_PRIVATE_URLS"] == "false"
    model_path = variables["MODEL_PATH"]  # !If [Int8Model, <int8 path>, <fp32 path>] (ModelVariant)
    paths = model_path["Fn::If"][1:] if isinstance(model_path, dict) else [model_path]
    assert paths and all(path.startswith("/var/task/") for path in paths), model_path


def test_architecture_is_a_parameter():
    assert TEMPLATE["Parameters"]["Architecture"]["AllowedValues"] == ["x86_64", "arm64"]
    assert FUNCTION["Properties"]["Architectures"] == [{"Ref": "Architecture"}]


def test_samconfig_makes_guided_deploy_one_step():
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["resolve_image_repos"] is True and deploy["resolve_s3"] is True
    assert set(deploy["capabilities"].split()) == {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"}
    assert deploy["confirm_changeset"] is True
