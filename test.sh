#!/usr/bin/env bash
# Runs the test suite against real PostgreSQL and Redis (embedded ones when
# DATABASE_URL / REDIS_URL are not set). Extra arguments go to pytest.
source "$(dirname "$0")/scripts/bootstrap.sh" requirements-dev.txt
exec .venv/bin/python scripts/stack.py test "$@"
