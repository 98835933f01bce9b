"""Reading the function's configuration from a SAM template with SAM CLI's providers."""

from __future__ import annotations

import platform
import textwrap
from pathlib import Path

import pytest

from local_lambda.template import TemplateError, function_environment, read_function

REPO = Path(__file__).resolve().parents[2]

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Architecture: {Type: String, Default: x86_64}
  TopK: {Type: Number, Default: 5}
Globals:
  Function:
    Timeout: 20
    MemorySize: 512
    Environment:
      Variables:
        FROM_GLOBALS: g
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: my-function
      PackageType: Image
      MemorySize: 1024
      Architectures: [!Ref Architecture]
      ImageConfig:
        Command: ["app.other_handler"]
      Environment:
        Variables:
          TOP_K: !Ref TopK
          STACK: !Sub "${AWS::StackName}-${AWS::Region}"
          FLAG: "false"
    Metadata:
      Dockerfile: Dockerfile.lambda
      DockerContext: ./fn
      DockerTag: v1
"""


@pytest.fixture
def template(tmp_path):
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(TEMPLATE))
    return path


def test_function_config(template, tmp_path):
    fn = read_function(template)
    assert fn.logical_id == "Fn" and fn.function_name == "my-function"
    assert fn.dockerfile == tmp_path / "fn" / "Dockerfile.lambda"
    assert fn.context == tmp_path / "fn"
    assert fn.memory_mb == 1024 and fn.timeout_s == 20  # Timeout from Globals
    assert fn.handler_override == "app.other_handler"
    assert {k: str(v) for k, v in fn.variables.items()} == {
        "FROM_GLOBALS": "g", "TOP_K": "5", "STACK": "local-us-east-1", "FLAG": "false"
    }


def test_parameter_overrides_and_architecture(template):
    fn = read_function(template, "Fn", parameter_overrides={"TopK": "3", "Architecture": "arm64"})
    assert fn.variables["TOP_K"] == "3"
    assert fn.architectures == ["arm64"]
    if platform.machine() == "x86_64":
        assert "arm64 in the template" in fn.architecture_warning()


def test_env_vars_precedence_like_sam_local(template):
    fn = read_function(template)
    env, warnings = function_environment(
        fn,
        "app.other_handler",
        {"Parameters": {"FLAG": "param", "TOP_K": "7"}, "Fn": {"FLAG": "true", "UNDECLARED": "x"}},
        shell_env={"STACK": "from-shell", "PATH": "/nowhere"},
    )
    assert env["FLAG"] == "true"  # the function's entry beats Parameters
    assert env["TOP_K"] == "7"  # Parameters apply to every function
    assert env["STACK"] == "from-shell"  # the shell beats the template for declared variables
    assert "UNDECLARED" not in env and "PATH" not in env
    assert any("UNDECLARED" in w for w in warnings)
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "Fn"
    assert env["AWS_LAMBDA_FUNCTION_HANDLER"] == "app.other_handler"
    assert env["AWS_ACCESS_KEY_ID"] == "defaultkey"  # never the user's credentials
    by_name, _ = function_environment(fn, "h", {"my-function": {"FLAG": "by-name"}}, shell_env={})
    assert by_name["FLAG"] == "by-name"


def test_unknown_function(template):
    with pytest.raises(TemplateError, match="Image functions: Fn"):
        read_function(template, "Nope")


def test_project_template():
    fn = read_function(REPO / "template.yaml")
    assert fn.logical_id == "PredictFunction"
    assert fn.dockerfile == REPO / "predict_function" / "Dockerfile"
    assert fn.timeout_s < 29  # below API Gateway's integration timeout
    env, _ = function_environment(fn, "classifier.handler.lambda_handler", {}, shell_env={})
    assert set(fn.variables) <= set(env)


def test_language_extensions_are_applied_like_sam_local(tmp_path):
    """samconfig.toml sets language_extensions for sam local: Fn::Length / Fn::ToJsonString (and the Fn::If in
    the project's Cors) must be resolved, not left as raw intrinsics."""
    template = tmp_path / "template.yaml"
    template.write_text(textwrap.dedent("""
        AWSTemplateFormatVersion: "2010-09-09"
        Transform: [AWS::LanguageExtensions, AWS::Serverless-2016-10-31]
        Parameters:
          Hosts: {Type: CommaDelimitedList, Default: "a.example.com,b.example.com"}
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              PackageType: Image
              Environment:
                Variables:
                  HOST_COUNT: {"Fn::Length": {"Ref": Hosts}}
                  CONFIG: {"Fn::ToJsonString": {"hosts": {"Ref": Hosts}}}
            Metadata: {Dockerfile: Dockerfile, DockerContext: ., DockerTag: v1}
    """))
    fn = read_function(template)
    assert fn.variables == {"HOST_COUNT": 2, "CONFIG": '{"hosts":["a.example.com","b.example.com"]}'}
    assert read_function(template, parameter_overrides={"Hosts": "x.com"}).variables["HOST_COUNT"] == 1


@pytest.mark.parametrize("origin", ["", "https://app.example.com"])
def test_project_cors_follows_the_parameter(origin):
    from local_lambda.apigw import build_api
    from local_lambda.template import load_stacks

    api = build_api(load_stacks(REPO / "template.yaml", {"CorsAllowOrigin": origin}), cwd=str(REPO))
    methods = {route.path: set(route.methods) for route in api.routes}
    if origin:
        assert api.cors.allow_origin == origin and api.cors.allow_headers == "Content-Type,X-Api-Key"
        assert api.cors.max_age == "600" and methods == {"/predict": {"POST", "OPTIONS"}, "/model": {"GET", "OPTIONS"}}
    else:  # empty: no CORS at all, no OPTIONS routes
        assert api.cors is None and methods == {"/predict": {"POST"}, "/model": {"GET"}}
