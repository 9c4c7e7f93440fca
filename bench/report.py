#!/usr/bin/env python3
"""report.py - bench.sh's helper: checks and records runs, prints the table.

Python 3 standard library only. Subcommands (bench.sh calls them):

  snap NAME=PID|NAME=+PID|NAME=*PID...
                                   CPU ticks and peak RSS per process
  children PID                     the PIDs whose parent is PID
  check SCENARIO [warmup] < wrk-result
                                   exit 1 (reason on stdout) on socket
                                   errors, unexpected statuses or (but
                                   for a warm-up) no request completed
  field NAME < json                prints one field
  brief < wrk-result | record      one line: req/s, p50, p99
  record scenario SYS SCEN REP RESULT BEFORE AFTER CLK_TCK NOTE
  record redis REP CSV-LINE        redis-benchmark --csv GET line
  record pgbench REP OUTPUT LOG... pgbench output and per-transaction logs
  record http REP RESULT           wrk against bare_http
  record nng REP LINE              bare_nng client's BARE_NNG line
  report RUNS PREFIX META [FAILURE...]
                                   prints the table; writes PREFIX.json,
                                   PREFIX.md and PREFIX.png (gnuplot)

A wrk result is the JSON that bench/wrk/catalog.lua prints after
BENCH_RESULT. A record is one line of RUNS (JSON), with rps, p50_ms,
p99_ms and, for scenarios, CPU seconds and peak RSS per process.
"""

import json
import os
import re
import statistics
import subprocess
import sys

SCENARIOS = ["hot", "cold", "zipf", "notfound", "mixed"]
SYSTEMS = ["ours", "peer"]
CEILINGS = [
    ("redis", "redis-benchmark GET"),
    ("pgbench", "pgbench select by id"),
    ("http", "bare evhttp"),
    ("nng", "bare NNG req/rep"),
]


def die(msg):
    print("report.py: " + msg, file=sys.stderr)
    sys.exit(2)


def socket_errors(res):
    e = res.get("errors", {})
    return sum(e.get(k, 0) for k in ("connect", "read", "write", "timeout"))


def allowed(scenario, status):
    if scenario == "notfound":
        return status == 404
    return 200 <= status < 300


def check(scenario, res, warmup=False):
    """Returns a reason why the run failed, or None. A warm-up may complete
    no request at all (on a busy machine the peer's first misses wait for
    new PostgreSQL connections longer than a 1 s warm-up): it only warms."""
    why = []
    if res.get("requests", 0) <= 0 and not warmup:
        why.append("no request completed")
    if socket_errors(res) > 0:
        why.append("socket errors %s" % json.dumps(res["errors"]))
    bad = {s: n for s, n in res.get("statuses", {}).items()
           if not allowed(scenario, int(s))}
    if bad:
        why.append("unexpected statuses %s" % json.dumps(bad))
    return "; ".join(why) or None


def non2xx(res):
    return sum(n for s, n in res.get("statuses", {}).items()
               if not 200 <= int(s) < 300)


def proc_stat(pid):
    """(ppid, utime+stime ticks) of pid, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    # Field 2 (comm) may hold spaces and parentheses: cut after the last ')'.
    f = stat[stat.rindex(")") + 2:].split()
    return int(f[1]), int(f[11]) + int(f[12])


def proc_hwm(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_of(ppid):
    """PIDs whose parent is ppid, in order."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st and st[0] == ppid:
                out.append(int(entry))
    return sorted(out)


def snapshot(specs):
    """Lines "NAME PID TICKS HWM_KB", one per process, for each spec:
    NAME=PID (one process), NAME=+PID (PID and its children, counted as
    one) or NAME=*PID (each child of PID as NAME-1, NAME-2, ... by PID)."""
    lines = []

    def line(name, pids):
        for pid in pids:
            st = proc_stat(pid)
            if st:
                lines.append("%s %d %d %d" % (name, pid, st[1],
                                              proc_hwm(pid)))

    for spec in specs:
        name, pid = spec.split("=", 1)
        if pid.startswith("+"):
            pid = int(pid[1:])
            line(name, [pid] + children_of(pid))
        elif pid.startswith("*"):
            for i, kid in enumerate(children_of(int(pid[1:]))):
                line("%s-%d" % (name, i + 1), [kid])
        else:
            line(name, [int(pid)])
    return "\n".join(lines)


def parse_snapshot(text):
    """{name: {pid: (ticks, hwm_kb)}}"""
    out = {}
    for line in text.strip().splitlines():
        name, pid, ticks, hwm = line.split()
        out.setdefault(name, {})[int(pid)] = (int(ticks), int(hwm))
    return out


def record_scenario(sysname, scen, rep, res, before, after, clk, note):
    res = json.loads(res)
    b, a = parse_snapshot(before), parse_snapshot(after)
    clk = float(clk)
    cpu, rss = {}, {}
    # Per PID: a backend that exits during the run takes its ticks with
    # it (a small undercount); one that starts counts from zero.
    for name, procs in a.items():
        before_procs = b.get(name, {})
        ticks = sum(max(t - before_procs.get(pid, (0, 0))[0], 0)
                    for pid, (t, _) in procs.items())
        cpu[name] = ticks / clk
        rss[name] = max(h for _, h in procs.values())
    notes = [note] if note else []
    if res.get("reused_ids", 0) > 0:
        notes.append("%d ids asked twice" % res["reused_ids"])
    xc = res.get("x_cache", {})
    n = sum(xc.values())
    # The X-Cache answer we expect for every request (ours only).
    expect = {"hot": "HIT", "cold": "MISS"}.get(scen)
    if n and expect and xc.get(expect, 0) < n:
        notes.append("X-Cache %s for %.1f%% only (%s)"
                     % (expect, 100.0 * xc.get(expect, 0) / n,
                        json.dumps(xc, sort_keys=True)))
    elif n and xc.get("BYPASS", 0):
        notes.append("X-Cache BYPASS %d of %d" % (xc["BYPASS"], n))
    return {
        "kind": "scenario", "system": sysname, "scenario": scen,
        "repeat": int(rep), "rps": res["rps"],
        "p50_ms": res["p50_us"] / 1000, "p99_ms": res["p99_us"] / 1000,
        "requests": res["requests"], "duration_s": res["duration_s"],
        "non2xx": non2xx(res), "socket_errors": socket_errors(res),
        "statuses": res["statuses"], "x_cache": res.get("x_cache", {}),
        "cpu_s": cpu, "rss_kb": rss,
        "note": "; ".join(notes), "wrk": res,
    }


def record_redis(rep, line):
    # "GET","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
    # "p95_latency_ms","p99_latency_ms","max_latency_ms"
    f = [x.strip('"') for x in line.strip().split(",")]
    if len(f) < 7 or f[0] != "GET":
        die("not a redis-benchmark GET line: " + line)
    return {"kind": "redis", "repeat": int(rep), "rps": float(f[1]),
            "p50_ms": float(f[4]), "p99_ms": float(f[6])}


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))
    return sorted_values[i]


def record_pgbench(rep, output, logs):
    text = open(output).read()
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)",
                  text)
    if not m:
        die("no tps in pgbench output:\n" + text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    lat = []
    for path in logs:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    lat.append(int(parts[2]))
    lat.sort()
    if failed and int(failed.group(1)) > 0:
        die("pgbench: %s failed transactions" % failed.group(1))
    return {"kind": "pgbench", "repeat": int(rep), "rps": float(m.group(1)),
            "p50_ms": percentile(lat, 50) / 1000,
            "p99_ms": percentile(lat, 99) / 1000, "samples": len(lat)}


def record_http(rep, res):
    res = json.loads(res)
    return {"kind": "http", "repeat": int(rep), "rps": res["rps"],
            "p50_ms": res["p50_us"] / 1000, "p99_ms": res["p99_us"] / 1000,
            "wrk": res}


def record_nng(rep, line):
    kv = dict(x.split("=", 1) for x in line.split()[1:])
    if int(kv.get("errors", "1")) != 0:
        die("bare_nng reported errors: " + line)
    return {"kind": "nng", "repeat": int(rep), "rps": float(kv["rps"]),
            "p50_ms": int(kv["p50_us"]) / 1000,
            "p99_ms": int(kv["p99_us"]) / 1000}


def brief(obj):
    if "p50_us" in obj:
        p50, p99 = obj["p50_us"] / 1000, obj["p99_us"] / 1000
    else:
        p50, p99 = obj["p50_ms"], obj["p99_ms"]
    s = "%.0f req/s, p50 %.2f ms, p99 %.2f ms" % (obj["rps"], p50, p99)
    if "statuses" in obj:
        s += ", statuses %s" % json.dumps(obj["statuses"], sort_keys=True)
    return s


# --- the report ------------------------------------------------------------


def spread(values):
    """median, min, max of a non-empty list."""
    return {"median": statistics.median(values), "min": min(values),
            "max": max(values), "n": len(values)}


def aggregate(runs):
    agg = {"scenarios": {}, "ceilings": {}, "skipped": {}}
    for sysname in SYSTEMS:
        for scen in SCENARIOS:
            rs = [r for r in runs if r["kind"] == "scenario"
                  and r["system"] == sysname and r["scenario"] == scen]
            skipped = [r for r in rs if "skipped" in r]
            rs = [r for r in rs if "skipped" not in r]
            if skipped and not rs:
                agg["skipped"]["%s/%s" % (sysname, scen)] = \
                    skipped[0]["skipped"]
            if not rs:
                continue
            procs = sorted({p for r in rs for p in r["cpu_s"]},
                           key=proc_order)
            cpu = {p: spread([r["cpu_s"].get(p, 0) * 1000
                              / max(r["requests"], 1) for r in rs])
                   for p in procs}
            total = spread([sum(r["cpu_s"].values()) * 1000
                            / max(r["requests"], 1) for r in rs])
            agg["scenarios"]["%s/%s" % (sysname, scen)] = {
                "system": sysname, "scenario": scen,
                "rps": spread([r["rps"] for r in rs]),
                "p50_ms": spread([r["p50_ms"] for r in rs]),
                "p99_ms": spread([r["p99_ms"] for r in rs]),
                "non2xx": sum(r["non2xx"] for r in rs),
                "socket_errors": sum(r["socket_errors"] for r in rs),
                "requests": sum(r["requests"] for r in rs),
                "cpu_s_per_1000": cpu,
                "cpu_s_per_1000_total": total,
                "peak_rss_kb": {p: max(r["rss_kb"].get(p, 0) for r in rs)
                                for p in procs},
                "notes": sorted({r["note"] for r in rs if r["note"]}),
            }
    for kind, label in CEILINGS:
        rs = [r for r in runs if r["kind"] == kind]
        if rs:
            agg["ceilings"][kind] = {
                "label": label,
                "rps": spread([r["rps"] for r in rs]),
                "p50_ms": spread([r["p50_ms"] for r in rs]),
                "p99_ms": spread([r["p99_ms"] for r in rs]),
            }
    chain = []
    for rep in sorted({r["repeat"] for r in runs}):
        by = {r["kind"]: r["rps"] for r in runs if r["repeat"] == rep
              and r["kind"] in ("http", "nng", "redis")}
        if len(by) == 3 and all(v > 0 for v in by.values()):
            chain.append(1 / (1 / by["http"] + 1 / by["nng"]
                              + 1 / by["redis"]))
    if chain:
        agg["ceilings"]["chain"] = {
            "label": "chain limit 1/(1/http+1/nng+1/redis)",
            "rps": spread(chain)}
    return agg


def proc_order(name):
    order = ["gateway", "replica", "node-primary", "node-worker", "redis",
             "postgres"]
    for i, prefix in enumerate(order):
        if name.startswith(prefix):
            return (i, name)
    return (len(order), name)


def ratios(agg):
    sc, ce = agg["scenarios"], agg["ceilings"]
    out = {}

    def med(d):
        return d["rps"]["median"]

    for scen in SCENARIOS:
        o, p = sc.get("ours/" + scen), sc.get("peer/" + scen)
        if o and p and med(p) > 0:
            out["ours/peer " + scen] = med(o) / med(p)
    if "ours/hot" in sc and "chain" in ce:
        out["ours/chain-limit hot"] = med(sc["ours/hot"]) / med(ce["chain"])
    if "ours/cold" in sc and "pgbench" in ce:
        out["ours/pgbench cold"] = med(sc["ours/cold"]) / med(ce["pgbench"])
    return out


def fmt_rps(s):
    return "%.0f" % s["median"], "%.0f-%.0f" % (s["min"], s["max"])


def fmt_ms(s):
    return "%.2f" % s["median"]


def table_rows(agg):
    """The main table: a header and rows of strings."""
    head = ["scenario", "system", "req/s", "min-max", "p50 ms", "p99 ms",
            "p99 min-max", "non-2xx", "sock err", "CPU s/1k req"]
    rows = []
    for scen in SCENARIOS:
        for sysname in SYSTEMS:
            key = "%s/%s" % (sysname, scen)
            if key in agg["skipped"]:
                rows.append([scen, sysname, "skipped", "", "", "", "", "",
                             "", ""])
                continue
            a = agg["scenarios"].get(key)
            if not a:
                continue
            rps, rng = fmt_rps(a["rps"])
            p99 = a["p99_ms"]
            rows.append([scen, sysname, rps, rng, fmt_ms(a["p50_ms"]),
                         fmt_ms(p99),
                         "%.2f-%.2f" % (p99["min"], p99["max"]),
                         str(a["non2xx"]), str(a["socket_errors"]),
                         "%.3f" % a["cpu_s_per_1000_total"]["median"]])
    for kind, _ in CEILINGS + [("chain", "")]:
        c = agg["ceilings"].get(kind)
        if not c:
            continue
        rps, rng = fmt_rps(c["rps"])
        row = ["ceiling", c["label"], rps, rng]
        if "p50_ms" in c:
            row += [fmt_ms(c["p50_ms"]), fmt_ms(c["p99_ms"]),
                    "%.2f-%.2f" % (c["p99_ms"]["min"], c["p99_ms"]["max"])]
        else:
            row += ["", "", ""]
        rows.append(row + ["", "", ""])
    return head, rows


def proc_tables(agg):
    """Per system: a header of process names and rows of
    'cpu s/1k req / peak RSS MB' per scenario."""
    out = []
    for sysname in SYSTEMS:
        items = [a for k, a in agg["scenarios"].items()
                 if a["system"] == sysname]
        if not items:
            continue
        procs = sorted({p for a in items for p in a["cpu_s_per_1000"]},
                       key=proc_order)
        head = ["%s: scenario" % sysname] + procs
        rows = []
        for scen in SCENARIOS:
            a = agg["scenarios"].get("%s/%s" % (sysname, scen))
            if not a:
                continue
            row = [scen]
            for p in procs:
                c = a["cpu_s_per_1000"].get(p)
                m = a["peak_rss_kb"].get(p, 0) / 1024
                row.append("%.3f / %.0f" % (c["median"], m) if c else "")
            rows.append(row)
        out.append((head, rows))
    return out


def text_table(head, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(head, widths))
             .rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(x).ljust(w) for x, w in
                               zip(r, widths)).rstrip())
    return "\n".join(lines)


def md_table(head, rows):
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(lines)


def describe(meta):
    c = meta["config"]
    m = meta["machine"]
    return ("%s run %s: %d replica(s), %d gateway(s) (%d threads), wrk %d "
            "connections / %d threads, %d s after %d s warm-up, %d "
            "repeat(s), %d products (answer %d B, cache entry %d B), "
            "LOG_LEVEL=%s; %s CPUs (%s), kernel %s"
            % (meta["mode"], meta["timestamp"], c["replicas"], c["gateways"],
               c["gateway_threads"], c["connections"], c["threads"],
               c["duration_s"], c["warmup_s"], c["repeat"], c["products"],
               c["body_bytes"], c["cache_value_bytes"], c["log_level"],
               m["cpus"], m["cpu_model"], m["kernel"]))


def notes_lines(agg):
    out = ["%s: skipped: %s" % (k, v) for k, v in
           sorted(agg["skipped"].items())]
    for key, a in sorted(agg["scenarios"].items()):
        for n in a["notes"]:
            out.append("%s: %s" % (key, n))
    return out


def chart(agg, path, title):
    """Two panels, req/s and p99 per scenario, ours next to the peer,
    with min-max error bars. Returns gnuplot's error text or None."""
    data = []
    for scen in SCENARIOS:
        row = [scen]
        for metric in ("rps", "p99_ms"):
            for sysname in SYSTEMS:
                a = agg["scenarios"].get("%s/%s" % (sysname, scen))
                if a:
                    s = a[metric]
                    row += ["%g" % s["median"], "%g" % s["min"],
                            "%g" % s["max"]]
                else:
                    row += ["?", "?", "?"]
        data.append(" ".join(row))
    chain = agg["ceilings"].get("chain")
    chain_line = ""
    if chain:
        chain_line = (", \\\n     %g with lines dt 2 lw 2 lc rgb '#555555' "
                      "title 'chain limit (ceilings)'"
                      % chain["rps"]["median"])
    script = """
set terminal pngcairo size 1200,900 noenhanced font ",10"
set output '%s'
$data << EOD
%s
EOD
set datafile missing '?'
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.7 border -1
set boxwidth 0.9
set grid ytics
set key outside bottom center horizontal
set yrange [0:*]
set multiplot layout 2,1 title '%s'
set title 'requests/s (median, min-max bars)'
plot $data using 2:3:4:xtic(1) title 'ours' lc rgb '#1f77b4', \\
     '' using 5:6:7 title 'peer (express-cache-aside)' lc rgb '#ff7f0e'%s
set title 'p99 latency, ms (median, min-max bars)'
plot $data using 8:9:10:xtic(1) title 'ours' lc rgb '#1f77b4', \\
     '' using 11:12:13 title 'peer (express-cache-aside)' lc rgb '#ff7f0e'
unset multiplot
""" % (path, "\n".join(data), title.replace("'", ""), chain_line)
    try:
        p = subprocess.run(["gnuplot"], input=script, text=True,
                           capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    if p.returncode != 0:
        return p.stderr.strip() or "gnuplot exited %d" % p.returncode
    return None


def report(runs_path, prefix, meta, failures):
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    meta = json.loads(meta)
    agg = aggregate(runs)
    rat = ratios(agg)
    head, rows = table_rows(agg)
    ptables = proc_tables(agg)
    notes = notes_lines(agg)
    title = describe(meta)

    out = [title, "", text_table(head, rows), "",
           "CPU seconds per 1000 requests / peak RSS (VmHWM) MB per "
           "process (postgres: all its processes, largest RSS):"]
    for h, r in ptables:
        out += ["", text_table(h, r)]
    out += ["", "Ratios (requests/s, medians):"]
    out += ["  %-24s %.2f" % (k, v) for k, v in rat.items()]
    if notes:
        out += ["", "Notes:"] + ["  " + n for n in notes]
    if failures:
        out += ["", "FAILED runs:"] + ["  " + f for f in failures]
    print("\n".join(out))

    doc = dict(meta)
    doc.update({"runs": runs, "aggregate": agg, "ratios": rat,
                "failures": failures})
    with open(prefix + ".json", "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")

    md = ["# Benchmark %s" % meta["timestamp"], "", title, "",
          md_table(head, rows), "",
          "CPU seconds per 1000 requests / peak RSS (VmHWM) MB per process "
          "(postgres: all its processes, largest RSS)."]
    for h, r in ptables:
        md += ["", md_table(h, r)]
    md += ["", "| ratio (requests/s, medians) | value |", "|---|---|"]
    md += ["| %s | %.2f |" % (k, v) for k, v in rat.items()]
    if notes:
        md += ["", "Notes:", ""] + ["- " + n for n in notes]
    if failures:
        md += ["", "**FAILED runs:**", ""] + ["- " + f for f in failures]
    md += ["", "![requests/s and p99](%s.png)" % prefix.rsplit("/", 1)[-1],
           ""]
    with open(prefix + ".md", "w") as f:
        f.write("\n".join(md))

    err = chart(agg, prefix + ".png", "catalog vs express-cache-aside, "
                + meta["timestamp"])
    if err:
        die("gnuplot failed: " + err)
    print("\nwrote %s.json, %s.md, %s.png" % (prefix, prefix, prefix))


def main(argv):
    if len(argv) < 2:
        die("usage: see the file's docstring")
    cmd = argv[1]
    if cmd == "check":
        why = check(argv[2], json.loads(sys.stdin.read()),
                    warmup=argv[3:4] == ["warmup"])
        if why:
            print(why)
            return 1
        return 0
    if cmd == "children":
        print("\n".join(str(p) for p in children_of(int(argv[2]))))
        return 0
    if cmd == "snap":
        print(snapshot(argv[2:]))
        return 0
    if cmd == "field":
        print(json.loads(sys.stdin.read())[argv[2]])
        return 0
    if cmd == "brief":
        print(brief(json.loads(sys.stdin.read())))
        return 0
    if cmd == "record":
        kind, args = argv[2], argv[3:]
        if kind == "scenario":
            rec = record_scenario(*args)
        elif kind == "redis":
            rec = record_redis(*args)
        elif kind == "pgbench":
            rec = record_pgbench(args[0], args[1], args[2:])
        elif kind == "http":
            rec = record_http(*args)
        elif kind == "nng":
            rec = record_nng(*args)
        else:
            die("unknown record kind " + kind)
        print(json.dumps(rec, sort_keys=True))
        return 0
    if cmd == "report":
        report(argv[2], argv[3], argv[4], argv[5:])
        return 0
    die("unknown command " + cmd)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
