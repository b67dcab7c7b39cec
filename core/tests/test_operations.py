import pytest
from django.db import connection


@pytest.mark.django_db
def test_healthz_answers_while_the_process_runs(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_postgres_and_redis(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok", "redis": "ok"}
    assert connection.vendor == "postgresql"


@pytest.mark.django_db
def test_readyz_names_redis_when_it_is_down(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["redis"]


def test_unknown_api_route_is_json_404(client):
    response = client.get("/api/does-not-exist")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


def test_unknown_api_route_is_json_404_for_every_method(client):
    for method in (client.post, client.put, client.patch, client.delete):
        response = method("/api/does-not-exist", data="{}", content_type="application/json")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_wrong_method_is_json_405(client):
    response = client.delete("/api/schema/")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_body_over_one_mib_is_413_before_anything_else(client):
    response = client.post(
        "/api/does-not-exist", data=b"x" * (1024 * 1024 + 1), content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.django_db
def test_malformed_authorization_header_is_a_readable_401(client):
    response = client.get("/api/user/me", HTTP_AUTHORIZATION="Bearer")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "authentication_failed"
    assert error["message"] == "Authorization header must contain two space-delimited values"


def test_deeply_nested_json_is_a_400_not_a_crash(client):
    response = client.post(
        "/api/auth/send-otp", data="[" * 100_000, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_a_bad_host_header_gets_json_on_api_paths(client):
    response = client.get("/api/user/me", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "bad_request"
