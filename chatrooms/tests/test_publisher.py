"""A worker's publication of chunks while Redis does not answer (chatrooms/replies.py)."""

import datetime as dt
import logging

from chatrooms import replies
from chatrooms.replies import Claim, _DeltaPublisher


def test_publishing_pauses_longer_after_each_failure_in_a_row(settings, monkeypatch, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: refused at once
    clock = [1000.0]
    monkeypatch.setattr(replies.time, "monotonic", lambda: clock[0])
    claim = Claim(
        reply_id=1, attempt=1, chatroom_id=1, user_id=1, system_prompt="", usage_day=dt.date.today()
    )
    publisher = _DeltaPublisher(claim)
    with caplog.at_level(logging.WARNING, logger="chatrooms.replies"):
        for _ in range(400):  # a chunk every 0.1 s for 40 s
            assert publisher("x") is True  # the chunk is still generated and stored
            clock[0] += 0.1
    failures = [r for r in caplog.records if "cannot publish chunks" in r.getMessage()]
    # Tries at 0, 1, 3, 7, 15 and 31 s (pauses of 1, 2, 4, 8, 16 s); a fixed 1 s pause: ~40.
    assert len(failures) == 6
