"""The "safe to expose" template parameters, checked on the template CloudFormation would deploy.

The template is translated offline the way CloudFormation does it: AWS::LanguageExtensions
first, then the SAM transform (aws-sam-translator). The template uses the language extensions
only to resolve Fn::If from parameter values (SAM cannot take Fn::If in Auth, Cors or
GatewayResponses); ``resolve_conditions`` below does exactly that and leaves every other
intrinsic for CloudFormation, as the hosted transform does. (SAM CLI's local implementation,
``samcli.lib.cfn_language_extensions``, is not used: in its partial mode it flattens
``!Sub "/aws/lambda/${PredictFunction}"`` into a literal string.) No AWS call is made: the
region is given, the managed-policy lookup is a stub.
"""

from __future__ import annotations

import copy
import json
import os
import re

import pytest
from samcli.yamlhelper import yaml_parse

from support import REPO

os.environ.setdefault("SAM_CLI_TELEMETRY", "0")  # samcli's event tracker: never phone home from tests

TEMPLATE_TEXT = (REPO / "template.yaml").read_text()
TEMPLATE = yaml_parse(TEMPLATE_TEXT)
PARAMETERS = TEMPLATE["Parameters"]
FAKE_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/image-classifier:latest"
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "image-classifier",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
NEW_PARAMETERS = (
    "RequireApiKey",
    "ApiKeyRateLimit",
    "ApiKeyBurstLimit",
    "ApiKeyDailyQuota",
    "StageRateLimit",
    "StageBurstLimit",
    "CorsAllowOrigin",
    "ReservedConcurrency",
    "LogRetentionDays",
    "MemorySize",
    "ApiAccessLogs",
    "PerIpRateLimit",
)
API_METHODS = {("/predict", "post"), ("/model", "get")}


MANAGED_POLICIES = {"AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}


NO_VALUE = {"Ref": "AWS::NoValue"}


def condition_value(expr, conditions: dict, values: dict):
    """Evaluate a CloudFormation condition expression (Equals/Not/And/Or/Condition, Ref to parameters)."""
    if isinstance(expr, dict) and len(expr) == 1:
        ((fn, arg),) = expr.items()
        if fn == "Ref":
            return str(values[arg])
        if fn == "Condition":
            return condition_value(conditions[arg], conditions, values)
        if fn == "Fn::Equals":
            left, right = (str(condition_value(a, conditions, values)) for a in arg)
            return left == right
        if fn == "Fn::Not":
            return not condition_value(arg[0], conditions, values)
        if fn == "Fn::And":
            return all(condition_value(a, conditions, values) for a in arg)
        if fn == "Fn::Or":
            return any(condition_value(a, conditions, values) for a in arg)
        raise AssertionError(f"unsupported in a condition: {fn}")
    return expr


def resolve_conditions(node, conditions: dict, values: dict):
    """Replace each Fn::If by its chosen branch and drop AWS::NoValue, leaving other intrinsics alone."""
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, when_true, when_false = node["Fn::If"]
            chosen = when_true if condition_value(conditions[name], conditions, values) else when_false
            return resolve_conditions(chosen, conditions, values)
        out = {}
        for key, value in node.items():
            value = resolve_conditions(value, conditions, values)
            if value != NO_VALUE:
                out[key] = value
        return out
    if isinstance(node, list):
        return [v for v in (resolve_conditions(v, conditions, values) for v in node) if v != NO_VALUE]
    return node


def translate(**overrides: str) -> dict:
    """The plain CloudFormation template for these parameter values (defaults for the rest)."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import to_py27_compatible_template, undo_mark_unicode_str_in_template

    unknown = set(overrides) - set(PARAMETERS)
    assert not unknown, unknown
    template = copy.deepcopy(TEMPLATE)
    # `sam build`/`sam deploy` fill in ImageUri for an image function; the transform requires one.
    template["Resources"]["PredictFunction"]["Properties"]["ImageUri"] = FAKE_IMAGE
    values = {name: str(p["Default"]) for name, p in PARAMETERS.items() if "Default" in p}
    values.update(overrides)
    values.update(PSEUDO)
    assert template["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
    sam_template = {
        **template,
        "Transform": "AWS::Serverless-2016-10-31",  # the language extensions run here:
        "Resources": resolve_conditions(template["Resources"], template["Conditions"], values),
        "Outputs": resolve_conditions(template["Outputs"], template["Conditions"], values),
    }
    # What samtranslator.translator.transform.transform does, with an offline region and no IAM lookups.
    to_py27_compatible_template(sam_template, values)
    session = boto3.session.Session(region_name=PSEUDO["AWS::Region"])  # no credentials, no calls
    translator = Translator(None, Parser(), boto_session=session)
    translated = translator.translate(sam_template, parameter_values=values, get_managed_policy_map=lambda: MANAGED_POLICIES)
    translated = undo_mark_unicode_str_in_template(translated)
    translated[VALUES_KEY] = values
    return translated


VALUES_KEY = "_parameter_values_used_by_the_test"


def value(stack: dict, node):
    """What CloudFormation makes of ``node`` at deploy time: a Ref to a parameter becomes its value."""
    values = stack[VALUES_KEY]
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return values[node["Ref"]]
    if isinstance(node, dict) and set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
        return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda m: str(values[m.group(1)]), node["Fn::Sub"])
    return node


def resources_of(template: dict, type_: str) -> dict:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def rest_api_body(template: dict) -> dict:
    (api,) = resources_of(template, "AWS::ApiGateway::RestApi").values()
    return api["Properties"]["Body"]


def methods(body: dict):
    for path, operations in body["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


@pytest.fixture(scope="module")
def default_stack():
    return translate()


@pytest.fixture(scope="module")
def keyed_stack():
    return translate(
        RequireApiKey="true", ApiKeyRateLimit="7", ApiKeyBurstLimit="14", ApiKeyDailyQuota="1234",
        CorsAllowOrigin="https://app.example.com", ReservedConcurrency="5", LogRetentionDays="7",
        StageRateLimit="11", StageBurstLimit="22",
    )


# --- the parameters themselves ---------------------------------------------------------


@pytest.mark.parametrize("name", NEW_PARAMETERS)
def test_parameter_is_documented_in_template_and_readme(name):
    parameter = PARAMETERS[name]
    assert "Default" in parameter and len(parameter.get("Description", "")) > 30, parameter
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Exposing the endpoint safely", 1)
    assert len(section) == 2, "README.md needs its 'Exposing the endpoint safely' section"
    assert f"`{name}`" in section[1].split("\n## ", 1)[0], f"{name} missing from README's section"


def test_defaults_are_the_documented_ones():
    defaults = {name: str(PARAMETERS[name]["Default"]) for name in NEW_PARAMETERS}
    assert defaults == {
        "RequireApiKey": "true",  # safe by default: an open endpoint downloads whatever strangers ask for
        "ApiKeyRateLimit": "5",
        "ApiKeyBurstLimit": "10",
        "ApiKeyDailyQuota": "10000",
        "StageRateLimit": "20",
        "StageBurstLimit": "40",
        "CorsAllowOrigin": "",
        "ReservedConcurrency": "0",
        "LogRetentionDays": "30",
        "MemorySize": "2048",
        "ApiAccessLogs": "false",  # a fresh account has no API Gateway CloudWatch role: the deploy would fail
        "PerIpRateLimit": "0",  # no WAF web ACL: it costs about $6 a month even idle
    }
    assert PARAMETERS["RequireApiKey"]["AllowedValues"] == ["true", "false"]


@pytest.mark.parametrize(
    "origin, ok",
    [
        ("", True),
        ("*", True),
        ("https://app.example.com", True),
        ("http://localhost:5173", True),
        ("https://a.example.com,https://b.example.com", False),  # one origin: the preflight answer is static
        ("app.example.com", False),
        ("https://x.example.com' ; x", False),  # would break out of the quoted header value
        # Browsers compare the serialized origin exactly: a trailing slash or a path never matches.
        ("https://app.example.com/", False),
        ("https://app.example.com/app", False),
        ("http://[::1]:8080", True),
        ("https://app.example.com:8443", True),
    ],
)
def test_cors_origin_pattern(origin, ok):
    # CloudFormation matches AllowedPattern against the whole value (Java regex; same syntax here).
    assert bool(re.fullmatch(PARAMETERS["CorsAllowOrigin"]["AllowedPattern"], origin)) is ok


def cold_start_accepts(env: dict[str, str]) -> bool:
    """Whether the function's cold start takes these settings (the handler builds both)."""
    from classifier.fetch import FetchPolicy
    from classifier.settings import Settings

    try:
        FetchPolicy.from_settings(Settings.from_env(env))
    except ValueError:
        return False
    return True


PARAMETER_VALUES = {
    ("AllowedHosts", "ALLOWED_HOSTS"): [
        "", "images.example.com", "images.example.com,*.cdn.example.com", "a.example.com, b.example.com",
        "bücher.example", "::1", "[2001:db8::1]", "img.example.com.",
        "https://images.example.com", "images.example.com:443", "images.example.com/path", "user@host.example",
        "a.example.com b.example.com", "*.", "[x]", "images", "images.", "*.example", "203.0.113.9", "*..",
    ],
    ("MaxDownloadBytes", "MAX_DOWNLOAD_BYTES"): ["1", "15728640", "0", "-1", "1.5", "1e7", " 5", "", "abc"],
    ("MaxImagePixels", "MAX_IMAGE_PIXELS"): ["1", "50000000", "0", "5e7", "2.5", "-3"],
}


@pytest.mark.parametrize("parameter, variable, value",
                         [(p, v, value) for (p, v), values in PARAMETER_VALUES.items() for value in values])
def test_nothing_the_template_allows_fails_the_cold_start(parameter, variable, value):
    """A value CloudFormation accepts but the code refuses deploys fine, then fails every
    request with 502: each pattern must refuse what the settings refuse."""
    allowed = bool(re.fullmatch(PARAMETERS[parameter]["AllowedPattern"], value))
    if allowed:
        assert cold_start_accepts({variable: value}), f"{parameter}={value!r} passes the template, fails the cold start"
    if value in (str(PARAMETERS[parameter]["Default"]), "images.example.com,*.cdn.example.com"):
        assert allowed, f"{parameter}={value!r} is the default or the documented example, and must pass"


@pytest.mark.parametrize("namespace, ok", [
    ("ImageClassifier", True), ("Team/Images", True), ("my app: prod #1", True), ("a" * 255, True),
    ("AWS/Lambda", False), ("My NS!{}", False), ("a" * 256, False), (" ", False), ("", False), ("ns\tx", False),
])
def test_metrics_namespace_pattern_is_cloudwatchs_and_the_cold_starts(namespace, ok, monkeypatch):
    """CloudWatch drops metrics under an invalid namespace without an error; the function fails its
    cold start instead (a namespace set outside the template), and the template refuses it first."""
    from classifier.observability import Telemetry

    assert bool(re.fullmatch(PARAMETERS["MetricsNamespace"]["AllowedPattern"], namespace)) is ok
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", namespace)
    if ok or not namespace.strip():  # empty or blank: the default namespace, as before
        assert Telemetry("m", "1", service="test-namespace").namespace == (namespace.strip() or "ImageClassifier")
    else:
        with pytest.raises(ValueError, match="POWERTOOLS_METRICS_NAMESPACE"):
            Telemetry("m", "1", service="test-namespace")


@pytest.mark.parametrize("service, ok", [
    ("image-classifier", True), ("svc_1.prod", True), ("a" * 128, True),
    (" ", False), ("-svc", False), ("my service", False), ("a" * 129, False), ("svc\n", False),
])
def test_service_name_pattern(service, ok):
    assert bool(re.fullmatch(PARAMETERS["ServiceName"]["AllowedPattern"], service)) is ok


# --- translated: defaults ----------------------------------------------------------------


def test_default_api_needs_a_key_with_a_usage_plan(default_stack):
    body = rest_api_body(default_stack)
    assert {(p, m) for p, m, _ in methods(body)} == API_METHODS  # no OPTIONS: CORS off
    assert all(op["security"] == [{"api_key": []}] for _, _, op in methods(body))
    for type_ in ("AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlanKey"):
        assert len(resources_of(default_stack, type_)) == 1, type_


def test_an_open_api_has_no_key_and_no_usage_plan():
    open_stack = translate(RequireApiKey="false")
    body = rest_api_body(open_stack)
    assert {(p, m) for p, m, _ in methods(body)} == API_METHODS
    for path, method, operation in methods(body):
        assert "security" not in operation, (path, method)
    assert "api_key" not in body.get("securityDefinitions", {})
    for type_ in ("AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlanKey"):
        assert not resources_of(open_stack, type_), type_


def test_default_function_is_unreserved_with_no_cors_origin(default_stack):
    props = default_stack["Resources"]["PredictFunction"]["Properties"]
    assert "ReservedConcurrentExecutions" not in props
    assert props["MemorySize"] == {"Ref": "MemorySize"}
    assert value(default_stack, props["Environment"]["Variables"]["CORS_ALLOW_ORIGIN"]) == ""


def test_default_stage_throttling_and_log_retention(default_stack):
    (stage,) = resources_of(default_stack, "AWS::ApiGateway::Stage").values()
    (setting,) = stage["Properties"]["MethodSettings"]
    assert setting["ResourcePath"] == "/*" and setting["HttpMethod"] == "*"
    assert int(value(default_stack, setting["ThrottlingRateLimit"])) == 20
    assert int(value(default_stack, setting["ThrottlingBurstLimit"])) == 40
    log_group = default_stack["Resources"]["PredictFunctionLogGroup"]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${PredictFunction}"}
    assert int(value(default_stack, log_group["Properties"]["RetentionInDays"])) == 30


def test_gateway_errors_use_the_function_error_shape(default_stack):
    import json

    responses = rest_api_body(default_stack)["x-amazon-apigateway-gateway-responses"]
    assert {"MISSING_AUTHENTICATION_TOKEN", "INVALID_API_KEY", "THROTTLED", "QUOTA_EXCEEDED",
            "INTEGRATION_TIMEOUT", "DEFAULT_5XX"} <= set(responses)
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"  # no route: not a 403 auth error
    assert responses["DEFAULT_5XX"]["statusCode"] == "502"
    for kind, response in responses.items():
        error = json.loads(response["responseTemplates"]["application/json"])["error"]
        assert set(error) == {"code", "message", "status"}
        assert str(error["status"]) == response["statusCode"], kind
        assert not response.get("responseParameters"), "no CORS header when CORS is off"


# --- translated: API key, CORS, concurrency, retention ---------------------------------------


def test_api_key_required_on_every_route_and_usage_plan_created(keyed_stack):
    body = rest_api_body(keyed_stack)
    assert body["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    for path, method, operation in methods(body):
        if method == "options":
            assert "security" not in operation, "a CORS preflight carries no key"
        else:
            assert operation["security"] == [{"api_key": []}], (path, method)
    assert {(p, m) for p, m, _ in methods(body) if m != "options"} == API_METHODS

    (plan,) = resources_of(keyed_stack, "AWS::ApiGateway::UsagePlan").values()
    props = plan["Properties"]
    assert props["ApiStages"] == [{"ApiId": {"Ref": "PredictApi"}, "Stage": {"Ref": "PredictApiProdStage"}}]
    assert float(props["Throttle"]["RateLimit"]) == 7 and int(props["Throttle"]["BurstLimit"]) == 14
    assert int(props["Quota"]["Limit"]) == 1234 and props["Quota"]["Period"] == "DAY"
    (key,) = resources_of(keyed_stack, "AWS::ApiGateway::ApiKey").values()
    assert key["Properties"]["Enabled"] is True
    (plan_key,) = resources_of(keyed_stack, "AWS::ApiGateway::UsagePlanKey").values()
    assert plan_key["Properties"]["KeyType"] == "API_KEY"


def test_cors_preflight_and_headers(keyed_stack):
    body = rest_api_body(keyed_stack)
    options = {p for p, m, _ in methods(body) if m == "options"}
    assert options == {"/predict", "/model"}
    for path in options:
        params = body["paths"][path]["options"]["x-amazon-apigateway-integration"]["responses"]["default"][
            "responseParameters"
        ]
        origin = value(keyed_stack, params["method.response.header.Access-Control-Allow-Origin"])
        assert origin == "'https://app.example.com'"
        assert "x-api-key" in params["method.response.header.Access-Control-Allow-Headers"].lower()
    for response in body["x-amazon-apigateway-gateway-responses"].values():
        (header,) = response["responseParameters"].items()
        assert header[0] == "gatewayresponse.header.Access-Control-Allow-Origin"
        assert value(keyed_stack, header[1]) == "'https://app.example.com'"
    variables = keyed_stack["Resources"]["PredictFunction"]["Properties"]["Environment"]["Variables"]
    assert value(keyed_stack, variables["CORS_ALLOW_ORIGIN"]) == "https://app.example.com"  # the function's own responses


def test_reserved_concurrency_stage_throttle_and_retention(keyed_stack):
    reserved = keyed_stack["Resources"]["PredictFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert int(value(keyed_stack, reserved)) == 5
    (stage,) = resources_of(keyed_stack, "AWS::ApiGateway::Stage").values()
    (setting,) = stage["Properties"]["MethodSettings"]
    assert int(value(keyed_stack, setting["ThrottlingRateLimit"])) == 11
    assert int(value(keyed_stack, setting["ThrottlingBurstLimit"])) == 22
    retention = keyed_stack["Resources"]["PredictFunctionLogGroup"]["Properties"]["RetentionInDays"]
    assert int(value(keyed_stack, retention)) == 7


def test_access_logs_are_off_by_default(default_stack):
    (stage,) = resources_of(default_stack, "AWS::ApiGateway::Stage").values()
    assert "AccessLogSetting" not in stage["Properties"]
    assert default_stack["Resources"]["PredictApiAccessLogGroup"]["Condition"] == "AccessLogsEnabled"


def test_access_logs_name_the_caller_and_never_the_body():
    stack = translate(ApiAccessLogs="true", LogRetentionDays="90")
    (stage,) = resources_of(stack, "AWS::ApiGateway::Stage").values()
    setting = stage["Properties"]["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["PredictApiAccessLogGroup", "Arn"]}
    fields = json.loads(setting["Format"])  # one JSON line per request
    assert {fields["ip"], fields["apiKeyId"], fields["status"]} == {
        "$context.identity.sourceIp", "$context.identity.apiKeyId", "$context.status"}
    assert not [v for v in fields.values() if "body" in v.lower() or "path" in v.lower() and "resourcePath" not in v]
    group = stack["Resources"]["PredictApiAccessLogGroup"]
    assert int(value(stack, group["Properties"]["RetentionInDays"])) == 90


@pytest.mark.parametrize("limit, ok", [("0", True), ("10", True), ("300", True), ("2000000000", True), ("5", False),
                                       ("9", False), ("2000000001", False), ("01", False), ("-1", False), ("", False)])
def test_per_ip_rate_limit_pattern_takes_only_what_waf_takes(limit, ok):
    # WAF's rate-based rule takes 10 to 2,000,000,000; a value it refuses would fail the deploy halfway.
    assert bool(re.fullmatch(PARAMETERS["PerIpRateLimit"]["AllowedPattern"], limit)) is ok


def test_per_ip_rate_limit_is_a_waf_rule_on_the_prod_stage_only_when_asked(default_stack):
    resources = ("PredictApiWebAcl", "PredictApiWebAclAssociation")
    conditions = TEMPLATE["Conditions"]
    assert [default_stack["Resources"][name]["Condition"] for name in resources] == ["PerIpRateLimited"] * 2
    assert not condition_value(conditions["PerIpRateLimited"], conditions, default_stack[VALUES_KEY])  # not deployed
    stack = translate(PerIpRateLimit="300")
    assert condition_value(conditions["PerIpRateLimited"], conditions, stack[VALUES_KEY])
    acl, association = (stack["Resources"][name]["Properties"] for name in resources)
    assert acl["Scope"] == "REGIONAL" and acl["DefaultAction"] == {"Allow": {}}
    (rule,) = acl["Rules"]
    statement = rule["Statement"]["RateBasedStatement"]
    assert statement["AggregateKeyType"] == "IP" and statement["EvaluationWindowSec"] == 300
    assert int(value(stack, statement["Limit"])) == 300
    response = rule["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    body = json.loads(acl["CustomResponseBodies"][response["CustomResponseBodyKey"]]["Content"])
    assert body["error"]["code"] == "rate_limited" and body["error"]["status"] == 429  # the function's error shape
    assert "ResponseHeaders" not in response  # CORS off
    cors = translate(PerIpRateLimit="300", CorsAllowOrigin="https://app.example.com")
    (header,) = cors["Resources"]["PredictApiWebAcl"]["Properties"]["Rules"][0]["Action"]["Block"]["CustomResponse"][
        "ResponseHeaders"]
    assert header["Name"] == "Access-Control-Allow-Origin" and value(cors, header["Value"]) == "https://app.example.com"
    # On this API's one stage (SAM resolves PredictApi.Stage to the stage resource, which CloudFormation then
    # creates first).
    (stage_id,) = resources_of(stack, "AWS::ApiGateway::Stage")
    assert association["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${PredictApi}/stages/${%s}" % stage_id}
    assert association["WebACLArn"] == {"Fn::GetAtt": ["PredictApiWebAcl", "Arn"]}


def test_the_function_may_only_write_its_own_log_group(default_stack):
    resources = default_stack["Resources"]
    assert resources["PredictFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["PredictFunctionRole", "Arn"]}
    roles = resources_of(default_stack, "AWS::IAM::Role")
    assert list(roles) == ["PredictFunctionRole"]  # SAM made none of its own
    role = roles["PredictFunctionRole"]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role  # no AWSLambdaBasicExecutionRole
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"} and statement["Action"] == "sts:AssumeRole"
    (policy,) = resources_of(default_stack, "AWS::IAM::Policy").values()
    assert policy["Properties"]["Roles"] == [{"Ref": "PredictFunctionRole"}]
    (grant,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert grant["Effect"] == "Allow" and sorted(grant["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert grant["Resource"] == {"Fn::GetAtt": ["PredictFunctionLogGroup", "Arn"]}  # that group's streams only
    group = resources["PredictFunctionLogGroup"]["Properties"]["LogGroupName"]
    assert group == {"Fn::Sub": "/aws/lambda/${PredictFunction}"}  # where Lambda writes the function's logs


def test_template_keeps_the_conditions_cloudformation_evaluates():
    conditions = TEMPLATE["Conditions"]
    assert conditions["ApiKeyRequired"] == {"Fn::Equals": [{"Ref": "RequireApiKey"}, "true"]}
    assert conditions["ConcurrencyReserved"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, 0]}]}
    assert conditions["CorsEnabled"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CorsAllowOrigin"}, ""]}]}
    assert conditions["AccessLogsEnabled"] == {"Fn::Equals": [{"Ref": "ApiAccessLogs"}, "true"]}
    assert conditions["PerIpRateLimited"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "PerIpRateLimit"}, "0"]}]}


# --- ModelVariant: which bundled model file the function serves ------------------------------


@pytest.mark.parametrize("variant, filename", [(None, "model.onnx"), ("fp32", "model.onnx"), ("int8", "model-int8.onnx")])
def test_model_variant_sets_model_path(variant, filename):
    assert PARAMETERS["ModelVariant"]["AllowedValues"] == ["fp32", "int8"]
    assert PARAMETERS["ModelVariant"]["Default"] == "fp32"
    stack = translate(**({"ModelVariant": variant} if variant else {}))
    variables = stack["Resources"]["PredictFunction"]["Properties"]["Environment"]["Variables"]
    path = value(stack, variables["MODEL_PATH"])
    assert path == f"/var/task/model/{filename}"
    # the Dockerfile copies predict_function/model/ to /var/task/model/: the file must be there
    assert (REPO / "predict_function" / "model" / filename).is_file()


@pytest.mark.parametrize("stack", ["default_stack", "keyed_stack"])
def test_one_stage_only(stack, request):
    """Without OpenApiVersion SAM also deploys a stage named "Stage" (through the Deployment's
    StageName): the same routes at a second URL, without the Prod stage's throttling."""
    template = request.getfixturevalue(stack)
    for deployment in resources_of(template, "AWS::ApiGateway::Deployment").values():
        assert "StageName" not in deployment["Properties"]
    (stage,) = resources_of(template, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["StageName"] == "Prod"
