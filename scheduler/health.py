"""``python -m scheduler.health``: the scheduler container's healthcheck. Healthy while the scheduler of
this host ticks (every few seconds, whether it leads or stands by) and reaches the Redis of its lock;
it prints what it found, and exits 1 otherwise."""

from __future__ import annotations

import sys
import time

from docsieve.settings import Settings, SettingsError
from scheduler.beat import LEADER_TTL, UNREACHABLE, heartbeat_path

# A tick is at most TICK seconds apart; a heartbeat older than a lost lead is no longer a running scheduler.
STALE_AFTER = LEADER_TTL


def check(settings: Settings, now: float | None = None) -> tuple[bool, str]:
    path = heartbeat_path(settings)
    try:
        state = path.read_text(encoding="utf-8")
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False, f"no scheduler ticks here (no heartbeat {path})"
    if age > STALE_AFTER:
        return False, f"the scheduler's last tick was {age:.0f} s ago ({path})"
    if state == UNREACHABLE:
        return False, "the scheduler cannot reach the Redis of its lock (DOCSIEVE_COORDINATION_URL)"
    return True, f"scheduler {state}, last tick {age:.0f} s ago"


def main() -> int:
    try:
        healthy, said = check(Settings.from_env())
    except SettingsError as exc:
        healthy, said = False, str(exc)
    print(said, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
