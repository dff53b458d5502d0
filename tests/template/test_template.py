"""What template.yaml deploys in each of its shapes, checked on paper (no AWS account is at hand).

The template is evaluated for a set of parameter values: its conditions, `Fn::If` and
`AWS::NoValue` resolved, `Globals` merged into each function, as CloudFormation and SAM would. The
shapes: AWS with every default (the template creates the VPC, broker, database and key), AWS with
an existing Amazon MQ broker and database, and LocalStack (what `scripts/up` deploys).
"""

import copy
import re
from pathlib import Path

import pytest
from cfnlint.decode.cfn_yaml import load

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load(str(ROOT / "template.yaml"))
NO_VALUE = object()

AWS_DEFAULTS = {"SmtpHost": "email-smtp.us-east-1.amazonaws.com", "MailFrom": "alerts@example.com",
                "AlertRecipients": "ops@example.com"}
EXISTING = {**AWS_DEFAULTS,
            "VpcId": "vpc-0123456789abcdef0", "PrivateSubnetIds": "subnet-0a,subnet-0b",
            "DatabaseUrl": "postgres://db.internal:5432/eventstream?sslmode=verify-full",
            "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
            "AmqpUrl": "amqps://b-1234.mq.us-east-1.amazonaws.com:5671",
            "AmqpSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:mq-AbCdEf",
            "AmazonMqBrokerArn": "arn:aws:mq:us-east-1:123456789012:broker:ours:b-1234",
            "SmtpSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:smtp-AbCdEf"}
LOCALSTACK = {"Target": "localstack", "Tracing": "PassThrough",
              "DatabaseUrl": "postgres://eventstream:pw@127.0.0.1:5432/eventstream",
              "AmqpUrl": "amqp://guest:guest@127.0.0.1:5672/%2f", "JwtSecret": "x" * 48,
              "SmtpHost": "127.0.0.1", "SmtpPort": "1025", "SmtpTls": "none",
              "MailFrom": "eventstream@localhost.test", "AlertRecipients": "ops@localhost.test"}


class Stack:
    """The template as deployed with `given` parameter values."""

    def __init__(self, given: dict):
        self.parameters = {}
        for name, spec in TEMPLATE["Parameters"].items():
            value = str(given.get(name, spec.get("Default", "")))
            self.parameters[name] = value.split(",") if spec["Type"] == "CommaDelimitedList" else value
        self.conditions = {}
        for name in TEMPLATE["Conditions"]:
            self.condition(name)
        globals_ = TEMPLATE["Globals"]["Function"]
        self.resources = {}
        for logical_id, resource in TEMPLATE["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            resource = copy.deepcopy(resource)
            if resource["Type"] == "AWS::Serverless::Function":
                merged = copy.deepcopy(globals_)
                variables = merged["Environment"]["Variables"]
                variables.update(resource["Properties"].get("Environment", {}).get("Variables", {}))
                merged.update({k: v for k, v in resource["Properties"].items() if k != "Environment"})
                resource["Properties"] = merged
            self.resources[logical_id] = self.resolve(resource)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = self.truth(TEMPLATE["Conditions"][name])
        return self.conditions[name]

    def truth(self, expression) -> bool:
        (function, arguments), = expression.items()
        if function == "Condition":
            return self.condition(arguments)
        if function == "Fn::Equals":
            left, right = (self.resolve(argument) for argument in arguments)
            return left == right
        if function == "Fn::Not":
            return not self.truth(arguments[0])
        if function == "Fn::And":
            return all(self.truth(argument) for argument in arguments)
        if function == "Fn::Or":
            return any(self.truth(argument) for argument in arguments)
        raise AssertionError(f"unexpected function {function} in a condition")

    def resolve(self, value):
        """Resolves conditions and parameter references; other intrinsics are kept as they are."""
        if isinstance(value, list):
            return [item for item in (self.resolve(item) for item in value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if list(value) == ["Fn::If"]:
            name, then, otherwise = value["Fn::If"]
            return self.resolve(then if self.condition(name) else otherwise)
        if list(value) == ["Ref"]:
            if value["Ref"] == "AWS::NoValue":
                return NO_VALUE
            if value["Ref"] in self.parameters:
                return self.parameters[value["Ref"]]
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def of_type(self, kind: str) -> dict:
        return {logical_id: r for logical_id, r in self.resources.items() if r["Type"] == kind}

    def functions(self) -> dict:
        return self.of_type("AWS::Serverless::Function")

    def secret_readers(self, function: dict) -> list:
        """What the function's policies let it read from Secrets Manager."""
        readable = []
        for policy in function["Properties"].get("Policies", []):
            if isinstance(policy, dict) and list(policy) == ["Ref"] and policy["Ref"] in self.resources:
                for statement in self.resources[policy["Ref"]]["Properties"]["PolicyDocument"]["Statement"]:
                    if "secretsmanager:GetSecretValue" in statement["Action"]:
                        readable.append(statement["Resource"])
            elif isinstance(policy, dict) and "AWSSecretsManagerGetSecretValuePolicy" in policy:
                readable.append(policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"])
        return readable


def environment(function: dict) -> dict:
    return function["Properties"]["Environment"]["Variables"]


@pytest.fixture(scope="module", params=["defaults", "existing"])
def aws(request):
    return Stack(AWS_DEFAULTS if request.param == "defaults" else EXISTING)


def test_in_aws_no_function_holds_a_secret_in_its_environment(aws):
    for name, function in aws.functions().items():
        variables = environment(function)
        for forbidden in ("JWT_SECRET", "SMTP_PASSWORD", "SMTP_USERNAME"):
            assert forbidden not in variables, f"{name} has {forbidden} in its environment"
        for url in ("DATABASE_URL", "AMQP_URL"):
            text = str(variables.get(url, ""))
            assert not re.search(r"://[^/@]*:[^/@]*@", text), f"{name}'s {url} holds a password"


def test_in_aws_each_function_may_read_exactly_the_secrets_it_is_told_to_read(aws):
    for name, function in aws.functions().items():
        arns = [value for key, value in environment(function).items() if key.endswith("_SECRET_ARN")]
        readable = aws.secret_readers(function)
        for arn in arns:
            assert arn in readable, f"{name} is given {arn} but may not read it"
        unused = [arn for arn in readable if arn not in arns and name != "BridgeFunction"]
        assert not unused, f"{name} may read secrets it is not given: {unused}"
    api_functions = ["IngestFunction", "LoginFunction", "GraphqlFunction"]
    for name in api_functions:
        assert "JWT_SECRET_ARN" in environment(aws.resources[name]), f"{name} has no signing key"


def test_in_aws_every_function_runs_in_private_subnets_and_nothing_is_public(aws):
    for name, function in aws.functions().items():
        vpc = function["Properties"].get("VpcConfig")
        assert vpc and vpc["SubnetIds"] and vpc["SecurityGroupIds"], f"{name} is outside the VPC"
    broker = load(str(ROOT / "aws" / "broker.yaml"))["Resources"]["Broker"]["Properties"]
    assert broker["PubliclyAccessible"] is False
    for name, instance in aws.of_type("AWS::RDS::DBInstance").items():
        assert instance["Properties"]["PubliclyAccessible"] is False
    for name, group in aws.of_type("AWS::EC2::SecurityGroup").items():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert "CidrIp" not in rule, f"{name} lets in {rule['CidrIp']}"


def test_the_default_deployment_creates_what_is_missing():
    stack = Stack(AWS_DEFAULTS)
    for logical_id in ("Vpc", "NatGateway", "Broker", "DatabaseCluster", "DatabaseProxy",
                       "JwtSigningKey", "BridgeFunction", "WarningQueueEventSource", "ErrorQueueEventSource",
                       "DispatchQueueEventSource", "Migrations", "AlarmTopic", "Dashboard"):
        assert logical_id in stack.resources, f"{logical_id} is not created"
    database_url = environment(stack.resources["IngestFunction"])["DATABASE_URL"]
    assert "sslmode=verify-full" in database_url["Fn::Sub"] and "DatabaseProxy.Endpoint" in database_url["Fn::Sub"]
    assert environment(stack.resources["IngestFunction"])["DATABASE_SECRET_ARN"] == {
        "Fn::GetAtt": ["DatabaseCluster", "MasterUserSecret.SecretArn"]}


def test_an_existing_broker_and_database_are_used_not_created():
    stack = Stack(EXISTING)
    for logical_id in ("Vpc", "Broker", "DatabaseCluster", "DatabaseProxy"):
        assert logical_id not in stack.resources, f"{logical_id} is created though one was given"
    for mapping in ("DispatchQueueEventSource", "WarningQueueEventSource", "ErrorQueueEventSource"):
        properties = stack.resources[mapping]["Properties"]
        assert properties["EventSourceArn"] == EXISTING["AmazonMqBrokerArn"]
        assert properties["SourceAccessConfigurations"][0] == {"Type": "BASIC_AUTH", "URI": EXISTING["AmqpSecretArn"]}
    dispatch = environment(stack.resources["DispatchFunction"])
    assert dispatch["AMQP_URL"] == EXISTING["AmqpUrl"] and dispatch["AMQP_SECRET_ARN"] == EXISTING["AmqpSecretArn"]
    assert environment(stack.resources["ErrorHandlerFunction"])["SMTP_SECRET_ARN"] == EXISTING["SmtpSecretArn"]
    assert stack.resources["IngestFunction"]["Properties"]["VpcConfig"]["SubnetIds"] == ["subnet-0a", "subnet-0b"]


def test_on_localstack_only_what_it_can_run_is_deployed():
    stack = Stack(LOCALSTACK)
    aws_only = [logical_id for logical_id, resource in stack.resources.items()
                if resource["Type"].split("::")[1] in ("EC2", "RDS", "AmazonMQ", "CloudWatch", "SNS", "CloudFormation")
                or resource["Type"].startswith("Custom::")]
    assert not aws_only, f"LocalStack would be asked for {aws_only}"
    assert "BridgeFunction" not in stack.resources, "without Amazon MQ the bridge process does its work"
    for name, function in stack.functions().items():
        assert "VpcConfig" not in function["Properties"], f"{name} asks for a VPC"
        assert function["Properties"]["Tracing"] == "PassThrough"
    ingest = environment(stack.resources["IngestFunction"])
    assert ingest["DATABASE_URL"] == LOCALSTACK["DatabaseUrl"] and ingest["JWT_SECRET"] == LOCALSTACK["JwtSecret"]
    assert "JWT_SECRET_ARN" not in ingest and "DATABASE_SECRET_ARN" not in ingest


def test_every_alarm_tells_the_topic_when_it_fires_and_when_it_clears(aws):
    alarms = aws.of_type("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 8
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["Properties"]["OKActions"] == [{"Ref": "AlarmTopic"}], name


def test_the_alarms_and_the_dashboard_use_the_metrics_the_functions_emit():
    """Each metric of the stack's own namespace must be one the library writes (functions/*/src)."""
    stack = Stack(AWS_DEFAULTS)
    names = set()
    for alarm in stack.of_type("AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        if "EventStream/" in str(properties.get("Namespace", "")):
            names.add(properties["MetricName"])
        for metric in properties.get("Metrics", []):
            stat = metric.get("MetricStat", {}).get("Metric", {})
            if "EventStream/" in str(stat.get("Namespace", "")):
                names.add(stat["MetricName"])
    body = stack.resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
    names |= set(re.findall(r'\["\$\{Namespace\}", "(\w+)"', body))
    assert len(names) >= 10, names
    source = "\n".join(path.read_text() for path in (ROOT / "functions").glob("*/src/**/*.rs"))
    missing = sorted(name for name in names if f'"{name}"' not in source)
    assert not missing, f"the template watches metrics no function emits: {missing}"
