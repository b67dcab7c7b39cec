import pytest
import yaml
from django.core.management import call_command

from chatrooms.api.views import IDEMPOTENCY_KEY_MAX_CHARS
from chatrooms.selectors import DETAIL_MESSAGES


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    target = tmp_path_factory.mktemp("schema") / "schema.yml"
    # --fail-on-warn: a view the generator cannot describe fails the suite.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    return yaml.safe_load(target.read_text())


def test_schema_generates_valid_with_no_warnings(schema):
    assert schema["openapi"].startswith("3.")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/auth/send-otp"),
        ("post", "/api/auth/verify-otp"),
        ("post", "/api/auth/signup"),
        ("post", "/api/auth/login"),
        ("post", "/api/auth/token/refresh"),
        ("post", "/api/auth/logout"),
        ("post", "/api/auth/forgot-password"),
        ("post", "/api/auth/reset-password"),
        ("post", "/api/auth/change-password"),
        ("get", "/api/user/me"),
        ("patch", "/api/user/me"),
        ("post", "/api/chatroom"),
        ("get", "/api/chatroom"),
        ("get", "/api/chatroom/{chatroom_id}"),
        ("patch", "/api/chatroom/{chatroom_id}"),
        ("delete", "/api/chatroom/{chatroom_id}"),
        ("get", "/api/chatroom/{chatroom_id}/messages"),
        ("post", "/api/chatroom/{chatroom_id}/message"),
        ("get", "/api/chatroom/{chatroom_id}/message/{message_id}"),
        ("get", "/api/chatroom/{chatroom_id}/message/{message_id}/stream"),
        ("post", "/api/chatroom/{chatroom_id}/message/{message_id}/cancel"),
        ("post", "/api/subscribe/pro"),
        ("get", "/api/subscription/status"),
        ("post", "/api/subscription/portal"),
        ("post", "/api/webhook/stripe"),
    ],
)
def test_every_contract_endpoint_is_documented_with_its_errors(schema, method, path):
    operation = schema["paths"][path][method]
    responses = operation["responses"]
    assert any(code.startswith("2") for code in responses)
    errors = [code for code in responses if code[0] in "45"]
    assert "500" in errors
    # Any endpoint answers 503 while the database is down, and says when to come back.
    assert "service_unavailable" in responses["503"]["description"]
    assert responses["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    for code in errors:
        content = responses[code].get("content", {}).get("application/json", {})
        assert content.get("schema", {}).get("$ref", "").endswith("/ErrorResponse"), (path, code)


PUBLIC = {
    ("post", "/api/auth/send-otp"),
    ("post", "/api/auth/verify-otp"),
    ("post", "/api/auth/signup"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/token/refresh"),
    ("post", "/api/auth/forgot-password"),
    ("post", "/api/auth/reset-password"),
    ("post", "/api/webhook/stripe"),
}


def test_every_authenticated_endpoint_documents_the_request_throttle(schema, settings):
    """The 429 rate_limited, with the rate the server runs with and Retry-After; public
    endpoints, which the throttle does not count, do not promise it."""
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/") or path.startswith("/api/schema"):
            continue
        for method, operation in operations.items():
            throttled = operation["responses"].get("429", {})
            if (method, path) in PUBLIC:
                assert "`rate_limited`" not in throttled.get("description", ""), (method, path)
                continue
            assert "`rate_limited`" in throttled["description"], (method, path)
            assert f"{settings.API_RATE_PER_MINUTE} requests" in throttled["description"]
            assert throttled["headers"]["Retry-After"]["schema"] == {"type": "integer"}


def test_the_chatroom_bounds_are_documented_with_their_settings(schema, settings):
    chatrooms = schema["paths"]["/api/chatroom"]
    create_409 = chatrooms["post"]["responses"]["409"]["description"]
    assert "chatroom_limit_reached" in create_409
    assert f"{settings.MAX_CHATROOMS_PER_USER} chatrooms" in create_409
    assert "invalid_cursor" in chatrooms["get"]["responses"]["400"]["description"]
    assert f"{settings.CHATROOM_LIST_CACHE_MAX_PAGES} pages" in chatrooms["get"]["description"]


def test_the_send_documents_its_numbers_from_settings(schema, settings):
    send = schema["paths"]["/api/chatroom/{chatroom_id}/message"]["post"]
    assert f"{settings.BASIC_DAILY_LIMIT} prompts" in send["responses"]["429"]["description"]
    assert f"{settings.REPLY_ABANDONED_AFTER_SECONDS} s" in send["responses"]["409"]["description"]
    key = next(p for p in send["parameters"] if p["name"] == "Idempotency-Key")
    assert f"Up to {IDEMPOTENCY_KEY_MAX_CHARS} characters" in key["description"]
    content = schema["components"]["schemas"]["MessageSendRequest"]["properties"]["content"]
    assert f"({settings.MESSAGE_MAX_CHARS})" in content["description"]
    detail = schema["components"]["schemas"]["ChatroomDetail"]["properties"]["messages"]
    assert f"newest {DETAIL_MESSAGES} messages" in detail["description"]


@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        ("post", "/api/subscribe/pro", {"201", "401", "409", "502", "503"}),
        ("post", "/api/subscription/portal", {"200", "401", "409", "502", "503"}),
        ("post", "/api/webhook/stripe", {"200", "400", "500", "503"}),
    ],
)
def test_billing_endpoints_name_the_contracts_answers(schema, method, path, codes):
    assert codes <= set(schema["paths"][path][method]["responses"])


@pytest.mark.parametrize(
    "path", ["/payment-success/stripe", "/payment-cancel/stripe", "/billing-portal-return/stripe"]
)
def test_the_payment_pages_are_documented_as_html(schema, path):
    responses = schema["paths"][path]["get"]["responses"]

    assert set(responses) == {"200"}
    assert set(responses["200"]["content"]) == {"text/html"}
