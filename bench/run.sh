#!/usr/bin/env bash
# Starts a benchmark stack (production settings, 2 web processes, one Celery worker with
# 200 threads, the local Gemini stand-in) and runs bench/load.py against it.
# Uses DATABASE_URL / REDIS_URL when set, else embedded servers under .data/bench.
#   bench/run.sh [load.py options, e.g. --duration 5 --only list,send8]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh requirements-dev.txt
export PORT="${PORT:-8077}"

fake_log=$(mktemp)
.venv/bin/python -m testing.fake_gemini --port 0 --latency 0 --api-key bench-key --print-url > "$fake_log" &
fake_pid=$!
for _ in $(seq 50); do [ -s "$fake_log" ] && break; sleep 0.1; done
fake_url=$(head -1 "$fake_log")

export DEBUG=false SECRET_KEY=bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz \
  ALLOWED_HOSTS=127.0.0.1,localhost SECURE_SSL_REDIRECT=false OTP_RETURN_IN_RESPONSE=true \
  OTP_MAX_SENDS_PER_IP_PER_HOUR=100000 BASIC_DAILY_LIMIT=1000000000 LOG_LEVEL=WARNING \
  MAX_CHATROOMS_PER_USER=1000000000 API_RATE_PER_MINUTE=1000000000 \
  GEMINI_API_KEY=bench-key GEMINI_BASE_URL="$fake_url" \
  WEB_CONCURRENCY="${WEB_CONCURRENCY:-2}" WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-200}" \
  REPLY_DB_CONNECTIONS="${REPLY_DB_CONNECTIONS:-20}" STACK_DATA_DIR="$PWD/.data/bench"

stack_log=.data/bench-stack.log
mkdir -p .data
.venv/bin/python scripts/stack.py run > "$stack_log" 2>&1 &
stack_pid=$!
cleanup() {
  kill -INT "$stack_pid" 2>/dev/null || true
  wait "$stack_pid" 2>/dev/null || true
  kill "$fake_pid" 2>/dev/null || true
  rm -f "$fake_log"
}
trap cleanup EXIT

.venv/bin/python - <<PY
import time, urllib.request
for _ in range(240):
    try:
        urllib.request.urlopen("http://127.0.0.1:$PORT/readyz", timeout=1)
        break
    except OSError:
        time.sleep(0.5)
else:
    raise SystemExit("the stack did not become ready; see $stack_log")
PY
echo "Stack up on :$PORT (log: $stack_log), fake Gemini at $fake_url"
.venv/bin/python bench/load.py --base-url "http://127.0.0.1:$PORT" --fake-url "$fake_url" "$@"
