#!/usr/bin/env python3
"""One table of issue 20's targets from the files perf/run.sh's steps left (perf/run.sh runs it).

Reads each script's own outputs in --results (datapath reports and fio JSON, memory.md,
partitions-10000.md, crosscore/, compression/, replicated/, tansu-<workload>/, iperf3.json) and
the steps file run.sh wrote (name, exit status, seconds, load before, load after, command, end
time), and prints markdown: per target Strata's figure, the limit measured in the same run,
Tansu's figure of the same day when there is one, and the command; then the machine, the load
and every step's status. A figure that is missing says why (the step failed, was skipped, or
its file is not there).
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess

ap = argparse.ArgumentParser()
for flag in ("results", "date", "steps", "du", "strata", "quick", "wall", "load-start", "note",
             "command"):
    ap.add_argument("--" + flag, default="")
A = ap.parse_args()
R, DATE = A.results, A.date


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


STEPS = {}
for line in open(A.steps) if os.path.exists(A.steps) else []:
    f = line.rstrip("\n").split("\t")
    if len(f) >= 7:
        STEPS[f[0]] = dict(rc=f[1], secs=f[2], load0=f[3], load1=f[4], cmd=f[5], end=f[6])


def ran(step):
    """The step ran in this invocation (files of an earlier one of the same day are not shown)."""
    return step in STEPS and STEPS[step]["rc"] != "-"


def missing(step, what="no result file"):
    s = STEPS.get(step)
    if s is None:
        return f"not run (step `{step}` not selected)"
    if s["rc"] == "-":
        return f"skipped: {s['cmd']}"
    if s["rc"] != "0":
        return f"**failed** (step `{step}` exited {s['rc']}; perf/tmp/run-{step}.err)"
    return what


def us(v):
    return "—" if v is None else f"{v / 1e3:.2f}"


def dist(d, keys=("p50_us", "p99_us", "p999_us", "max_us")):
    return " / ".join(us((d or {}).get(k)) for k in keys)


def task_ms(stat):
    try:
        return float(re.search(r"([\d.]+) msec task-clock", open(stat).read()).group(1))
    except (OSError, AttributeError):
        return None


def ns_per_msg(stat, n):
    ms = task_ms(stat)
    return None if ms is None or not n else ms * 1e6 / n


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def runs_of(pattern):
    """Report dirs matching a glob (one per round), in round order."""
    return sorted(p for p in glob.glob(pattern) if os.path.isdir(p))


def reports(pattern):
    """(report dir, summary) of each run matching a glob whose summary.json loads."""
    runs = ((p, load_json(p + "/summary.json")) for p in runs_of(pattern))
    return [(p, d) for p, d in runs if d]


def median_by_e2e_p99(runs):
    """The (report dir, summary) of median end-to-end p99 among `runs` (not empty)."""
    return sorted(runs, key=lambda pd: pd[1]["e2e_latency"]["p99_us"])[len(runs) // 2]


def device_pauses(report):
    """The disk's pauses during the run of a report dir (perf/devpause.py), as a sentence."""
    d = load_json(report + ".devpause.json")
    return f"; the disk during this run: {d['line']}" if d and d.get("line") else ""


DP = f"{R}/{DATE}-datapath"


def fio_job(job):
    """The first job of a fio run's JSON output, if the fio step ran and wrote it."""
    j = load_json(f"{DP}/fio-{job}.json") if ran("fio") else None
    return j["jobs"][0] if j else None


def fio(job):
    j = fio_job(job)
    return max(j["read"]["bw_bytes"], j["write"]["bw_bytes"]) / 1e6 if j else None


def fio_latency(job):
    """A fio job's write latency (submission to completion) as 'p50 / p99 / p99.9 / max' ms."""
    j = fio_job(job)
    lat = j and j["write"].get("lat_ns")
    pct = lat and lat.get("percentile")
    if not pct:
        return None
    ms = [pct.get(k) for k in ("50.000000", "99.000000", "99.900000")] + [lat.get("max")]
    return " / ".join("—" if v is None else f"{v / 1e6:.2f}" for v in ms)


def tansu(workload):
    for base in (R, "perf/results"):
        d = load_json(f"{base}/{DATE}-tansu-{workload}/summary.json")
        if d:
            return d
    return None


def tansu_cell(workload, fmt):
    d = tansu(workload)
    if d:
        return fmt(d) + f" (`{DATE}-tansu-{workload}`)"
    s = STEPS.get("tansu")
    if s and s["rc"] == "-":
        return "not run: " + s["cmd"]
    return missing("tansu", "no Tansu run of this day") if s else "no Tansu run of this day"


def cmd(*steps):
    """The steps whose command made the row (the exact commands are under Steps)."""
    return ", ".join(f"`{s}`" + ("" if STEPS[s]["rc"] == "0" else " (failed)")
                     for s in steps if ran(s)) or "—"


def produce_runs(prefix, step):
    """(msgs/s, MB/s, broker ns/msg, summary) of each round of a produce report."""
    rows = []
    for p in runs_of(prefix) if ran(step) else []:
        d = load_json(p + "/summary.json")
        if d and d.get("produce"):
            rows.append((d["produce"]["msgs_per_s"], d["produce"]["mb_per_s"],
                         ns_per_msg(p + ".stat", d["produced_total"]), d))
    return rows


def fmt_produce(rows, step):
    if not rows:
        return missing(step)
    mid = sorted(rows, key=lambda r: r[1])[len(rows) // 2]
    cpu = med(r[2] for r in rows)
    each = ", ".join(f"{r[1]:.0f}" for r in rows)
    return (f"**{med(r[1] for r in rows):.0f} MB/s** ({med(r[0] for r in rows) / 1e3:.0f}k msgs/s"
            + (f"; runs {each}" if len(rows) > 1 else "") + ")"
            + (f", broker CPU **{cpu:.0f} ns/msg**" if cpu else "")
            + f"; ack p50/p99/p99.9/max {dist(mid[3]['ack_latency'])} ms")


def ratio(a, b):
    return f" = **{a / b * 100:.0f}%**" if a and b else ""


rows = []  # (target, scenario, strata, limit, tansu, command)

# 1: produce
p1k = produce_runs(f"{DP}/produce-1kb-B*[0-9]", "produce")
p100 = produce_runs(f"{DP}/produce-100b-B*[0-9]", "produce")
fsync = {j: fio(f"write-fdatasync-{j}") for j in ("256k", "1m", "4m", "8m")}
fio16 = {k: fio(f"write-fdatasync-256k-16f-{k}") for k in ("fresh", "written")}
seqw = fio("seqwrite-1m-qd8")
mb1k = med(r[1] for r in p1k)
# The broker's own data writes (WS requests of the block trace of each 1 KiB run).
ws = [((load_json(p + ".devpause.json") or {}).get("kinds") or {}).get("WS")
      for p in runs_of(f"{DP}/produce-1kb-B*[0-9]")] if ran("produce") else []
ws = [w for w in ws if w and "mean_kib" in w]
own = ("the broker's data writes in this run (block trace): mean "
       + " / ".join(f"{w['mean_kib']:.0f}" for w in ws) + " KiB, byte-weighted median "
       + " / ".join(f"{w['weighted_median_kib']:.0f}" for w in ws) + " KiB<br>") if ws else ""
lim = own + ("fio write+fdatasync each, qd 1: " + " / ".join(
    f"{j} {v:.0f}" if v else f"{j} —" for j, v in fsync.items()) + " MB/s"
    + (f"; at 8 MiB (the largest write the broker issues){ratio(mb1k, fsync['8m'])}"
       if fsync["8m"] else "")
    + (f"<br>the broker's pattern, 16 files at once, 256 KiB write+fdatasync each: into fresh "
       f"fallocated space (as new segments) {fio16['fresh']:.0f} MB/s{ratio(mb1k, fio16['fresh'])}"
       f", into written blocks {fio16['written']:.0f} MB/s{ratio(mb1k, fio16['written'])}"
       if fio16["fresh"] and fio16["written"] else "")
    ) if any(fsync.values()) else "fio: " + missing("fio")
rows.append(("1", "1 KiB max-rate produce, 16 partitions, fdatasync before every ack",
             fmt_produce(p1k, "produce"), lim,
             tansu_cell("max-rate-1t-16p-1kb",
                        lambda d: f"{d['produce']['mb_per_s']:.0f} MB/s "
                                  f"({d['produce']['msgs_per_s'] / 1e3:.0f}k msgs/s), "
                                  "memory storage"),
             cmd("produce", "fio")))
rows.append(("1", "100 B max-rate produce", fmt_produce(p100, "produce"),
             "— (CPU-bound: broker CPU per message is the figure)", "not run (target 1 is 1 KiB)",
             cmd("produce")))
pf = produce_runs(f"{DP}/stall-B*[0-9]-produce", "stall")
mbf = med(r[1] for r in pf)
pat = {k: fio(f"write-256k-16f-sync{k}") for k in (0, 4)}
rows.append(("1", "1 KiB max-rate produce, `--flush-ms 1000` (periodic flush)",
             fmt_produce(pf, "stall"),
             (f"fio O_DIRECT seq write 1 MiB qd 8: {seqw:.0f} MB/s{ratio(mbf, seqw)}" if seqw
              else "fio: " + missing("fio"))
             + (f"<br>the broker's pattern, 16 files of 256 KiB writes: no fdatasync "
                f"{pat[0]:.0f} MB/s{ratio(mbf, pat[0])}, an fdatasync every 1 MiB per file "
                f"(the default slice) {pat[4]:.0f} MB/s{ratio(mbf, pat[4])}"
                if pat[0] and pat[4] else ""),
             "— (Tansu has no disk)", cmd("stall", "fio")))
st = reports(f"{DP}/stall-B*[0-9]") if ran("stall") else []
if st:
    p, d = st[len(st) // 2]
    worst = max((t["ack_p99_us"] or 0) for t in d["timeline"]) if d["timeline"] else None
    cell = (f"e2e 500k msgs/s of 100 B right after the 1 KiB fill: ack {dist(d['ack_latency'])}, "
            f"e2e {dist(d['e2e_latency'])} ms; worst second's ack p99 {us(worst)} ms"
            f"{device_pauses(p)}")
else:
    cell = missing("stall")
rows.append(("1", "periodic-flush stall reproducer (issue 20)", cell, "—", "—", cmd("stall")))
sf = reports(f"{DP}/stall-B*[0-9]-fresh") if ran("stall") else []
if sf:
    p, d = median_by_e2e_p99(sf)
    worst = max((t["ack_p99_us"] or 0) for t in d["timeline"]) if d["timeline"] else None
    cell = (f"e2e 1M msgs/s of 100 B on a fresh broker: ack {dist(d['ack_latency'])}, e2e "
            f"{dist(d['e2e_latency'])} ms; worst second's ack p99 {us(worst)} ms"
            f"{device_pauses(p)}")
else:
    cell = missing("stall")
rows.append(("1", "`--flush-ms 1000` on a fresh broker at target 2's rate", cell,
             "target 2's: p99 ≤ 1.5 ms, p99.9 ≤ 3 ms, max ≤ 10 ms", "—", cmd("stall")))

# 2: tails
dsync_fio = fio_latency("dsync-32k-2x8f-1750iops")
direct_fio = fio_latency("direct-32k-2x8f-1750iops")
for rate in ("1M", "500k"):
    es = reports(f"{DP}/e2e-{rate}-B*[0-9]") if ran("e2e") else []
    if es:
        p, d = median_by_e2e_p99(es)
        cell = (f"ack {dist(d['ack_latency'])}; **e2e {dist(d['e2e_latency'])}** ms "
                f"({d['produce']['msgs_per_s'] / 1e3:.0f}k msgs/s in, "
                f"{d['consume']['msgs_per_s'] / 1e3:.0f}k out){device_pauses(p)}")
    else:
        cell = missing("e2e")
    t = (tansu_cell("e2e-1m-1t-16p-100b",
                    lambda d: f"ack {dist(d['ack_latency'])}; e2e {dist(d['e2e_latency'])} ms")
         if rate == "1M" else "—")
    lim = "target at 1M: p99 ≤ 1.5 ms, p99.9 ≤ 3 ms, max ≤ 10 ms"
    if rate == "1M" and dsync_fio:
        lim = (f"fio, the workload's durable writes alone (2 writers, each a 32 KiB O_DSYNC "
               f"write 1,750 times a second to 8 files in turn, fresh space): write latency "
               f"**{dsync_fio}** ms, to which every record adds up to the 0.5 ms linger ({lim})")
        if direct_fio:
            lim += f"; the same writes without O_DSYNC (no flush at all): **{direct_fio}** ms"
    else:
        lim = f"none ({lim})"
    rows.append(("2", f"e2e 100 B at {rate} msgs/s, 16 partitions, fdatasync per ack "
                      "(p50 / p99 / p99.9 / max)", cell, lim, t,
                 cmd("e2e", "fio") if rate == "1M" else cmd("e2e")))

# 3: catch-up
cs = []
for p in runs_of(f"{DP}/consume-B*[0-9]") if ran("consume") else []:
    d, fill = load_json(p + "/summary.json"), load_json(p + "-fill/summary.json")
    if d:
        cs.append((d["consume"]["mb_per_s"], ns_per_msg(p + ".stat", d["consumed_total"]),
                   d["consumed_total"], (fill or {}).get("produced_total")))
seqr = fio("seqread-1m-qd8")
if cs:
    mb = med(c[0] for c in cs)
    cpu = med(c[1] for c in cs)
    c = cs[0]
    cell = (f"**{mb:.0f} MB/s**" + (f", broker CPU **{cpu:.0f} ns/msg**" if cpu else "")
            + f" ({c[2] * 1024 / 1e9:.1f} GB read"
            + (f" of ≈{c[3] * 1024 / 1e9:.1f} GB written before retention" if c[3] else "") + ")")
else:
    cell = missing("consume")
rows.append(("3", "catch-up: `bench consume` from the earliest offset, 1 KiB, page cache dropped",
             cell, (f"fio O_DIRECT seq read 1 MiB qd 8: {seqr:.0f} MB/s"
                    + (ratio(med(c[0] for c in cs), seqr) if cs else "")) if seqr
             else "fio: " + missing("fio"),
             "— (Tansu keeps data in memory)", cmd("consume", "fio")))

# 4: memory
mem = f"{R}/{DATE}-memory.md"
cells = []
if os.path.exists(mem) and ran("memory"):
    for line in open(mem):
        f = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(f) == 6 and f[1].endswith("MiB") and not f[0].startswith("config"):
            cells.append(f"{f[0]}: peak **{f[2]}** of bound {f[4]} ({f[5]})")
rows.append(("4", "broker RSS under 100k msgs/s of 1 KiB, 100 partitions",
             "<br>".join(cells) or missing("memory"),
             "the configured bound: tail caches + request budget (same row)", "—", cmd("memory")))

# 5: partitions
part = f"{R}/{DATE}-partitions-10000.md"
cell = missing("partitions")
if os.path.exists(part) and ran("partitions"):
    for line in open(part):
        f = [x.strip() for x in line.strip().strip("|").split("|")]
        if f and f[0] == "median" and len(f) == 20:
            cell = (f"creation {f[1]} s = **{f[2]} partitions/s**; RSS {f[4]} MB, du {f[8]} MiB "
                    f"when created; 1,000 active at {f[14]} msgs/s: **ack p99 {f[17]} ms** "
                    f"(p50 {f[16]}, p99.9 {f[18]}, max {f[19]})")
rows.append(("5", "10,000 partitions; 1,000 more active at 100k msgs/s of 1 KiB",
             cell, "none (targets: ≥ 2,000 partitions/s, ack p99 ≤ 10 ms)", "—",
             cmd("partitions")))

# 6: cross-core
cc = f"{R}/{DATE}-crosscore.md"
cell = missing("crosscore")
if os.path.exists(cc) and ran("crosscore"):
    text = open(cc).read()
    kinds = []
    for kind in ("one-shard", "local", "remote"):
        m = re.search(rf"^\| {kind} \| (\d+) \| (?:\*\*(\d+)\*\*|—)", text, re.M)
        if m:
            kinds.append(f"{kind} {m.group(2) + ' ns/msg' if m.group(2) else '— (no run)'}")
    m = re.search(r"Remote / local broker CPU per message: \*\*([\d.]+)×\*\* \(([^)]*)\)", text)
    cell = ("broker CPU: " + ", ".join(kinds)
            + (f"; remote / local **{m.group(1)}×** ({m.group(2)})" if m else
               "; no local/remote pair found (SO_REUSEPORT picked one kind only)"))
rows.append(("6", "produce to a partition on the other shard (`--shards 2`), 200k msgs/s of 100 B",
             cell, "— (a cost per message, not a rate)", "—", cmd("crosscore")))

# 7: compression
cmp_rows = []
for s in ("1kb", "1kb-lz4", "1kb-zstd"):
    rs = []
    for p in runs_of(f"{R}/{DATE}-compression/{s}-*-[0-9]*") if ran("compression") else []:
        if not re.fullmatch(rf"{re.escape(s)}-(base|new)-\d+", os.path.basename(p)):
            continue
        d = load_json(p + "/summary.json")
        if d:
            rs.append((d["produce"]["mb_per_s"], d["produce"]["msgs_per_s"],
                       ns_per_msg(p + ".stat", d["produced_total"]), d.get("tool_cpu_percent")))
    if rs:
        cpu = med(r[2] for r in rs)
        tool = med(r[3] for r in rs)
        cmp_rows.append(f"{s}: {med(r[0] for r in rs):.0f} MB/s "
                        f"({med(r[1] for r in rs) / 1e3:.0f}k msgs/s"
                        + (f", {len(rs)} runs" if len(rs) > 1 else "") + ")"
                        + (f", broker CPU **{cpu:.0f} ns/msg**" if cpu else "")
                        + (f", load tool {tool:.0f}% of its core" if tool is not None else ""))
rows.append(("7", "1 KiB max-rate produce, producer-compressed (uncompressed for reference)",
             "<br>".join(cmp_rows) or missing("compression"),
             "the load tool's one core when it is near 100% (it compresses)",
             "<br>".join(tansu_cell(f"max-rate-1t-16p-1kb-{c}",
                                    lambda d, c=c: f"{c}: {d['produce']['mb_per_s']:.0f} MB/s")
                         for c in ("lz4", "zstd")), cmd("compression")))

# 8: replicated
RP = f"{R}/{DATE}-replicated"


def rep_runs(kind):
    """(report dir, summary) of each run of a replicated scenario."""
    return reports(f"{RP}/{kind}-*-[0-9]*") if ran("replicated") else []


rf3, rf1 = ([d for _, d in rep_runs(k)] for k in ("max-rf3", "max-rf1"))
e2_runs = rep_runs("e2e")
e2 = [d for _, d in e2_runs]
tcp = load_json(f"{R}/{DATE}-iperf3.json") if ran("limits") else None
tcp = tcp["end"]["sum_received"]["bits_per_second"] / 8e6 if tcp else None
if rf3 or e2:
    parts = []
    if rf3 and rf1:
        m3 = med(d["produce"]["mb_per_s"] for d in rf3)
        m1 = med(d["produce"]["mb_per_s"] for d in rf1)
        parts.append(f"RF 3 **{m3:.0f} MB/s**, RF 1 {m1:.0f} MB/s: RF3/RF1 **{m3 / m1:.2f}**"
                     + f" ({len(rf3)} runs each)")
    errors = sum(d["produce"]["errors"] for d in rf3 + rf1 + e2)
    if e2:
        p, d = median_by_e2e_p99(e2_runs)
        parts.append(f"100k msgs/s of 100 B: ack {dist(d['ack_latency'])}, e2e "
                     f"{dist(d['e2e_latency'])} ms{device_pauses(p)}")
    parts.append(f"produce errors {errors}")
    cell = "; ".join(parts)
else:
    cell = missing("replicated")
rows.append(("8", "3 brokers (one CPU), RF 3, acks=all, 16 partitions", cell,
             f"loopback TCP (iperf3, one stream): {tcp:.0f} MB/s" if tcp else
             "loopback: " + missing("limits"), "— (Tansu memory storage does not replicate)",
             cmd("replicated")))

# ---- print ----
quick = bool(A.quick)
print(f"# Issue 20's targets, {DATE}" + (" — quick mode (QUICK=1)" if quick else ""))
print()
print(f"Command: `{A.command}` (wall time {int(A.wall or 0) // 60} min {int(A.wall or 0) % 60} s). "
      f"Broker and load tool: `{A.strata}`; work tree at {sh('git rev-parse --short HEAD')}"
      # (the run itself rewrites perf/results: only changes elsewhere count)
      + (" (with uncommitted changes)"
         if sh("git status --porcelain --untracked-files=no -- . ':!perf/results'") else "")
      + f". Each step's own files: `{R}/`.")
print()
model = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
disk = sh("df -T perf | awk 'NR==2 {print $2 \" on \" $1}'")
dev = sh("df perf | awk 'NR==2 {print $1}'")
size = sh(f"lsblk -dno SIZE {dev} 2>/dev/null").strip()
kind = ", virtio" if dev.startswith("/dev/vd") else ""
mem_gib = sh("free -g | awk '/Mem:/ {print $2}'")
print(f"Hardware: {model}, {sh('nproc')} CPUs, {mem_gib} GiB, "
      f"kernel {sh('uname -r')}, {disk}{' (' + size + kind + ')' if size else ''}. "
      "Broker pinned to CPU 0, "
      "load tool to CPU 1 (the three replicated brokers share CPU 0).")
print()
loads = [A.load_start] + [s["load1"] for s in STEPS.values() if s["load1"] != "-"]
ones = [float(x.split()[0]) for x in loads if x and x.split()]
busy = ones and max(ones) > 1.0
print(f"Load average (1 / 5 / 15 min) at the start {A.load_start}; over the steps the 1-minute "
      f"load ranged {min(ones):.2f}–{max(ones):.2f} on {sh('nproc')} CPUs." if ones else "")
if busy:
    print("**The machine was not quiet**: other work shared the two CPUs with the broker and the "
          "load tool, so rates and latencies are noisy (the platform notes: ±30 %, tails ±2×). "
          "The broker's CPU time per message (`perf stat -e task-clock` on the broker / messages) "
          "is the figure that moves least; no ratio of two rates from this run means much.")
if A.note:
    print()
    print(A.note)
if quick:
    print()
    print("Quick mode: 10 s per scenario, one round, a 10-s fill for the catch-up read, small "
          "segments and retention; a regression check for data-path changes, not the issue's "
          "sustained measurement. It takes no profile: the full mode records one of the 1 KiB "
          "produce (`perf/produce_profile.sh`); the latest profiles that explain what is left are "
          "in perf/results/2026-12-05-perf2.md (produce) and 2026-12-05-catchup.md (catch-up).")
if os.path.exists(A.du):
    v = [int(x) for x in open(A.du).read().split() if x.isdigit()]
    if v:
        print(f"Peak disk use of perf/tmp during the run (every broker's data, fio's file; "
              f"sampled every 2 s): {max(v) / 2**30:.1f} GiB.")
print()
print("| target | scenario | Strata | limit measured in this run | Tansu 0.6.0 (same day) | step |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(c.replace("|", "\\|") if i < 5 else c for i, c in enumerate(r)) + " |")
print()
print("## Steps\n")
print("| step | status | wall s | load before | load after | ended (UTC) |")
print("|---|---|---|---|---|---|")
for name, s in STEPS.items():
    status = "ok" if s["rc"] == "0" else "skipped" if s["rc"] == "-" else f"failed ({s['rc']})"
    print(f"| {name} | {status} | {s['secs']} | {s['load0']} | {s['load1']} | {s['end']} |")
print()
print("Exact commands (run from the repository root):\n")
for name, s in STEPS.items():
    if s["rc"] != "-":
        print(f"- `{name}`: `{s['cmd']}`")
print()
print(f"Datapath lines (one per run, with the load): `{R}/{DATE}-datapath.txt`; their reports: "
      f"`{DP}/`. Memory: `{mem}`; partitions: `{part}`; cross-core: `{cc}`; compression: "
      f"`{R}/{DATE}-compression.md`; replicated: `{RP}.md`; Tansu: `{R}/{DATE}-tansu-*.md`.")
