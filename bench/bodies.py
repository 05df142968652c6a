"""Peak memory of a running centre sent an endless chunked body, beside a baseline, per route.

Each case starts a fresh ``centre run`` (its own process and SQLite file), sends one request and
reads the process's peak RSS (``VmHWM``, reset once the centre listens). The baseline sends a normal login; the attacks send 300 MiB
chunked (no Content-Length) to the review desk's login and to enrolment. The bound: an endless body
costs about the body cap (16 MiB) above the baseline and is refused ``too_large``, whatever is sent.
Run: ``.venv/bin/python bench/bodies.py`` (about a minute).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import httpx

from sync import wire

MIB = 1024 * 1024
SEND_MIB = 300
CASES = (("baseline", "/v1/review/login", 0), ("login-300MiB", "/v1/review/login", SEND_MIB),
         ("enrol-300MiB", "/v1/enrol", SEND_MIB))


def peak_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024


def run_case(path: str, mib: int) -> tuple[float, int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        # `python -m sync.centre` is `centre`; PYTHONPATH picks the tree (a checkout of an older commit
        # gives the before-numbers).
        proc = subprocess.Popen([sys.executable, "-m", "sync.centre", "run", "--data-dir", tmp, "--port", "0", "--no-background"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            url = re.search(r"http://[\d.]+:\d+", line).group(0)

            def body():
                block = b"{" * MIB
                for _ in range(mib):
                    yield block

            content = body() if mib else b'{"name": "nobody", "password": "x"}'
            # Reset the peak to the running centre's present size: start-up (imports, migrations) peaks
            # higher than a serving centre sits, and would hide what the request costs.
            with open(f"/proc/{proc.pid}/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            try:
                r = httpx.post(url + path, content=content, headers={"content-type": "application/json"},
                               timeout=120, trust_env=False)
                status = r.status_code
                if wire.CONTENT_TYPE in r.headers.get("content-type", ""):
                    code = wire.decode(r.content).get("code", "?")
                else:
                    code = r.json().get("error", {}).get("code", "?")
            except httpx.HTTPError as exc:
                status, code = 0, type(exc).__name__
            time.sleep(0.2)
            return peak_mib(proc.pid), status, code
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    rows = [(name, path, mib, *run_case(path, mib)) for name, path, mib in CASES]
    floor = rows[0][3]
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{when}, {os.cpu_count()} CPU ({platform.processor() or platform.machine()}), Python "
          f"{platform.python_version()}. `.venv/bin/python bench/bodies.py`: each case a fresh `centre run`; the "
          "floor is a normal login in the same run.\n")
    print("| case | route | sent MiB | peak RSS MiB | vs baseline | answer |")
    print("|---|---|---|---|---|---|")
    for name, path, mib, peak, status, code in rows:
        print(f"| {name} | `{path}` | {mib} | {peak:.1f} | {peak / floor:.2f} | {status} {code} |")


if __name__ == "__main__":
    main()
