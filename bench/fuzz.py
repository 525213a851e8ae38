"""Issue 7 figures: schemathesis against the app's own OpenAPI schema (in-process, scripted model).

Prints the number of generated requests, the 5xx count and the schema violations, per status code. The generation is
the one `tests/test_fuzz_schemathesis.py` asserts on (`tests/schema_fuzz.py`); here the budget is a flag.

    python bench/fuzz.py [--max-examples 100] [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import make_settings
from tests.schema_fuzz import build_target, run_fuzz, unique


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-examples", type=int, default=100, help="per operation and generation mode")
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), args.database_url, rate_limit_per_minute=1_000_000)
        target = build_target(settings)
        started = time.perf_counter()
        try:
            report = run_fuzz(target, max_examples=args.max_examples)
        finally:
            target.close()
        wall = time.perf_counter() - started
    database = settings.resolved_database_url.split(":", 1)[0]
    print(f"fuzz ({database}, {args.max_examples} examples per operation and mode): {wall:.1f} s")
    print(f"generated requests : {report.requests}")
    print(f"5xx responses      : {report.server_error_count}")
    print(f"schema violations  : {len(report.violations)}")
    print("statuses           : " + ", ".join(f"{code}: {n}" for code, n in sorted(report.statuses.items())))
    for line in unique(report.server_errors) + unique(report.violations):
        print("  " + line)


if __name__ == "__main__":
    main()
