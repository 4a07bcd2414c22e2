"""Turning per-round figures into the Markdown summary: medians over rounds, paired differences
and ratios within each round (so load from other work on the machine cancels out), and the
budgets of issue 6."""

import re
import statistics

ANSI = re.compile(r"\x1b\[[0-9;]*m")
MIB = 1024.0
# The targets of scenarios 1–6 in table order; `shared` (subrelay on PostgreSQL and Redis) only
# with `bench/run --shared`.
SHOWN = ("direct", "nginx", "subrelay", "shared")


def strip_ansi(text):
    return ANSI.sub("", text)


def tag(sc):
    """A scenario's short name: its number, with `TLS` for scenario 5 over a TLS upstream."""
    return f"{sc['id']} TLS" if sc.get("tls") else str(sc["id"])


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec=".2f", none="–"):
    return none if value is None else format(value, spec)


def one_line(r):
    """A progress line for one measured round."""
    parts = [f"{r['rps']:8.0f} req/s" if r.get("p50_ms") is not None or "wrk" in r
             else f"{r.get('ok', 0)}/{r.get('total', 0)} ok"]
    if r.get("p50_ms") is not None:
        parts.append(f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms")
    if r.get("ttfb_p50_ms") is not None:
        parts.append(f"ttfb p50 {r['ttfb_p50_ms']:.3f} ms")
    parts.append(f"cpu {r['cpu_us']:.1f} µs/req")
    if r.get("rss_all_open_kib"):
        parts.append(f"rss all open {r['rss_all_open_kib'] / MIB:.1f} MiB")
    parts.append(f"peak {r['peak_kib'] / MIB:.1f} MiB")
    if r["errors"]:
        parts.append(f"ERRORS {r['errors']}")
    return ", ".join(parts)


# --- pairing within rounds ------------------------------------------------------------------


def by_round(rounds):
    """{round: {target: result}}"""
    out = {}
    for r in rounds:
        out.setdefault(r["round"], {})[r["target"]] = r
    return out


def paired(rounds, target, base, key, op):
    """Per-round op(target[key], base[key]); returns (median, min, max) or Nones."""
    values = []
    for per in by_round(rounds).values():
        a, b = per.get(target), per.get(base)
        if a and b and a.get(key) is not None and b.get(key) is not None:
            try:
                values.append(op(a[key], b[key]))
            except ZeroDivisionError:
                pass
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def diff(a, b):
    return a - b


def ratio(a, b):
    return a / b


def target_rows(result):
    rows = {}
    for r in result["rounds"]:
        rows.setdefault(r["target"], []).append(r)
    return rows


def summary(result, target):
    rs = target_rows(result).get(target, [])
    if not rs:
        return None
    pick = lambda key: med([r.get(key) for r in rs])  # noqa: E731
    return {
        "rps": pick("rps"), "p50_ms": pick("p50_ms"), "p99_ms": pick("p99_ms"),
        "cpu_us": pick("cpu_us"), "upstream_cpu_us": pick("upstream_cpu_us"),
        "peak_kib": max(r["peak_kib"] for r in rs),
        "lifetime_peak_kib": result.get("lifetime_peak_kib", {}).get(target),
        "errors": sum(r["errors"] for r in rs),
        "ttfb_p50_ms": pick("ttfb_p50_ms"), "ttft_p50_ms": pick("ttft_p50_ms"),
        "ttft_p99_ms": pick("ttft_p99_ms"), "ttfb_p99_ms": pick("ttfb_p99_ms"),
        "ok": sum(r.get("ok", 0) for r in rs), "total": sum(r.get("total", 0) for r in rs),
        "max_open": min((r.get("max_open", 0) for r in rs), default=0),
        "rss_before_kib": med([r.get("rss_before_kib") for r in rs]),
        "rss_all_open_kib": max((r.get("rss_all_open_kib") or 0 for r in rs), default=0),
        "open_at_all_open": min((r["open_at_all_open"] for r in rs
                                 if r.get("open_at_all_open") is not None), default=None),
        # (all open − idle before) / the requests actually open then, per round.
        "per_open_kib": med([(r["rss_all_open_kib"] - r["rss_before_kib"]) / r["open_at_all_open"]
                             for r in rs if r.get("rss_all_open_kib")
                             and r.get("rss_before_kib") is not None
                             and r.get("open_at_all_open")]),
        "keepalive_bytes": sum(r.get("keepalive_bytes", 0) for r in rs),
        "rounds": len(rs),
    }


# --- the budgets ----------------------------------------------------------------------------


def find(results, sid, tls=False):
    for r in results:
        if r["scenario"]["id"] == sid and bool(r["scenario"].get("tls")) == tls:
            return r
    return None


def budgets(results):
    """[(budget, measured text, limit text, verdict)] for the budgets of issue 6."""
    rows = []

    def ratio_row(sid, label, key="cpu_us"):
        res = find(results, sid)
        if not res:
            return
        m, lo, hi = paired(res["rounds"], "subrelay", "nginx", key, ratio)
        if m is None:
            return
        s, n = summary(res, "subrelay"), summary(res, "nginx")
        text = (f"{m:.2f}× ({s['cpu_us']:.1f} vs {n['cpu_us']:.1f} µs; "
                f"rounds {lo:.2f}–{hi:.2f}×)")
        rows.append((label, text, "≤ 2×", verdict(m <= 2.0)))

    def added_row(sid, label, key, limit_ms):
        res = find(results, sid)
        if not res:
            return
        m, lo, hi = paired(res["rounds"], "subrelay", "direct", key, diff)
        if m is None:
            return
        nm, _, _ = paired(res["rounds"], "nginx", "direct", key, diff)
        text = (f"{m:+.3f} ms (rounds {lo:+.3f}…{hi:+.3f}; nginx {fmt(nm, '+.3f')} ms)")
        rows.append((label, text, f"≤ +{limit_ms} ms", verdict(m <= limit_ms)))

    def per_stream_row(tls, label, limit):
        # RSS per open stream, subrelay / nginx within each round (issue 20).
        res = find(results, 5, tls)
        if not res:
            return
        values = []
        for per in by_round(res["rounds"]).values():
            a, b = per.get("subrelay"), per.get("nginx")
            if a and b and all(r.get("rss_all_open_kib") and r.get("open_at_all_open")
                               for r in (a, b)):
                pa = (a["rss_all_open_kib"] - a["rss_before_kib"]) / a["open_at_all_open"]
                pb = (b["rss_all_open_kib"] - b["rss_before_kib"]) / b["open_at_all_open"]
                if pb > 0:
                    values.append((pa / pb, pa, pb))
        if not values:
            return
        m = statistics.median(v[0] for v in values)
        pa = statistics.median(v[1] for v in values)
        pb = statistics.median(v[2] for v in values)
        text = f"{m:.2f}× ({pa:.1f} vs {pb:.1f} KiB per open stream)"
        if limit is None:
            rows.append((label, text, "reported", "–"))
        else:
            rows.append((label, text, f"≤ {limit}×", verdict(m <= limit)))

    def memory_row(sid, label, limit_mib, per_count=None):
        res = find(results, sid)
        if not res:
            return
        s = summary(res, "subrelay")
        peak = max(s["peak_kib"], s["lifetime_peak_kib"] or 0) / MIB
        n = summary(res, "nginx")
        nginx_peak = max(n["peak_kib"], n["lifetime_peak_kib"] or 0) / MIB if n else None
        text = f"{peak:.1f} MiB (nginx {fmt(nginx_peak, '.1f')} MiB)"
        judged = peak
        # Scale by the streams actually open when "all open" was read, not those sent.
        count = s.get("open_at_all_open") or res["scenario"].get("count")
        if per_count and count and count < per_count and s["rss_before_kib"] is not None:
            # Fewer streams than the budget's count (file-descriptor limit): scale the part
            # that grows with the streams.
            idle = s["rss_before_kib"] / MIB
            judged = idle + (peak - idle) * per_count / count
            text = (f"{peak:.1f} MiB with {count:,} streams, ≈ {judged:.0f} MiB scaled to "
                    f"{per_count:,} (nginx {fmt(nginx_peak, '.1f')} MiB)")
        rows.append((label, text, f"≤ {limit_mib} MiB", verdict(judged <= limit_mib)))

    def variant_row(sid, target, base, label, limit, key="cpu_us"):
        # target / base within each round of a scenario of one subrelay's variants.
        res = find(results, sid)
        if not res:
            return
        m, lo, hi = paired(res["rounds"], target, base, key, ratio)
        if m is None:
            return
        s, b = summary(res, target), summary(res, base)
        text = f"{m:.2f}× ({s[key]:.1f} vs {b[key]:.1f} µs; rounds {lo:.2f}–{hi:.2f}×)"
        if limit is None:
            rows.append((label, text, "reported", "–"))
        else:
            rows.append((label, text, f"≤ {limit}×", verdict(m <= limit)))

    def per_item_row(sid, target, base, label, limit):
        # RSS per open item, target / base within each round (each on a fresh subrelay).
        res = find(results, sid)
        if not res:
            return
        values = []
        for per in by_round(res["rounds"]).values():
            a, b = per.get(target), per.get(base)
            if a and b and all(r.get("rss_all_open_kib") and r.get("open_at_all_open")
                               for r in (a, b)):
                pa = (a["rss_all_open_kib"] - a["rss_before_kib"]) / a["open_at_all_open"]
                pb = (b["rss_all_open_kib"] - b["rss_before_kib"]) / b["open_at_all_open"]
                if pb > 0:
                    values.append((pa / pb, pa, pb))
        if not values:
            return
        m = statistics.median(v[0] for v in values)
        text = (f"{m:.2f}× ({statistics.median(v[1] for v in values):.1f} vs "
                f"{statistics.median(v[2] for v in values):.1f} KiB; rounds "
                f"{min(v[0] for v in values):.2f}–{max(v[0] for v in values):.2f}×)")
        if limit is None:
            rows.append((label, text, "reported", "–"))
        else:
            rows.append((label, text, f"≤ {limit}×", verdict(m <= limit)))

    def shared_row(sid, label, key, limit, above=False):
        # Issue 17: subrelay on PostgreSQL + Redis (`shared`) against the local one, per round:
        # added p50 (a difference, ms) or throughput (a ratio that must stay above its limit).
        # Its CPU ratios are `variant_row`s.
        res = find(results, sid)
        if not res:
            return
        op = ratio if above else diff
        m, lo, hi = paired(res["rounds"], "shared", "subrelay", key, op)
        if m is None:
            return
        s, b = summary(res, "shared"), summary(res, "subrelay")
        if above:
            text = (f"{m:.2f}× ({s[key]:,.1f} vs {b[key]:,.1f} req/s; rounds "
                    f"{lo:.2f}–{hi:.2f}×)")
            rows.append((label, text, f"≥ {limit}×", verdict(m >= limit)))
        else:
            text = (f"{m:+.3f} ms ({s[key]:.3f} vs {b[key]:.3f} ms; rounds "
                    f"{lo:+.3f}…{hi:+.3f})")
            rows.append((label, text, f"≤ +{limit} ms", verdict(m <= limit)))

    ratio_row(2, "(2) CPU per request at 64 connections, subrelay / nginx")
    added_row(1, "(1) added p50 latency at 1 connection, subrelay − direct", "p50_ms", 0.15)
    added_row(4, "(4) paced SSE: added time to first token (p50), subrelay − direct",
              "ttft_p50_ms", 0.3)
    ratio_row(3, "(3) burst SSE: CPU per stream, subrelay / nginx")
    memory_row(2, "(2) peak RSS under the 64-connection load", 40)
    memory_row(5, "(5) peak RSS with 10,000 slow streams open", 250, per_count=10000)
    per_stream_row(True, "(5, issue 20) RSS per open stream, TLS + HTTP/2 upstream, "
                   "subrelay / nginx", 1.5)
    per_stream_row(False, "(5, issue 20) RSS per open stream, HTTP/1.1 upstream, "
                   "subrelay / nginx", None)
    variant_row(7, "translated", "native Responses",
                "(7, issue 16) CPU per stream, translated (Messages client on a Responses "
                "upstream) / native Responses", 1.5)
    variant_row(7, "translated", "native Messages",
                "(7, issue 16) CPU per stream, translated / native Messages (Anthropic "
                "account)", None)
    variant_row(8, "WebSocket", "SSE",
                "(8, issue 18) CPU per turn, WebSocket / HTTP SSE", 1.2)
    per_item_row(8, "WebSocket idle", "SSE stream open",
                 "(8, issue 18) RSS per idle WebSocket / per open SSE stream", 1.2)
    per_item_row(8, "WebSocket idle", "keep-alive idle",
                 "(8, issue 18) RSS per idle WebSocket / per idle keep-alive connection", None)
    shared_row(1, "(1, issue 17) added p50 at 1 connection, shared − subrelay", "p50_ms", 0.3)
    shared_row(2, "(2, issue 17) throughput at 64 connections, shared / subrelay", "rps", 0.6,
               above=True)
    variant_row(2, "shared", "subrelay",
                "(2, issue 17) CPU per request at 64 connections, shared / subrelay", None)
    variant_row(1, "shared", "subrelay",
                "(1, issue 17) CPU per request at 1 connection, shared / subrelay", None)
    return rows


def verdict(ok):
    return "PASS" if ok else "MISS"


# --- rendering ------------------------------------------------------------------------------


def render(results, info, problems):
    out = []
    w = out.append
    w(f"## subrelay benchmark ({info['mode']}, {info['date']})")
    w("")
    w(f"Machine: {info['nproc']} cores, {info['cpu']}, Linux {info['kernel']}; "
      f"load average {info['loadavg_start']:.2f} at start, "
      f"{info.get('loadavg_end', 0):.2f} at end (shared machine). "
      f"Commit {info['commit']}; {info['nginx']}; {info['wrk']}. "
      f"{info['rounds']} round(s) per scenario, {info['duration_s']} s per load run, "
      f"{info.get('wall_s', '?')} s in all.")
    if info.get("metrics"):
        w("")
        w("subrelay ran with metrics on (`--metrics`: `metrics.listen` set, scraped every 5 s).")
    if info.get("shared"):
        w("")
        w("`shared` (`--shared`): a second subrelay, the same configuration with its store in "
          "PostgreSQL and its runtime state in Redis (both on this machine, over loopback), "
          "measured in the same rounds as `subrelay` (SQLite and local state). Its CPU figure is "
          "subrelay's process only; PostgreSQL's and Redis's own CPU is not counted.")
    w("")

    w("### Requests (scenarios 1–4)")
    w("")
    w("Medians over rounds. *added p50*: the target's p50 minus direct's in the same round "
      "(median of rounds). *CPU*: utime+stime of the proxy process per request (for direct: "
      "the upstream mock's); *upstream CPU*: the mock's, for comparison. *peak RSS*: VmHWM of "
      "the proxy, reset before each round. Scenario 4 latencies are time to first token "
      "(first `response.output_text.delta`); its first-byte times are in the next table.")
    w("")
    w("| # | scenario | target | req/s | p50 ms | p99 ms | added p50 ms | CPU µs/req "
      "| upstream CPU µs/req | peak RSS MiB | errors |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for res in results:
        sc = res["scenario"]
        if sc["id"] > 4:
            continue
        base_key = "p50_ms"
        for target in SHOWN:
            s = summary(res, target)
            if not s:
                continue
            added = None
            if target != "direct":
                added, _, _ = paired(res["rounds"], target, "direct", base_key, diff)
            w(f"| {sc['id']} | {sc['name']} | {target} | {fmt(s['rps'], ',.0f')} "
              f"| {fmt(s['p50_ms'], '.3f')} | {fmt(s['p99_ms'], '.3f')} "
              f"| {fmt(added, '+.3f') if target != 'direct' else ''} "
              f"| {fmt(s['cpu_us'], '.1f')} | {fmt(s['upstream_cpu_us'], '.1f')} "
              f"| {s['peak_kib'] / MIB:.1f} | {s['errors']} |")
    w("")

    res4 = find(results, 4)
    if res4:
        w("### Paced SSE (scenario 4): first byte and first token")
        w("")
        w("The upstream sends `response.created` at once and then one event every 5 ms; "
          "the first text delta is its 5th event. subrelay holds `response.created` / "
          "`response.in_progress` back until real output starts (so that a "
          "`response.failed` before any output can still fail over), so its *first byte* "
          "comes with the 3rd event, by design; the budget applies to the first token. "
          "*CPU per event*: per stream / 28 events.")
        w("")
        w("| target | streams/s | first byte p50 ms | added | first token p50 ms | p99 ms "
          "| added p50 | CPU µs/stream | CPU µs/event |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for target in SHOWN:
            s = summary(res4, target)
            if not s:
                continue
            add_b = add_t = None
            if target != "direct":
                add_b, _, _ = paired(res4["rounds"], target, "direct", "ttfb_p50_ms", diff)
                add_t, _, _ = paired(res4["rounds"], target, "direct", "ttft_p50_ms", diff)
            w(f"| {target} | {fmt(s['rps'], '.0f')} | {fmt(s['ttfb_p50_ms'], '.3f')} "
              f"| {fmt(add_b, '+.3f') if target != 'direct' else ''} "
              f"| {fmt(s['ttft_p50_ms'], '.3f')} | {fmt(s['ttft_p99_ms'], '.3f')} "
              f"| {fmt(add_t, '+.3f') if target != 'direct' else ''} "
              f"| {fmt(s['cpu_us'], '.0f')} | {fmt(s['cpu_us'] / 28, '.1f')} |")
        w("")

    res3 = find(results, 3)
    if res3 and res3.get("extra"):
        chunks = ", ".join(
            f"{t} {fmt(med(res3['extra'][t]['chunks']), '.0f')}" for t in res3["extra"])
        w(f"Scenario 3 framing: HTTP chunks per burst stream as the client receives them "
          f"(median of sequential requests): {chunks}. The upstream writes the whole stream "
          f"at once; a proxy that holds events back would show more chunks spread in time, "
          f"one that passes each read on shows about one chunk per socket read.")
        w("")

    mem = [r for r in results if r["scenario"]["id"] in (5, 6)]
    if mem:
        w("### Many requests open at once (scenarios 5 and 6)")
        w("")
        w("*all open*: RSS of the proxy when every request is open at once (streams: each "
          "has received its first event; compacts: one second after the last was sent); "
          "*per request*: (all open − idle before) / the requests open at that moment "
          "(median of rounds). *peak*: VmHWM over the round. "
          "direct = the mock itself holding the requests. In scenario 6 only subrelay has a "
          "keepalive (a `\\n` every 5 s while waiting): direct and nginx just wait; the point "
          "is subrelay's memory and that every client gets its JSON. *5 TLS*: the mock serves "
          "TLS (ALPN h2 and http/1.1, 100 streams per HTTP/2 connection); subrelay reaches it "
          "over HTTP/2, nginx 1.22 over HTTP/1.1 with TLS (it cannot proxy HTTP/2), direct "
          "is the client speaking TLS to the mock.")
        w("")
        w("| # | target | ok / sent | errors | max open | idle MiB | all open MiB "
          "| per request KiB | peak MiB | CPU µs/request | keepalive bytes |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for res in mem:
            sc = res["scenario"]
            for target in SHOWN:
                s = summary(res, target)
                if not s:
                    continue
                per = s["per_open_kib"]
                w(f"| {tag(sc)} | {target} | {s['ok']:,} / {s['total']:,} | {s['errors']} "
                  f"| {s['max_open']:,} | {fmt((s['rss_before_kib'] or 0) / MIB, '.1f')} "
                  f"| {fmt(s['rss_all_open_kib'] / MIB if s['rss_all_open_kib'] else None, '.1f')} "
                  f"| {fmt(per, '.1f')} | {s['peak_kib'] / MIB:.1f} "
                  f"| {fmt(s['cpu_us'], '.0f')} | {s['keepalive_bytes']:,} |")
        w("")

    res7 = find(results, 7)
    if res7:
        w("### Translation (scenario 7, issue 16)")
        w("")
        w("One subrelay whose `default` group translates (`translate: true`, its accounts "
          "`protocols: [responses]`), the three streams alternating in each round: a Responses "
          "client relayed natively, a Messages client translated to the same Responses stream "
          "(20 deltas, one write), and a Messages client on an Anthropic account of its own "
          "group (the mock's native Messages stream of 20 deltas). *bytes*: what the client "
          "received per stream, head included.")
        w("")
        w("| stream | streams/s | p50 ms | p99 ms | CPU µs/stream | upstream CPU µs/stream "
          "| bytes/stream | errors |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for target in ("native Responses", "translated", "native Messages"):
            s_ = summary(res7, target)
            if not s_:
                continue
            nbytes = med([r.get("bytes_per_request") for r in target_rows(res7)[target]])
            w(f"| {target} | {fmt(s_['rps'], ',.0f')} | {fmt(s_['p50_ms'], '.3f')} "
              f"| {fmt(s_['p99_ms'], '.3f')} | {fmt(s_['cpu_us'], '.1f')} "
              f"| {fmt(s_['upstream_cpu_us'], '.1f')} | {fmt(nbytes, ',.0f')} "
              f"| {s_['errors']} |")
        w("")

    res8 = find(results, 8)
    if res8:
        w("### Responses over WebSocket (scenario 8, issue 18)")
        w("")
        w("Turns: the same 20-event turn (model, instructions, a ~1 KB input) back to back on "
          "each connection, as a streaming `POST /v1/responses` on keep-alive connections "
          "(*SSE*) or as a `response.create` message on an open socket (*WebSocket*, the "
          "whole input each turn, reaching the upstream through the HTTP bridge); one subrelay, "
          "alternating. *p50*: a whole turn, sent to `response.completed`. Memory: on a fresh "
          "subrelay each, sockets idle after one turn, SSE streams open (waiting on a slow "
          "upstream) and keep-alive connections idle after one request; *per item*: (RSS with "
          "all of them open − RSS before) / how many were open.")
        w("")
        w("| what | turns/s or ok | p50 ms | CPU µs/turn | idle MiB | all open MiB "
          "| per item KiB | errors |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for target in ("SSE", "WebSocket", "SSE stream open", "WebSocket idle",
                       "keep-alive idle"):
            s_ = summary(res8, target)
            if not s_:
                continue
            memory = target not in ("SSE", "WebSocket")
            first = f"{s_['ok']:,} / {s_['total']:,}" if memory else fmt(s_["rps"], ",.0f")
            all_open = s_["rss_all_open_kib"] / MIB if s_["rss_all_open_kib"] else None
            w(f"| {target} | {first} | {fmt(s_['p50_ms'], '.3f')} "
              f"| {fmt(s_['cpu_us'], '.1f') if not memory else '–'} "
              f"| {fmt((s_['rss_before_kib'] or 0) / MIB, '.1f') if memory else '–'} "
              f"| {fmt(all_open, '.1f')} | {fmt(s_['per_open_kib'], '.1f')} "
              f"| {s_['errors']} |")
        w("")

    shared = [r for r in results if r["scenario"]["id"] <= 4 and summary(r, "shared")]
    if shared:
        w("### Redis commands per request (`shared`, issue 17)")
        w("")
        w("From Redis's `INFO commandstats` before and after each measured round of `shared`, "
          "divided by its requests (median of rounds); background work (the usage writer's "
          "spend counters, lease renewals, publishes) included. `evalsha` is one scripted "
          "round trip; the commands a script runs inside Redis are listed under their own "
          "names as well, and are not round trips.")
        w("")
        w("| # | scenario | commands per request |")
        w("|---|---|---|")
        for res in shared:
            rows_ = [r for r in target_rows(res)["shared"] if r.get("redis_per_request")]
            names = sorted({n for r in rows_ for n in r["redis_per_request"]})
            cells = []
            for name in names:
                v = med([r["redis_per_request"].get(name, 0.0) for r in rows_])
                if v and v >= 0.005:
                    cells.append(f"{name} {v:.2f}")
            w(f"| {res['scenario']['id']} | {res['scenario']['name']} "
              f"| {', '.join(cells) or '–'} |")
        w("")

    rows = budgets(results)
    if rows:
        w("### Budgets, each figure against its comparison in the same rounds")
        w("")
        w("| budget | measured (median of rounds) | limit | verdict |")
        w("|---|---|---|---|")
        for label, text, limit, v in rows:
            w(f"| {label} | {text} | {limit} | **{v}** |")
        w("")
        if info["mode"] == "smoke":
            w("Smoke mode: counts and durations are tiny; these verdicts mean nothing.")
            w("")

    notes = []
    for res in results:
        if res.get("subrelay_warnings"):
            notes.append(f"scenario {tag(res['scenario'])}: subrelay logged "
                         f"{res['subrelay_warnings']} warnings")
    if problems:
        w("### Problems")
        w("")
        for p in problems:
            w(f"- {p}")
        w("")
    elif notes:
        w("Notes: " + "; ".join(notes))
        w("")
    return "\n".join(out)
