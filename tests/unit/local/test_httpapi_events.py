"""The local HTTP API's payload 2.0 event, against the sample AWS publishes, and its response mapping."""

from __future__ import annotations

import base64
import copy

from loupe_local.standins.httpapi.events import HttpRequest, RouteMatch, build_event, response_of

# The "Lambda function input format 2.0" sample of the API Gateway Developer Guide, "Create AWS Lambda proxy
# integrations for HTTP APIs" (apigateway/latest/developerguide/http-api-develop-integrations-lambda.html).
AWS_SAMPLE = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/my/path",
    "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
    "cookies": ["cookie1", "cookie2"],
    "headers": {"header1": "value1", "header2": "value1,value2"},
    "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "api-id",
        "authentication": {
            "clientCert": {
                "clientCertPem": "CERT_CONTENT",
                "subjectDN": "www.example.com",
                "issuerDN": "Example issuer",
                "serialNumber": "a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1",
                "validity": {"notBefore": "May 28 12:30:02 2019 GMT", "notAfter": "Aug  5 09:36:04 2021 GMT"},
            }
        },
        "authorizer": {"jwt": {"claims": {"claim1": "value1", "claim2": "value2"}, "scopes": ["scope1", "scope2"]}},
        "domainName": "id.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "id",
        "http": {
            "method": "POST",
            "path": "/my/path",
            "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.1",
            "userAgent": "agent",
        },
        "requestId": "id",
        "routeKey": "$default",
        "stage": "$default",
        "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390,
    },
    "body": "Hello from Lambda",
    "pathParameters": {"parameter1": "value1"},
    "isBase64Encoded": False,
    "stageVariables": {"stageVariable1": "value1", "stageVariable2": "value2"},
}


def _sample_request() -> HttpRequest:
    return HttpRequest(
        method="POST",
        path="/my/path",
        raw_query="parameter1=value1&parameter1=value2&parameter2=value",
        headers=[
            ("Header1", "value1"),
            ("Header2", "value1"),
            ("Header2", "value2"),
            ("Cookie", "cookie1; cookie2"),
            ("User-Agent", "agent"),
        ],
        body=b"Hello from Lambda",
        source_ip="192.0.2.1",
    )


def test_the_event_matches_the_aws_sample() -> None:
    event = build_event(
        _sample_request(),
        RouteMatch("$default", {"parameter1": "value1"}),
        api_id="api-id",
        account_id="123456789012",
        region="us-east-1",
        claims={"claim1": "value1", "claim2": "value2"},
        scopes=["scope1", "scope2"],
        now=1583348638.390,
    )
    expected = copy.deepcopy(AWS_SAMPLE)
    # what the sample has and a local request cannot: a client certificate (mutual TLS only), stage variables
    # (the stack sets none), AWS's request id. The sample also disagrees with itself: its domain names an API id
    # other than its apiId, and its timeEpoch is 4 March while its time says 12 March: those are checked by form.
    del expected["requestContext"]["authentication"], expected["stageVariables"]
    for key in ("requestId", "domainName", "domainPrefix", "time"):
        expected["requestContext"].pop(key)
    got = copy.deepcopy(event)
    context = got["requestContext"]
    assert context.pop("domainName") == "api-id.execute-api.us-east-1.amazonaws.com"
    assert context.pop("domainPrefix") == "api-id"
    assert context.pop("requestId")
    assert context.pop("time") == "04/Mar/2020:19:03:58 +0000"  # the sample's form, of the sample's timeEpoch
    # the user-agent header is in the event like any header (the sample shows only its copy in http.userAgent)
    assert got["headers"].pop("user-agent") == "agent"
    assert got == expected


def test_claims_are_strings_and_a_binary_body_is_base64() -> None:
    request = HttpRequest("PUT", "/x", "", [("Content-Type", "image/png")], b"\x89PNG\x00\xff")
    event = build_event(
        request,
        RouteMatch("PUT /x"),
        api_id="a",
        account_id="123456789012",
        region="us-east-1",
        claims={"cognito:groups": ["labelers", "approvers"], "exp": 1700000000, "email_verified": True},
        scopes=None,
    )
    assert event["requestContext"]["authorizer"]["jwt"] == {
        "claims": {"cognito:groups": "[labelers approvers]", "exp": "1700000000", "email_verified": "true"},
        "scopes": None,
    }
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x89PNG\x00\xff"
    assert "pathParameters" not in event and "queryStringParameters" not in event and "cookies" not in event


def test_a_function_answer_becomes_the_http_response() -> None:
    # no statusCode: a 200 JSON body of the whole answer
    assert response_of({"a": 1}) == (200, [("content-type", "application/json")], b'{"a": 1}')
    status, headers, body = response_of(
        {
            "statusCode": 201,
            "headers": {"x-one": "1"},
            "cookies": ["s=1; Secure"],
            "body": base64.b64encode(b"\x00\x01").decode(),
            "isBase64Encoded": True,
        }
    )
    assert (status, body) == (201, b"\x00\x01")
    assert ("x-one", "1") in headers and ("set-cookie", "s=1; Secure") in headers
