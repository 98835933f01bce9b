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


def quiet_sam_env(config_dir: Path) -> dict:
    """No network from the sam CLI: no usage metrics, and no weekly "newer version?" query to pypi.org
    (sam skips it when its config, here a fresh one, says it checked moments ago)."""
    import json
    import time

    (config_dir / "metadata.json").write_text(json.dumps({"lastVersionCheck": time.time(), "telemetryEnabled": False}))
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "__SAM_CLI_APP_DIR": str(config_dir)}


def test_sam_validate_lint_passes(tmp_path):
    result = subprocess.run(
        [sam(), "validate", "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=quiet_sam_env(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installationId" in (tmp_path / "metadata.json").read_text()  # sam used this config (it adds an id)


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


def test_sam_local_takes_raw_uploads_of_every_accepted_format():
    """`sam local start-api` matches BinaryMediaTypes exactly (image/* never matches image/jpeg):
    each accepted format's own type must be listed for its raw body to arrive base64-encoded."""
    from flask import Flask, request
    from PIL import Image
    from samcli.lib.providers.api_collector import ApiCollector
    from samcli.local.apigw.event_constructor import construct_v1_event

    from classifier.decode import ALLOWED_FORMATS

    api = TEMPLATE["Resources"]["PredictApi"]["Properties"]
    binary_types = [ApiCollector.normalize_binary_media_type(t) for t in api["BinaryMediaTypes"]]
    app = Flask(__name__)
    app.add_url_rule("/predict", endpoint="/predict", view_func=lambda: "", methods=["POST"])
    aliases = ["image/jpg", "image/pjpeg", "image/x-png", "image/x-ms-bmp"]  # what some clients send
    for content_type in [Image.MIME[image_format] for image_format in ALLOWED_FORMATS] + aliases:
        with app.test_request_context("/predict", method="POST", data=b"\xff\xd8\xff", headers={"Content-Type": content_type}):
            event = construct_v1_event(request, 3000, binary_types, stage_name="Prod")
        event = event.to_dict() if hasattr(event, "to_dict") else event
        assert event["isBase64Encoded"], content_type


def test_sam_local_resolves_the_templates_cors_switch():
    """CORS is an Fn::If on a parameter: sam local only resolves it with language extensions,
    which samconfig.toml turns on for `sam local invoke` and `sam local start-api`."""
    from samcli.lib.providers.api_provider import ApiProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    config = tomllib.loads((REPO / "samconfig.toml").read_text())["default"]
    for command in ("local_invoke", "local_start_api"):
        assert config[command]["parameters"]["language_extensions"] is True
    template = str(REPO / "template.yaml")
    stacks, _ = SamLocalStackProvider.get_stacks(
        template, parameter_overrides={"CorsAllowOrigin": "https://app.example.com"}, language_extensions_enabled=True
    )
    assert ApiProvider(stacks).api.cors.allow_origin == "https://app.example.com"
    stacks, _ = SamLocalStackProvider.get_stacks(template, language_extensions_enabled=True)
    assert ApiProvider(stacks).api.cors is None  # CORS off by default


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
