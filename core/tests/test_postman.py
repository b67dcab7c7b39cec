"""The Postman collection for client developers stays complete, valid and runnable.

The static tests check the files (every schema route has a request, every variable is
defined...). The last tests run the collection exactly as a newcomer would from a terminal:
newman, pinned in package.json, sends every request in order to a live server (the Procfile's
web process and a real Celery worker, on the test database, with the local Gemini and Stripe
stand-ins), so the scripts' `pm.test` assertions and the variables they chain are checked
against real answers: Send OTP → Verify OTP → Create chatroom → Send message → Get reply.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from drf_spectacular.generators import SchemaGenerator

from billing.services import pro_price_ensure
from testing.e2e import Stack, process_env
from testing.fake_gemini import FakeGemini
from testing.fake_stripe import FakeStripe

POSTMAN_DIR = Path(__file__).resolve().parents[2] / "postman"
COLLECTION_PATH = POSTMAN_DIR / "gemini-clone.postman_collection.json"
ENVIRONMENT_PATH = POSTMAN_DIR / "local.postman_environment.json"
SCHEMA_V21 = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"

# Every endpoint of the API contract, routed yet or not (the schema only lists routed ones).
CONTRACT_ENDPOINTS = {
    ("POST", "/api/auth/send-otp"),
    ("POST", "/api/auth/verify-otp"),
    ("POST", "/api/auth/signup"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/token/refresh"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/forgot-password"),
    ("POST", "/api/auth/reset-password"),
    ("POST", "/api/auth/change-password"),
    ("GET", "/api/user/me"),
    ("PATCH", "/api/user/me"),
    ("POST", "/api/chatroom"),
    ("GET", "/api/chatroom"),
    ("GET", "/api/chatroom/{}"),
    ("PATCH", "/api/chatroom/{}"),
    ("DELETE", "/api/chatroom/{}"),
    ("GET", "/api/chatroom/{}/messages"),
    ("POST", "/api/chatroom/{}/message"),
    ("GET", "/api/chatroom/{}/message/{}"),
    ("GET", "/api/chatroom/{}/message/{}/stream"),
    ("POST", "/api/chatroom/{}/message/{}/cancel"),
    ("POST", "/api/subscribe/pro"),
    ("GET", "/api/subscription/status"),
    ("POST", "/api/subscription/portal"),
    ("POST", "/api/webhook/stripe"),
    ("GET", "/payment-success/stripe"),
    ("GET", "/payment-cancel/stripe"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/schema/"),
}
PUBLIC_ENDPOINTS = {
    ("POST", "/api/auth/send-otp"),
    ("POST", "/api/auth/verify-otp"),
    ("POST", "/api/auth/signup"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/token/refresh"),
    ("POST", "/api/auth/forgot-password"),
    ("POST", "/api/auth/reset-password"),
    ("POST", "/api/webhook/stripe"),
    ("GET", "/payment-success/stripe"),
    ("GET", "/payment-cancel/stripe"),
    ("GET", "/billing-portal-return/stripe"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/schema/"),
    ("GET", "/api/docs/"),
}
# What the scripts must store for the next requests: variable -> the requests storing it.
CHAINED = {
    "otp": ["Send OTP", "Forgot password"],
    "access": ["Verify OTP", "Log in with password", "Change password", "Refresh token"],
    "refresh": ["Verify OTP", "Log in with password", "Change password", "Refresh token"],
    "chatroom_id": ["Create chatroom"],
    "message_id": ["Send message"],
    "reply_id": ["Send message"],
    "checkout_session_id": ["Subscribe to Pro"],
    "checkout_url": ["Subscribe to Pro"],
}
ENVIRONMENT_VARIABLES = {
    "base_url",
    "phone",
    "otp",
    "access",
    "refresh",
    "chatroom_id",
    "message_id",
    "reply_id",
    "new_password",
    "checkout_session_id",
    "checkout_url",
    "stripe_webhook_secret",
}
# Values a newcomer's environment starts with; everything else is filled in by a run.
ENVIRONMENT_DEFAULTS = {"base_url", "phone", "new_password"}

LISTENS = ("prerequest", "test")
_VARIABLE = re.compile(r"\{\{([^{}]+)\}\}")
_SETS_VARIABLE = re.compile(r"""pm\.(?:environment|variables)\.set\(\s*["']([\w$]+)["']""")


@dataclass(frozen=True)
class PostmanRequest:
    folder: str
    name: str
    item: dict[str, Any]
    auth: dict[str, Any]  # the effective auth: the request's own or the inherited one

    @property
    def request(self) -> dict[str, Any]:
        return self.item["request"]

    @property
    def method(self) -> str:
        return str(self.request["method"]).upper()

    @property
    def endpoint(self) -> tuple[str, str]:
        return self.method, normalise_path(self.request["url"]["raw"])

    def script(self, listen: str) -> str:
        for event in self.item.get("event", []):
            if event["listen"] == listen:
                return "\n".join(event["script"]["exec"])
        return ""


def normalise_path(path: str) -> str:
    """`{{base_url}}/api/chatroom/{{chatroom_id}}?x=1` and `/api/chatroom/{chatroom_id}`
    both become `/api/chatroom/{}`."""
    path = path.removeprefix("{{base_url}}").split("?", 1)[0]
    return re.sub(r"\{\{[^{}]+\}\}|\{[^{}]+\}", "{}", path)


def load_collection() -> dict[str, Any]:
    return json.loads(COLLECTION_PATH.read_text())


def load_environment() -> dict[str, Any]:
    return json.loads(ENVIRONMENT_PATH.read_text())


def collection_requests(collection: dict[str, Any]) -> list[PostmanRequest]:
    """Every request in the order the Collection Runner sends them."""
    found: list[PostmanRequest] = []

    def walk(items: list[dict[str, Any]], folder: str, auth: dict[str, Any]) -> None:
        for item in items:
            if "item" in item:
                walk(item["item"], item["name"], item.get("auth") or auth)
            else:
                own_auth = item["request"].get("auth") or auth
                found.append(PostmanRequest(folder, item["name"], item, own_auth))

    walk(collection["item"], "", collection.get("auth") or {"type": "noauth"})
    return found


def environment_values(environment: dict[str, Any]) -> dict[str, Any]:
    return {value["key"]: value["value"] for value in environment["values"] if value["enabled"]}


def schema_endpoints() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (method.upper(), normalise_path(path))
        for path, operations in schema["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }


# --- The files ----------------------------------------------------------------------------


def test_the_collection_is_a_postman_v2_1_collection_with_bearer_auth():
    collection = load_collection()

    assert collection["info"]["schema"] == SCHEMA_V21
    assert collection["info"]["name"]
    assert collection["auth"] == {
        "type": "bearer",
        "bearer": [{"key": "token", "value": "{{access}}", "type": "string"}],
    }
    requests = collection_requests(collection)
    names = [request.name for request in requests]
    assert len(names) == len(set(names)), "request names must be unique"
    folders = [item["name"] for item in collection["item"]]
    assert folders == [
        "Auth and account",
        "Chatrooms and messages",
        "Subscription",
        "Operations",
        "Leaving (destructive: run last)",
    ]
    for request in requests:
        assert request.request["url"]["raw"].startswith("{{base_url}}/"), request.name
        assert request.request["description"].strip(), f"{request.name} has no description"


def test_the_environment_defines_every_variable_the_collection_uses():
    environment = load_environment()
    values = environment_values(environment)

    assert environment["_postman_variable_scope"] == "environment"
    assert set(values) >= ENVIRONMENT_VARIABLES
    assert values["base_url"] == "http://127.0.0.1:8000"
    assert values["phone"] == "+919812300042"  # a phone of its own: no other test uses it
    assert values["new_password"]
    filled_by_a_run = set(values) - ENVIRONMENT_DEFAULTS
    assert {key: values[key] for key in filled_by_a_run if values[key]} == {}

    collection_text = COLLECTION_PATH.read_text()
    used = {name for name in _VARIABLE.findall(collection_text) if not name.startswith("$")}
    scripts = [
        r.script(listen) for r in collection_requests(load_collection()) for listen in LISTENS
    ]
    set_by_scripts = {name for script in scripts for name in _SETS_VARIABLE.findall(script)}
    assert used - set(values) - set_by_scripts == set()


def test_every_operation_of_the_openapi_schema_has_a_request():
    in_collection = {request.endpoint for request in collection_requests(load_collection())}

    missing = schema_endpoints() - in_collection
    assert not missing, f"add these endpoints to {COLLECTION_PATH.name}: {sorted(missing)}"


def test_every_endpoint_of_the_contract_has_a_request():
    in_collection = {request.endpoint for request in collection_requests(load_collection())}

    assert CONTRACT_ENDPOINTS - in_collection == set()


def test_public_endpoints_send_no_token_and_the_others_inherit_the_bearer():
    for request in collection_requests(load_collection()):
        if request.endpoint in PUBLIC_ENDPOINTS:
            assert request.request.get("auth") == {"type": "noauth"}, request.name
        else:
            assert "auth" not in request.request, request.name
            assert request.auth["type"] == "bearer", request.name


def test_every_request_with_a_body_sends_json():
    with_body = [r for r in collection_requests(load_collection()) if r.request.get("body")]

    assert with_body
    for request in with_body:
        headers = {h["key"].lower(): h["value"] for h in request.request["header"]}
        assert headers.get("content-type") == "application/json", request.name
        body = request.request["body"]
        assert body["mode"] == "raw", request.name
        assert body["options"]["raw"]["language"] == "json", request.name
        assert isinstance(json.loads(body["raw"]), dict), request.name


def test_scripts_assert_the_status_and_store_what_the_next_requests_need():
    requests = {request.name: request for request in collection_requests(load_collection())}

    for request in requests.values():
        script = request.script("test")
        assert "pm.test(" in script, f"{request.name} has no test script"
        assert "pm.response.to.have.status(" in script or "pm.response.code" in script
    for variable, storers in CHAINED.items():
        for name in storers:
            assert f'pm.environment.set("{variable}"' in requests[name].script("test"), name
    send_headers = {h["key"]: h["value"] for h in requests["Send message"].request["header"]}
    assert send_headers["Idempotency-Key"] == "{{$guid}}"


# --- Running it with newman ----------------------------------------------------------------

ROOT = POSTMAN_DIR.parent
NEWMAN = ROOT / "node_modules" / ".bin" / "newman"
NPM_LOCKFILE = ROOT / "package-lock.json"
NPM_CI = ["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]
NEWMAN_TIMEOUT_SECONDS = 180


def _unavailable(reason: str) -> NoReturn:
    """Skip where Node.js is missing; in CI (CI=true) the collection must run: fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true, so this is a failure, not a skip")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def newman() -> Path:
    """newman as package-lock.json pins it, installed with `npm ci` when it is missing or
    older than the lock (a fresh clone, or a lock changed by a pull)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _unavailable("needs Node.js and npm to run the Postman collection with newman")
    # lstat: the link's own time is when npm installed it (package files carry npm's 1985).
    if not NEWMAN.exists() or NEWMAN.lstat().st_mtime < NPM_LOCKFILE.stat().st_mtime:
        installed = subprocess.run(
            NPM_CI, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
        )
        assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}{installed.stderr}"
    assert NEWMAN.exists(), f"npm ci installed no {NEWMAN.relative_to(ROOT)}"
    return NEWMAN


@dataclass(frozen=True)
class LiveStack:
    stack: Stack
    stripe_webhook_secret: str  # what a newcomer pastes into the environment from .data/


@pytest.fixture
def live_stack(transactional_db: None, settings: Any, tmp_path: Path) -> Iterator[LiveStack]:
    """What `./run.sh` gives a newcomer: the web server and a worker, codes in answers, the
    local Gemini and Stripe stand-ins, the Pro price created on the latter."""
    with FakeGemini() as gemini, FakeStripe() as stripe:
        settings.STRIPE_SECRET_KEY = stripe.api_key
        settings.STRIPE_API_BASE = stripe.url
        settings.STRIPE_WEBHOOK_SECRET = stripe.webhook_secret
        env = process_env(
            OTP_RETURN_IN_RESPONSE="true",
            GEMINI_API_KEY=gemini.api_key,
            GEMINI_BASE_URL=gemini.url,
            STRIPE_SECRET_KEY=stripe.api_key,
            STRIPE_API_BASE=stripe.url,
            STRIPE_WEBHOOK_SECRET=stripe.webhook_secret,
            STRIPE_PRO_PRICE_ID=pro_price_ensure(interval="month").id,
        )
        stack = Stack(env=env, log_dir=tmp_path)
        try:
            stack.start_web()
            stack.start_worker(name="w1", concurrency=2)
            stack.wait_ready()
            yield LiveStack(stack=stack, stripe_webhook_secret=stripe.webhook_secret)
        finally:
            stack.close()


@dataclass(frozen=True)
class NewmanRun:
    returncode: int
    output: str  # the cli reporter
    report: dict[str, Any]  # the json reporter
    environment: dict[str, Any]  # the environment as the run left it
    server_logs: str

    @property
    def failures(self) -> list[str]:
        """`request / assertion: message` for each failing assertion or script error."""
        found = []
        for failure in self.report.get("run", {}).get("failures", []):
            error = failure["error"]
            found.append(
                f"{failure['source']['name']} / {error.get('test') or error['name']}: "
                f"{error['message']}"
            )
        return found

    @property
    def executions(self) -> list[dict[str, Any]]:
        return list(self.report.get("run", {}).get("executions", []))

    def explain(self) -> str:
        """The failing assertions first, then what newman printed, then the servers' logs."""
        failures = "\n".join(self.failures) or "(no failing assertion)"
        return (
            f"newman exited with {self.returncode}; failing assertions:\n{failures}\n\n"
            f"{self.output[-6000:]}\n{self.server_logs}"
        )


def newman_run(newman: Path, collection: Path, *, server: LiveStack, out: Path) -> NewmanRun:
    report, exported = out / "newman-report.json", out / "newman-environment.json"
    args = [
        str(newman), "run", str(collection), "-e", str(ENVIRONMENT_PATH),
        "--env-var", f"base_url={server.stack.url}",
        "--env-var", f"stripe_webhook_secret={server.stripe_webhook_secret}",
        "--reporters", "cli,json", "--reporter-json-export", str(report),
        "--export-environment", str(exported),
        "--timeout-request", "30000", "--color", "off", "--disable-unicode",
    ]  # fmt: skip
    completed = subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=NEWMAN_TIMEOUT_SECONDS,
        check=False,
    )
    output = completed.stdout + completed.stderr
    (out / "newman-cli.txt").write_text(output)
    return NewmanRun(
        returncode=completed.returncode,
        output=output,
        report=json.loads(report.read_text()) if report.exists() else {},
        environment={
            value["key"]: value["value"] for value in json.loads(exported.read_text())["values"]
        }
        if exported.exists()
        else {},
        server_logs=server.stack.logs(),
    )


@pytest.mark.e2e
def test_newman_runs_the_collection_top_to_bottom_against_a_live_server(
    newman: Path, live_stack: LiveStack, tmp_path: Path
):
    run = newman_run(newman, COLLECTION_PATH, server=live_stack, out=tmp_path)

    assert run.returncode == 0, run.explain()
    assert run.failures == [], run.explain()
    assert "deprecated" not in run.output, run.output  # what works today and will not later
    requests = collection_requests(load_collection())
    executed = [execution["item"]["name"] for execution in run.executions]
    assert executed == [request.name for request in requests], run.explain()
    for execution in run.executions:
        assert execution.get("assertions"), f"{execution['item']['name']} ran no pm.test"
    for variable in CHAINED:
        assert run.environment.get(variable), f"the run did not store {variable}"
    # Stripe is configured (the local stand-in): the Subscription folder succeeds for real.
    codes = {
        execution["item"]["name"]: execution["response"]["code"] for execution in run.executions
    }
    subscription = [request.name for request in requests if request.folder == "Subscription"]
    assert {name: codes[name] for name in subscription} == {
        "Subscribe to Pro": 201,
        "Subscription status": 200,
        "Billing portal": 200,
        "Stripe webhook": 200,
        "Payment success page": 200,
        "Payment cancel page": 200,
        "Billing portal return page": 200,
    }


@pytest.mark.e2e
def test_newman_fails_the_run_when_an_answer_breaks_an_assertion(
    newman: Path, live_stack: LiveStack, tmp_path: Path
):
    """The check above is honest: one expected status changed in a copy of the collection
    (Send OTP's 200 made 201) fails the run, and the failure names the assertion."""
    text = COLLECTION_PATH.read_text()
    expected_ok = "pm.response.to.have.status(200)"
    assert expected_ok in text
    broken = tmp_path / "broken.postman_collection.json"
    broken.write_text(text.replace(expected_ok, "pm.response.to.have.status(201)", 1))

    run = newman_run(newman, broken, server=live_stack, out=tmp_path)

    assert run.returncode != 0, run.explain()
    assert run.failures == [
        "Send OTP / 200 OK: expected response to have status code 201 but got 200"
    ], run.explain()
