#!/usr/bin/env python3
"""Copied from the perfbench yardstick (scripts/summarize.py); the per-configuration table
here also shows each configuration's req/s as a share of the "floor" configuration of the
same run, and its answer size.

Parse h2load outputs + per-request log files written by bench.sh and print a
markdown summary (per run, then per configuration).

  summarize.py OUTDIR           (reads OUTDIR/runs.tsv written by bench.sh)
"""
import gzip
import math
import os
import re
import statistics
import sys

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def ms(tok):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", tok)
    return float(m.group(1)) * UNIT[m.group(2)]


def parse_h2load(path):
    t = open(path).read()
    r = {}
    m = re.search(r"finished in ([\d.]+(?:us|ms|s)), ([\d.]+) req/s", t)
    r["secs"], r["rps"] = ms(m.group(1)) / 1000.0, float(m.group(2))
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", t)
    r["total"], r["done"], r["ok"], r["failed"], r["errored"], r["timeout"] = map(int, m.groups())
    m = re.search(r"traffic: .*?, [\d.]+\w*B \((\d+)\) data", t)
    r["data_bytes"] = int(m.group(1)) if m else 0
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", t)
    r["lat_min"], r["lat_max"], r["lat_mean"], r["lat_sd"] = (ms(x) for x in m.groups())
    return r


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))  # nearest rank
    return sorted_vals[k]


def parse_log(path):
    vals = []
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1] == "200":
                vals.append(int(parts[2]) / 1000.0)  # us -> ms
    vals.sort()
    return {"n_logged": len(vals), "p50": pct(vals, 50), "p90": pct(vals, 90),
            "p99": pct(vals, 99), "p999": pct(vals, 99.9)}


def f(x, nd=2):
    return f"{x:.{nd}f}"


def main():
    out = sys.argv[1]
    rows = []
    for line in open(os.path.join(out, "runs.tsv")):
        if line.startswith("#") or not line.strip():
            continue
        label, run, h2, log, cpu_ticks, hz = line.rstrip("\n").split("\t")
        r = parse_h2load(h2)
        r.update(parse_log(log))
        r["label"], r["run"] = label, int(run)
        r["cpu_us_per_req"] = (int(cpu_ticks) / int(hz) * 1e6 / r["ok"]) if cpu_ticks not in ("", "-1") and r["ok"] else float("nan")
        rows.append(r)

    print("### Per run (in execution order)\n")
    print("| config | run | req/s | ok/total | failed+errored | DATA B/resp | min ms | mean ms | sd ms | max ms | p50 ms | p90 ms | p99 ms | p99.9 ms | server CPU us/req |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['run']} | {r['rps']:.0f} | {r['ok']}/{r['total']} | {r['failed'] + r['errored'] + r['timeout']} | "
              f"{r['data_bytes'] / max(r['ok'], 1):.1f} | {f(r['lat_min'], 3)} | {f(r['lat_mean'])} | {f(r['lat_sd'])} | {f(r['lat_max'])} | "
              f"{f(r['p50'])} | {f(r['p90'])} | {f(r['p99'])} | {f(r['p999'])} | {f(r['cpu_us_per_req'], 1)} |")

    print("\n### Per configuration (median over runs; req/s shows min-max)\n")
    print("| config | runs | req/s median (min-max) | of floor | mean latency ms | p50 ms | p99 ms | min ms | max ms (worst run) | server CPU us/req | DATA B/resp |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    labels = []
    for r in rows:
        if r["label"] not in labels:
            labels.append(r["label"])
    floor = [r["rps"] for r in rows if r["label"] == "floor"]
    floor = statistics.median(floor) if floor else float("nan")
    for lb in labels:
        rs = [r for r in rows if r["label"] == lb]
        med = lambda k: statistics.median(r[k] for r in rs)
        rps = [r["rps"] for r in rs]
        share = 100.0 * med('rps') / floor
        print(f"| {lb} | {len(rs)} | {med('rps'):.0f} ({min(rps):.0f}-{max(rps):.0f}) | {share:.1f} % | {f(med('lat_mean'))} | {f(med('p50'))} | "
              f"{f(med('p99'))} | {f(min(r['lat_min'] for r in rs), 3)} | {f(max(r['lat_max'] for r in rs))} | {f(med('cpu_us_per_req'), 1)} | "
              f"{statistics.median(r['data_bytes'] / max(r['ok'], 1) for r in rs):.0f} |")


if __name__ == "__main__":
    main()
