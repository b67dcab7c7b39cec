"""The Postman collection for client developers stays complete, valid and runnable.

The last test plays Postman's Collection Runner: it sends every request in order to the app
(in-process, on the real PostgreSQL and Redis) and runs each request's own JavaScript in V8
(mini-racer) with a small stand-in for Postman's `pm` object, so the scripts' assertions and
the variables they store are checked against real answers, exactly as a newcomer would run
them: Send OTP → Verify OTP → Create chatroom → Send message → Get reply.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from drf_spectacular.generators import SchemaGenerator

from billing.services import pro_price_ensure
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
    assert folders == ["Auth and account", "Chatrooms and messages", "Subscription", "Operations"]
    for request in requests:
        assert request.request["url"]["raw"].startswith("{{base_url}}/"), request.name
        assert request.request["description"].strip(), f"{request.name} has no description"


def test_the_environment_defines_every_variable_the_collection_uses():
    environment = load_environment()
    values = environment_values(environment)

    assert environment["_postman_variable_scope"] == "environment"
    assert set(values) >= ENVIRONMENT_VARIABLES
    assert values["base_url"] == "http://127.0.0.1:8000"
    assert values["phone"] == "+919876543210"
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


# --- Running it ---------------------------------------------------------------------------

# A stand-in for the parts of Postman's sandbox the scripts use: `pm` with chai-style
# `pm.expect`, and environment and local variables. An unsupported call fails loudly.
SANDBOX_JS = r"""
function __show(value) {
    return value === undefined ? "undefined" : JSON.stringify(value);
}

function __typeOf(value) {
    return Array.isArray(value) ? "array" : value === null ? "null" : typeof value;
}

function __expect(actual, negate) {
    const chain = {};
    const check = (ok, words) => {
        if (ok === negate) {
            throw new Error("expected " + __show(actual) + (negate ? " not " : " ") + words);
        }
        return chain;
    };
    for (const word of ["to", "be", "been", "is", "that", "and", "has", "have", "with"]) {
        Object.defineProperty(chain, word, {get: () => chain});
    }
    Object.defineProperty(chain, "not", {get: () => __expect(actual, !negate)});
    Object.defineProperty(chain, "true", {get: () => check(actual === true, "to be true")});
    Object.defineProperty(chain, "false", {get: () => check(actual === false, "to be false")});
    Object.defineProperty(chain, "null", {get: () => check(actual === null, "to be null")});
    Object.defineProperty(chain, "ok", {get: () => check(Boolean(actual), "to be truthy")});
    chain.eql = (expected) => check(__show(actual) === __show(expected),
        "to eql " + __show(expected));
    chain.equal = (expected) => check(actual === expected, "to equal " + __show(expected));
    chain.oneOf = (list) => check(list.some((item) => __show(item) === __show(actual)),
        "to be one of " + __show(list));
    chain.a = chain.an = (type) => check(__typeOf(actual) === type, "to be a " + type);
    chain.property = (name) => check(actual !== null && typeof actual === "object"
        && name in actual, "to have property " + __show(name));
    chain.include = (item) => check((typeof actual === "string" || Array.isArray(actual))
        && actual.includes(item), "to include " + __show(item));
    chain.match = (pattern) => check(typeof actual === "string" && pattern.test(actual),
        "to match " + pattern);
    return chain;
}

// Postman's CryptoJS, as far as the scripts use it: HmacSHA256(message, key).toString(Hex),
// over UTF-8, to sign the Stripe webhook sample the way Stripe does.
const CryptoJS = (() => {
    const primes = [];
    for (let n = 2; primes.length < 64; n++) {
        if (primes.every((p) => n % p !== 0)) primes.push(n);
    }
    const fraction = (x) => Math.floor((x - Math.floor(x)) * 4294967296) | 0;
    const K = primes.map((p) => fraction(Math.cbrt(p)));
    const H0 = primes.slice(0, 8).map((p) => fraction(Math.sqrt(p)));
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    const utf8 = (text) => Array.from(unescape(encodeURIComponent(text)), (c) => c.charCodeAt(0));

    function sha256(bytes) {
        const h = H0.slice();
        const data = bytes.concat([0x80]);
        while (data.length % 64 !== 56) data.push(0);
        const bits = bytes.length * 8;
        for (let shift = 56; shift >= 0; shift -= 8) {
            data.push(Math.floor(bits / 2 ** shift) & 0xff);
        }
        const w = new Array(64);
        for (let start = 0; start < data.length; start += 64) {
            for (let t = 0; t < 16; t++) {
                const at = start + 4 * t;
                w[t] = (data[at] << 24) | (data[at + 1] << 16) | (data[at + 2] << 8) | data[at + 3];
            }
            for (let t = 16; t < 64; t++) {
                const s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3);
                const s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
                w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
            }
            let [a, b, c, d, e, f, g, k] = h;
            for (let t = 0; t < 64; t++) {
                const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25))
                    + ((e & f) ^ (~e & g)) + K[t] + w[t]) | 0;
                const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22))
                    + ((a & b) ^ (a & c) ^ (b & c))) | 0;
                [k, g, f, e, d, c, b, a] = [g, f, e, (d + t1) | 0, c, b, a, (t1 + t2) | 0];
            }
            [a, b, c, d, e, f, g, k].forEach((value, i) => { h[i] = (h[i] + value) | 0; });
        }
        return h.flatMap((x) => [x >>> 24, (x >>> 16) & 0xff, (x >>> 8) & 0xff, x & 0xff]);
    }

    const Hex = {};
    function HmacSHA256(message, key) {
        let keyBytes = utf8(key);
        if (keyBytes.length > 64) keyBytes = sha256(keyBytes);
        while (keyBytes.length < 64) keyBytes.push(0);
        const inner = sha256(keyBytes.map((b) => b ^ 0x36).concat(utf8(message)));
        const digest = sha256(keyBytes.map((b) => b ^ 0x5c).concat(inner));
        return {
            toString: (encoder) => {
                if (encoder !== Hex) throw new Error("only CryptoJS.enc.Hex is supported here");
                return digest.map((b) => b.toString(16).padStart(2, "0")).join("");
            },
        };
    }
    return {HmacSHA256: HmacSHA256, enc: {Hex: Hex}};
})();

function __run(inputJson) {
    const input = JSON.parse(inputJson);
    const env = input.env;
    const locals = input.locals;
    const headers = {};
    const tests = [];
    let statusChecked = false;
    const lookup = (name) => (name in locals ? locals[name] : env[name]);
    const pm = {
        info: {requestName: input.name},
        environment: {
            get: (key) => env[key],
            set: (key, value) => { env[key] = value; },
            unset: (key) => { delete env[key]; },
        },
        variables: {
            get: lookup,
            set: (key, value) => { locals[key] = value; },
            replaceIn: (text) => text.replace(/\{\{([^{}$]+)\}\}/g,
                (whole, name) => (lookup(name) === undefined ? whole : String(lookup(name)))),
        },
        request: {
            body: {raw: input.body},
            headers: {upsert: (header) => { headers[header.key] = header.value; }},
        },
        test: (name, fn) => {
            try {
                fn();
                tests.push({name: name, error: null});
            } catch (error) {
                tests.push({name: name, error: String(error && error.message || error)});
            }
        },
        expect: (actual) => __expect(actual, false),
    };
    const response = input.response;
    if (response !== null) {
        const header = (name) => response.headers[name.toLowerCase()];
        pm.response = {
            get code() { statusChecked = true; return response.code; },
            headers: {get: header, has: (name) => header(name) !== undefined},
            text: () => response.text,
            json: () => JSON.parse(response.text),
            to: {have: {status: (code) => {
                statusChecked = true;
                if (response.code !== code) {
                    throw new Error("expected status " + code + " but got " + response.code
                        + ": " + response.text.slice(0, 300));
                }
            }}},
        };
    }
    try {
        new Function("pm", input.script)(pm);
    } catch (error) {
        tests.push({name: "the script itself", error: String(error && error.stack || error)});
    }
    return JSON.stringify({
        env: env, locals: locals, headers: headers, tests: tests, statusChecked: statusChecked,
    });
}
"""


@dataclass
class Answer:
    code: int
    headers: dict[str, str]
    text: str


class PostmanRunner:
    """Sends the collection's requests one by one with Postman's variable and auth rules."""

    def __init__(self, *, js: Any, environment: dict[str, Any], base_url: str) -> None:
        self.js = js
        self.env: dict[str, Any] = {**environment, "base_url": base_url}
        self.js.eval(SANDBOX_JS)

    def resolve(self, text: str, locals_: dict[str, Any]) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "$guid":
                return str(uuid.uuid4())
            if name == "$timestamp":
                return str(int(time.time()))
            scope = {**self.env, **locals_}
            assert name in scope, f"{{{{{name}}}}} is not defined when it is used"
            found = scope[name]
            return json.dumps(found) if isinstance(found, bool) else str(found)

        return _VARIABLE.sub(value, text)

    def script(self, request: PostmanRequest, listen: str, **context: Any) -> dict[str, Any]:
        source = request.script(listen)
        body = (request.request.get("body") or {}).get("raw", "")
        payload = {"script": source, "name": request.name, "env": self.env, "body": body}
        result = json.loads(self.js.call("__run", json.dumps({**payload, **context})))
        self.env = result["env"]
        return dict(result)

    def send(self, request: PostmanRequest, transport: Callable[..., Answer]) -> dict[str, Any]:
        pre = self.script(request, "prerequest", locals={}, response=None)
        locals_ = pre["locals"]
        url = urlsplit(self.resolve(request.request["url"]["raw"], locals_))
        headers = {
            h["key"]: self.resolve(h["value"], locals_)
            for h in request.request["header"]
            if not h.get("disabled")
        }
        headers.update(pre["headers"])
        if request.auth["type"] == "bearer":
            token = self.resolve(request.auth["bearer"][0]["value"], locals_)
            headers["Authorization"] = f"Bearer {token}"
        body = self.resolve((request.request.get("body") or {}).get("raw", ""), locals_)
        path = url.path + (f"?{url.query}" if url.query else "")
        answer = transport(request.method, path, headers=headers, body=body)
        response = {"code": answer.code, "headers": answer.headers, "text": answer.text}
        return {**self.script(request, "test", locals=locals_, response=response), **response}


def asgi_transport(method: str, path: str, *, headers: dict[str, str], body: str) -> Answer:
    """One request through the ASGI stack, the stream read to its end."""
    content_type = headers.pop("Content-Type", "application/octet-stream")

    async def go() -> Answer:
        response = await AsyncClient().generic(
            method, path, body.encode(), content_type=content_type, headers=headers
        )
        if isinstance(response, StreamingHttpResponse):
            # The SSE view is async: its stream is an async iterator of bytes.
            content = b"".join([bytes(chunk) async for chunk in response])
        else:
            content = response.content
        answer_headers = {key.lower(): value for key, value in response.items()}
        return Answer(response.status_code, answer_headers, content.decode())

    return async_to_sync(go)()


@pytest.fixture
def v8() -> Iterator[Any]:
    mini_racer = pytest.importorskip("py_mini_racer", reason="needs mini-racer (dev requirement)")
    context = mini_racer.MiniRacer()
    yield context
    context.close()


@pytest.fixture
def runner_settings(settings: Any, db: None) -> Iterator[str]:
    """What `./run.sh` gives a newcomer: codes in answers, the offline model, the local
    Stripe stand-in with its Pro price, and each Celery job run at commit, as a worker
    would right after. Yields the stand-in's webhook secret, for the environment."""
    from gemini_clone.celery import app as celery_app

    settings.OTP_RETURN_IN_RESPONSE = True
    settings.TRUSTED_PROXIES = []
    settings.GEMINI_API_KEY = ""
    settings.OFFLINE_MODEL_CHUNK_DELAY_MS = 0
    eager = {"task_always_eager": True, "task_eager_propagates": True}
    before = {key: celery_app.conf[key] for key in eager}
    celery_app.conf.update(eager)
    with FakeStripe() as stripe:
        settings.STRIPE_SECRET_KEY = stripe.api_key
        settings.STRIPE_WEBHOOK_SECRET = stripe.webhook_secret
        settings.STRIPE_API_BASE = stripe.url
        settings.STRIPE_PRO_PRICE_ID = pro_price_ensure(interval="month").id
        yield stripe.webhook_secret
    celery_app.conf.update(before)


# Replies are generated in-process (eager tasks), and the worker gives its database
# connection back after each step: the run commits for real.
@pytest.mark.django_db(transaction=True)
def test_the_collection_runs_top_to_bottom_against_the_api(
    v8, runner_settings, django_capture_on_commit_callbacks
):
    environment = {
        **environment_values(load_environment()),
        "stripe_webhook_secret": runner_settings,  # as a newcomer pastes it from .data/
    }
    runner = PostmanRunner(js=v8, environment=environment, base_url="http://testserver")
    ran, failures, codes = [], [], {}
    for request in collection_requests(load_collection()):
        with django_capture_on_commit_callbacks(execute=True):
            result = runner.send(request, asgi_transport)
        ran.append(request.name)
        codes[request.name] = result["code"]
        assert result["tests"], f"{request.name}: its script ran no pm.test"
        assert result["statusChecked"], f"{request.name}: its script checks no status"
        failures += [
            f"{request.name} / {t['name']}: {t['error']}" for t in result["tests"] if t["error"]
        ]

    assert not failures, "\n".join(failures)
    newcomer_path = ["Send OTP", "Verify OTP", "Create chatroom", "Send message", "Get reply"]
    assert [name for name in ran if name in newcomer_path] == newcomer_path
    for variable in CHAINED:
        assert runner.env[variable], f"the run did not store {variable}"
    # Stripe is configured (the local stand-in): the Subscription folder succeeds for real.
    requests = collection_requests(load_collection())
    subscription = [r.name for r in requests if r.folder == "Subscription"]
    assert {name: codes[name] for name in subscription} == {
        "Subscribe to Pro": 201,
        "Subscription status": 200,
        "Billing portal": 200,
        "Stripe webhook": 200,
        "Payment success page": 200,
        "Payment cancel page": 200,
        "Billing portal return page": 200,
    }
