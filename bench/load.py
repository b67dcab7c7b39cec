"""Load benchmark for a running server.

    python bench/load.py --base-url http://127.0.0.1:8000 [--duration 10] [--only list,send]

Logs in through the OTP endpoints (the server must return codes: OTP_RETURN_IN_RESPONSE),
then measures, each at its own concurrency:

  list      GET  /api/chatroom              (cached list)           32 clients
  me        GET  /api/user/me               (the user and its usage) 32 clients
  detail    GET  /api/chatroom/{id}         (50 messages)           32 clients
  send8     POST /api/chatroom/{id}/message (one send per chatroom)  8 clients
  send32    the same                                                 32 clients
  overhead  send -> reply completed, minus --model-seconds, one at a time
  burst     --burst sends at once; time until every reply is completed

Sending needs a daily limit the run cannot reach (BASIC_DAILY_LIMIT); bench/run.sh
starts a server configured for this, and for one user's thousands of chatrooms and of
requests a minute (MAX_CHATROOMS_PER_USER, API_RATE_PER_MINUTE: the throttle still counts
every request, it never refuses one). Prints requests per second and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpclient import Connection


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


def report(name: str, latencies: list[float], elapsed: float, errors: int, extra: str = "") -> None:
    rps = len(latencies) / elapsed if elapsed else 0.0
    print(
        f"{name:<9} {rps:8.0f} req/s   p50 {percentile(latencies, 0.50) * 1000:6.1f} ms   "
        f"p99 {percentile(latencies, 0.99) * 1000:6.1f} ms   n={len(latencies)} errors={errors}"
        f"{'   ' + extra if extra else ''}",
        flush=True,
    )


async def login(base_url: str) -> str:
    conn = Connection(base_url)
    phone = f"+9199{random.randrange(10**8):08d}"
    sent = await conn.request("POST", "/api/auth/send-otp", body={"phone": phone})
    if sent.status != 200 or "otp" not in sent.json():
        raise SystemExit(f"send-otp failed ({sent.status}): {sent.body[:300]!r}")
    verified = await conn.request(
        "POST", "/api/auth/verify-otp", body={"phone": phone, "otp": sent.json()["otp"]}
    )
    await conn.close()
    if verified.status != 200:
        raise SystemExit(f"verify-otp failed ({verified.status}): {verified.body[:300]!r}")
    return str(verified.json()["access"])


async def create_chatrooms(base_url: str, token: str, count: int) -> list[int]:
    ids: list[int] = []

    async def creator(share: int) -> None:
        conn = Connection(base_url)
        for _ in range(share):
            response = await conn.request(
                "POST", "/api/chatroom", token=token, body={"name": "bench"}
            )
            ids.append(response.json()["id"])
        await conn.close()

    workers = 8
    await asyncio.gather(*(creator(count // workers + 1) for _ in range(workers)))
    return ids[:count]


async def hammer(
    base_url: str,
    clients: int,
    duration: float,
    make_request: Callable[[Connection], Awaitable[int]],
    warmup: float = 1.0,
) -> tuple[list[float], float, int]:
    """Each client loops over make_request; latencies after the warm-up are kept."""
    # On stderr, for a profiler to start on: the scenario's load begins now.
    print(f"hammering with {clients} clients for {warmup} + {duration} s", file=sys.stderr)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def client() -> None:
        nonlocal errors
        conn = Connection(base_url)
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                break
            status = await make_request(conn)
            ended = time.perf_counter()
            if began >= measure_from:
                if status >= 400:
                    errors += 1
                else:
                    latencies.append(ended - began)
        await conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, min(duration, time.perf_counter() - measure_from), errors


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def wait_completed(conn: Connection, token: str, room: int, reply: int) -> dict:
    while True:
        response = await conn.request("GET", f"/api/chatroom/{room}/message/{reply}", token=token)
        message = response.json()
        if message["status"] not in {"pending", "streaming"}:
            return message
        await asyncio.sleep(0.02)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--only", default="list,me,detail,send8,send32,overhead,burst")
    parser.add_argument(
        "--model-seconds",
        type=float,
        default=0.0,
        help="the model's own latency, taken out of the overhead figure",
    )
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument(
        "--fake-url",
        help="the local Gemini stand-in; its latency is set to --burst-model-seconds for burst",
    )
    parser.add_argument("--burst-model-seconds", type=float, default=2.0)
    args = parser.parse_args()
    only = set(args.only.split(","))
    base = args.base_url

    token = await login(base)
    needed_rooms = 0
    if "send8" in only or "send32" in only:
        needed_rooms += int(args.duration * 1500) + 2000
    rooms = await create_chatrooms(base, token, max(needed_rooms, 60))
    room_pool = iter(rooms[50:])

    if "healthz" in only:  # calibration: the framework's floor, no auth, no database

        async def healthz_request(conn: Connection) -> int:
            return (await conn.request("GET", "/healthz")).status

        report("healthz", *await hammer(base, 32, args.duration, healthz_request))

    if "list" in only:

        async def list_request(conn: Connection) -> int:
            return (await conn.request("GET", "/api/chatroom", token=token)).status

        report("list", *await hammer(base, 32, args.duration, list_request))

    if "me" in only:

        async def me_request(conn: Connection) -> int:
            return (await conn.request("GET", "/api/user/me", token=token)).status

        report("me", *await hammer(base, 32, args.duration, me_request))

    if "detail" in only:
        detail_room = rooms[0]
        conn = Connection(base)
        for index in range(25):  # 50 messages: 25 prompts and their replies
            sent = await conn.request(
                "POST",
                f"/api/chatroom/{detail_room}/message",
                token=token,
                body={"content": f"Message number {index} for the detail benchmark."},
            )
            await wait_completed(conn, token, detail_room, sent.json()["reply"]["id"])
        await conn.close()

        async def detail_request(conn: Connection) -> int:
            return (await conn.request("GET", f"/api/chatroom/{detail_room}", token=token)).status

        report("detail", *await hammer(base, 32, args.duration, detail_request))

    async def send_request(conn: Connection) -> int:
        room = next(room_pool)
        response = await conn.request(
            "POST",
            f"/api/chatroom/{room}/message",
            token=token,
            body={"content": "Hello from the benchmark"},
        )
        return response.status

    for name, clients in (("send8", 8), ("send32", 32)):
        if name in only:
            report(name, *await hammer(base, clients, args.duration, send_request))
            await asyncio.sleep(3)  # let the worker drain the replies

    if "overhead" in only:
        conn = Connection(base)
        overheads = []
        for room in rooms[1:41]:
            sent = await conn.request(
                "POST", f"/api/chatroom/{room}/message", token=token, body={"content": "Ping"}
            )
            body = sent.json()
            reply = await wait_completed(conn, token, room, body["reply"]["id"])
            total = parse_time(reply["completed_at"]) - parse_time(
                body["user_message"]["created_at"]
            )
            overheads.append(total.total_seconds() - args.model_seconds)
        await conn.close()
        print(
            "overhead  send -> completed minus model: "
            f"p50 {statistics.median(overheads) * 1000:.1f} ms"
            f"   p99 {percentile(overheads, 0.99) * 1000:.1f} ms   n={len(overheads)}",
            flush=True,
        )

    if "burst" in only:
        burst_rooms = await create_chatrooms(base, token, args.burst)
        model_seconds = args.model_seconds
        if args.fake_url:
            fake = Connection(args.fake_url)
            await fake.request("POST", "/_fake/reset", body={"latency": args.burst_model_seconds})
            await fake.close()
            model_seconds = args.burst_model_seconds
        started = time.perf_counter()
        conns = [Connection(base) for _ in range(16)]

        async def send_and_wait(index: int, room: int) -> dict:
            conn = conns[index % len(conns)]
            sent = await conn.request(
                "POST", f"/api/chatroom/{room}/message", token=token, body={"content": "Burst"}
            )
            return {"room": room, "reply": sent.json()["reply"]["id"]}

        async def sender(index: int) -> list[dict]:
            return [await send_and_wait(index, room) for room in burst_rooms[index :: len(conns)]]

        accepted = [
            item
            for share in await asyncio.gather(*map(sender, range(len(conns))))
            for item in share
        ]
        sent_in = time.perf_counter() - started
        statuses: list[str] = []
        errors_seen: list[dict] = []

        async def poller(share: list[dict], conn: Connection) -> None:
            for item in share:
                message = await wait_completed(conn, token, item["room"], item["reply"])
                statuses.append(message["status"])
                if message["error"] and len(errors_seen) < 3:
                    errors_seen.append(message["error"])

        await asyncio.gather(*(poller(accepted[i::16], conns[i]) for i in range(16)))
        elapsed = time.perf_counter() - started
        for conn in conns:
            await conn.close()
        completed = statuses.count("completed")
        if completed != len(statuses):
            print("burst statuses:", {s: statuses.count(s) for s in set(statuses)}, errors_seen)
        print(
            f"burst     {args.burst} replies (model {model_seconds:.1f} s each): "
            f"all finished in {elapsed:.2f} s (sends took {sent_in:.2f} s), "
            f"completed={completed}",
            flush=True,
        )


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
