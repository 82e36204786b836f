"""Checks of perf/devpause.py's reading of a block trace (run by .ci/run: pytest perf)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("devpause", HERE / "devpause.py")
devpause = importlib.util.module_from_spec(spec)
spec.loader.exec_module(devpause)


def issue(t, rwbs, sector, n, dev="254,0"):
    return (f" {t:.6f}:    block:block_rq_issue: {dev} {rwbs} {n * 512} () {sector} + {n} "
            f"0x2,0,4 [iou-wrk-1]")


def complete(t, rwbs, sector, n, dev="254,0"):
    return f" {t:.6f}: block:block_rq_complete: {dev} {rwbs} () {sector} + {n} 0x2,0,4 [0]"


def flush(t0, t1):
    """A cache flush as the trace shows it: issued `FF 0 + 0`, completed `FF -1 + 0` then
    `WS 0 + 0` (the end of the flush sequence)."""
    return [f" {t0:.6f}:    block:block_rq_issue: 254,0 FF 0 () 0 + 0 0x0,0,0 [kworker/1:1H]",
            f" {t1:.6f}: block:block_rq_complete: 254,0 FF () 18446744073709551615 + 0 "
            "0x0,0,0 [0]",
            complete(t1, "WS", 0, 0)]


def test_pairs_writes_and_flushes():
    lines = [issue(1.000, "WS", 100, 64), complete(1.0002, "WS", 100, 64),
             *flush(1.0003, 1.0004),
             issue(1.001, "WSM", 8, 8), complete(1.00103, "WSM", 8, 8),
             # another disk's request is left out
             issue(1.002, "WS", 5, 8, dev="8,0"), complete(1.009, "WS", 5, 8, dev="8,0")]
    done, unpaired = devpause.pairs(lines, "254,0")
    assert unpaired == 0
    kinds = sorted((rwbs, round(lat * 1e6)) for _, lat, rwbs, _ in done)
    assert kinds == [("FF", 100), ("WS", 200), ("WSM", 30)]


def test_request_sizes_per_kind():
    # Two 4 KiB writes and one of 32 KiB: the mean is 13.3 KiB, but most bytes went in the
    # 32 KiB one, which the byte-weighted median says.
    lines = []
    for i, n in enumerate((8, 8, 64)):
        t = 1 + i / 100
        lines += [issue(t, "WS", 1000 * i, n), complete(t + 0.0001, "WS", 1000 * i, n)]
    ws = devpause.analyse(*devpause.pairs(lines, None), 0.002)["kinds"]["WS"]
    assert round(ws["mean_kib"], 1) == 13.3
    assert ws["weighted_median_kib"] == 32


def test_a_missing_completion_does_not_shift_the_later_pairs():
    # The first issue of sector 8 never completes in the trace; the next two pair exactly.
    lines = [issue(1.000, "WSM", 8, 8),
             issue(1.010, "WSM", 8, 8), complete(1.0101, "WSM", 8, 8),
             issue(1.020, "WSM", 8, 8), complete(1.0201, "WSM", 8, 8)]
    done, unpaired = devpause.pairs(lines, None)
    assert unpaired == 1
    assert [round(lat * 1e6) for _, lat, *_ in done] == [100, 100]


def test_a_device_wide_pause_and_a_lone_slow_request():
    lines = []
    # 1 s of 0.1 ms writes every ms, but for ...
    for i in range(1000):
        t = 10.0 + i / 1000
        if not 10.5 <= t < 10.521:
            lines += [issue(t, "WS", 1000 + i * 64, 64),
                      complete(t + 0.0001, "WS", 1000 + i * 64, 64)]
    # ... a 20 ms stall of the device at 10.5 s: a request and the three issued after it all
    # complete at its end ...
    for j, t in enumerate((10.5001, 10.505, 10.51, 10.515)):
        lines += [issue(t, "WS", 900000 + j * 64, 64)]
    lines += [complete(10.5201, "WS", 900000 + j * 64, 64) for j in range(4)]
    # ... and at 10.8 s one slow request while others still complete fast.
    lines += [issue(10.8001, "WS", 800000, 64), complete(10.8081, "WS", 800000, 64)]
    r = devpause.analyse(*devpause.pairs(lines, None), 0.002)
    assert r["pauses"] == 2
    assert [round(x) for x in r["pause_ms"]] == [20, 8]
    # Issued while a request of the stall was in flight: its later requests (3 + 2 + 1), none
    # fast; while the lone slow one was: the 8 writes of 10.801 ... 10.808, all fast.
    assert r["issued_during_long"] == 6 + 8
    assert r["fast_during_long"] == 8


def test_command_line_reads_stdin_and_lines_up_seconds(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    # The report's measured window starts at unix 1000.0 s; the trace's clock is 900 s behind.
    (report / "summary.json").write_text(json.dumps(
        {"measure_start_unix_ms": 1_000_000, "measured_seconds": 3.0}))
    lines = [issue(100.1, "WS", 1, 8), complete(100.1001, "WS", 1, 8),
             issue(101.5, "WS", 2, 8), complete(101.53, "WS", 2, 8)]
    out = subprocess.run(
        [sys.executable, str(HERE / "devpause.py"), "-", "--report", str(report),
         "--clock-offset", "900"], input="\n".join(lines) + "\n", capture_output=True,
        text=True, check=True).stdout
    r = json.loads(out)
    assert r["pauses"] == 1
    assert r["pause_ms_by_second"] == [0.0, 30.0, 0.0]
    assert "1 in 1 s" in r["line"]
