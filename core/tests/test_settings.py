import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _env_example() -> dict[str, str]:
    """The production values of .env.example, as `docker compose --env-file` reads them."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name] = value.strip()
    return values


def _production_env(**overrides: str) -> dict[str, str]:
    env = _env_example()
    # Ours: the test servers, and a real secret in place of the example's placeholder.
    env.update(
        DATABASE_URL=os.environ["DATABASE_URL"],
        REDIS_URL=os.environ["REDIS_URL"],
        SECRET_KEY=secrets.token_urlsafe(50),
    )
    env.update(overrides)
    return env


def test_the_production_env_of_env_example_passes_check_deploy():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **_production_env())
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_codes_are_returned_in_production():
    result = _manage(
        "check", "--deploy", **_production_env(OTP_RETURN_IN_RESPONSE="true", DEBUG="false")
    )
    assert "accounts.W001" in result.stderr, result.stderr
    assert "OTP_RETURN_IN_RESPONSE is on with DEBUG off" in result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = _manage("check", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_django_error_is_logged_once_under_debug_and_its_4xx_warnings_not_at_all():
    """Each request has its own line (core.request_log), status included: Django's
    'Not Found: ...' warnings would repeat it; its errors (a 500's traceback) are kept."""
    said = (
        "import logging; r = logging.getLogger('django.request');"
        " r.warning('Not Found: /nowhere'); r.error('Internal Server Error: /broken')"
    )
    result = _manage("shell", "-c", said, DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Internal Server Error: /broken") == 1, result.stderr
    assert "Not Found: /nowhere" not in result.stderr


def test_log_lines_are_json_objects_with_log_format_json():
    said = "import logging; logging.getLogger('gemini_clone.x').warning('hello %s', 'there')"
    result = _manage("shell", "-c", said, DEBUG="true", LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["event"] == "hello there"
    assert (line["level"], line["logger"]) == ("warning", "gemini_clone.x")
    assert line["timestamp"].endswith("Z")


def test_an_unknown_log_format_is_refused():
    result = _manage("check", DEBUG="true", LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "LOG_FORMAT must be one of console, json" in result.stderr


def test_more_web_threads_than_database_connections_is_warned(settings):
    from core.checks import web_threads_within_database_pool_check

    assert web_threads_within_database_pool_check() == []  # the defaults: 8 + 8 + 4, 20
    settings.WEB_SLOW_THREADS = 9
    (warning,) = web_threads_within_database_pool_check()
    assert warning.id == "core.W001"
    assert "21 threads" in warning.msg and "20" in warning.msg


_PREPARED_STATEMENTS_PROBE = """
from django.db import connection
with connection.cursor() as cursor:
    for _ in range(6):
        cursor.execute("SELECT %s::int + 1", [1])
    cursor.execute("SELECT count(*) FROM pg_prepared_statements")
    print(cursor.fetchone()[0])
"""


def _prepared_on_one_connection(**env: str) -> int:
    result = _manage("shell", "-c", _PREPARED_STATEMENTS_PROBE, **_production_env(**env))
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


def test_a_statement_run_often_is_prepared_on_its_connection():
    assert _prepared_on_one_connection() >= 1


def test_db_prepared_statements_false_prepares_nothing():
    assert _prepared_on_one_connection(DB_PREPARED_STATEMENTS="false") == 0
