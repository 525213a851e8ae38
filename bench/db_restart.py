"""Issue 7 figure: how long the service takes to recover after a PostgreSQL restart, without being restarted itself.

A throwaway cluster (initdb, on a free port; never the shared server), the backend under uvicorn on it with the
scripted model, a client polling a database-bound endpoint every 20 ms. Each round stops the cluster, keeps it down
for `--down` seconds, starts it, and measures the time from "database accepting connections again" to the first
successful answer; then a chat turn must work and no stored message may be missing.

    python bench/db_restart.py [--rounds 3] [--down 2] [--workers 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._servers import BENCH_SECRET, backend_with_scripted_model
from tests.pg_cluster import throwaway_cluster


def mint(user: str) -> str:
    from backend.auth import mint_token
    from backend.settings import Settings

    return mint_token(Settings(_env_file=None, better_auth_secret=BENCH_SECRET), user)  # type: ignore[call-arg]


class Poller(threading.Thread):
    """GET the user's tasks every 20 ms; remembers (time, status) of every answer."""

    def __init__(self, base: str, user: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.user = user
        self.answers: list[tuple[float, int]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {mint(self.user)}"}
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop_event.is_set():
                try:
                    status = client.get(f"/api/{self.user}/tasks", headers=headers).status_code
                except httpx.HTTPError:
                    status = 0
                self.answers.append((time.monotonic(), status))
                time.sleep(0.02)

    def first_ok_after(self, moment: float, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, status in list(self.answers):
                if at >= moment and status == 200:
                    return at
            time.sleep(0.005)
        raise RuntimeError("the service did not recover")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--down", type=float, default=2.0, help="seconds the database stays down")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    user = f"restart-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {mint(user)}"}
    recoveries: list[float] = []
    ok = True
    with (
        tempfile.TemporaryDirectory() as tmp,
        throwaway_cluster() as cluster,
        backend_with_scripted_model(Path(tmp), workers=args.workers, extra_env={"DATABASE_URL": cluster.url}) as (
            base,
            _env,
        ),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        first = client.post(f"/api/{user}/chat", json={"message": "before any restart"}, headers=auth)
        first.raise_for_status()
        conversation_id = first.json()["conversation_id"]
        expected = 2
        poller = Poller(base, user)
        poller.start()
        time.sleep(0.5)
        for round_number in range(1, args.rounds + 1):
            stop_at = time.monotonic()
            cluster.stop()
            down_at = time.monotonic()  # stopped: from here on nothing can be served from the database
            time.sleep(args.down)
            start_at = time.monotonic()
            cluster.start()
            up_at = time.monotonic()  # pg_ctl says it accepts connections (it polls, so possibly a bit later)
            recovered_at = poller.first_ok_after(start_at)
            outage = Counter(status for at, status in poller.answers if down_at < at < start_at)
            turn = client.post(
                f"/api/{user}/chat",
                json={"message": f"after restart {round_number}", "conversation_id": conversation_id},
                headers=auth,
            )
            expected += 2
            messages = client.get(f"/api/{user}/conversations/{conversation_id}", headers=auth).json()["messages"]
            intact = turn.status_code == 200 and len(messages) == expected
            ok &= intact and set(outage) <= {503}
            recoveries.append(recovered_at - start_at)
            print(
                f"round {round_number}: database down {start_at - stop_at:.2f} s, answers meanwhile "
                f"{dict(outage)}; first success {1000 * (recovered_at - start_at):.0f} ms after `pg_ctl start` "
                f"(which took {1000 * (up_at - start_at):.0f} ms); "
                f"next turn {turn.status_code}, {len(messages)}/{expected} messages stored"
            )
        poller.stop_event.set()
        poller.join()
    print(
        f"recovery after a database restart (from `pg_ctl start`, PostgreSQL's own start-up included): "
        f"median {1000 * statistics.median(recoveries):.0f} ms, max {1000 * max(recoveries):.0f} ms "
        f"(poll interval 20 ms; the service is not restarted); "
        f"outage answers all 503 and no message lost: {ok}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
