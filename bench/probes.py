"""The harness's own HTTP/1.1 clients, for what wrk cannot measure.

- `paced_streams`: streams back to back on a few keep-alive connections, timing each one's first
  byte and first text delta (scenario 4).
- `hold_streams`: many concurrent slow streams, all open at once (scenario 5).
- `wait_compacts`: many concurrent compact requests that wait upstream (scenario 6).
- `burst_chunks`: how many HTTP chunks a burst stream arrives in (scenario 3).

Plain asyncio streams and a minimal HTTP/1.1 reader (status line, headers, Content-Length or
chunked body); every wait has a timeout, so nothing here can hang the harness.
"""

import asyncio
import json
import time

from stack import memory_kib

DELTA = b"response.output_text.delta"
COMPLETED = b"response.completed"


class HttpError(Exception):
    pass


def request_bytes(port, path, key, body):
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


async def read_head(reader):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        raise HttpError("connection closed before the response head") from e
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise HttpError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def read_body(reader, headers, on_data):
    """Reads the body, calling on_data(bytes) per received piece (one per HTTP chunk when
    chunked). Returns the number of pieces."""
    pieces = 0
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                line = await reader.readline()
                size_text = line.split(b";")[0].strip()
                if not size_text:
                    raise HttpError("connection closed inside a chunked body")
                size = int(size_text, 16)
                if size == 0:
                    for _ in range(64):  # trailers, then the blank line
                        if (await reader.readline()) in (b"\r\n", b"\n", b""):
                            break
                    return pieces
                data = await reader.readexactly(size + 2)
                pieces += 1
                on_data(data[:-2])
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length:
                on_data(await reader.readexactly(length))
                pieces = 1
            return pieces
        else:
            while True:
                data = await reader.read(65536)
                if not data:
                    return pieces
                pieces += 1
                on_data(data)
    except asyncio.IncompleteReadError as e:
        raise HttpError("connection closed inside the body") from e


async def close(writer):
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2)
    except (OSError, asyncio.TimeoutError):
        pass


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[rank]


# --- scenario 4: paced streams, first byte and first token ----------------------------------


async def _paced_worker(port, path, keys, body_for, deadline, out, worker):
    reader = writer = None
    n = worker
    while time.perf_counter() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), 5)
            key = keys[n % len(keys)]
            n += 7
            state = {"ttft": None, "done": False, "tail": b""}
            t0 = time.perf_counter()
            writer.write(request_bytes(port, path, key, body_for))
            status, headers = await asyncio.wait_for(read_head(reader), 10)
            ttfb = time.perf_counter() - t0
            if status != 200:
                raise HttpError(f"status {status}")

            def on_data(data, state=state):
                now = time.perf_counter()
                window = state["tail"] + data
                if state["ttft"] is None and DELTA in window:
                    state["ttft"] = now - t0
                if COMPLETED in window:
                    state["done"] = True
                state["tail"] = window[-64:]

            await asyncio.wait_for(read_body(reader, headers, on_data), 30)
            if not state["done"] or state["ttft"] is None:
                raise HttpError("stream ended without text or response.completed")
            out["ttfb"].append(ttfb)
            out["ttft"].append(state["ttft"])
            out["total"].append(time.perf_counter() - t0)
            if headers.get("connection", "").lower() == "close":
                await close(writer)
                writer = None
        except (OSError, HttpError, asyncio.TimeoutError, ValueError) as e:
            out["errors"].append(f"{type(e).__name__}: {e}")
            if writer is not None:
                await close(writer)
            writer = None
            await asyncio.sleep(0.05)
    if writer is not None:
        await close(writer)


async def paced_streams(port, path, keys, body, concurrency, seconds):
    out = {"ttfb": [], "ttft": [], "total": [], "errors": []}
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(
        _paced_worker(port, path, keys, body, deadline, out, w) for w in range(concurrency)))
    return out


# --- scenarios 5 and 6: many requests open at once ------------------------------------------


class Crowd:
    """Counts for a crowd of concurrent requests, and the proxy's memory while they are open."""

    def __init__(self, total, pid):
        self.total = total
        self.pid = pid
        self.sent = 0
        self.open = 0
        self.max_open = 0
        self.answered = 0  # first body byte (streams) / head (compacts) received
        self.ok = 0
        self.errors = []
        self.keepalive_bytes = 0
        self.rss_max_kib = 0
        self.rss_all_open_kib = None
        self.all_open_after_s = None
        # When "all open" was read: how many requests were open, and how many had already
        # ended (answered in full or failed). The per-request memory divides by the former;
        # scenario 5 fails when the latter is not 0.
        self.open_at_all_open = None
        self.finished_before_all_open = None
        self.started = time.perf_counter()

    def opened(self):
        self.sent += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)

    def closed(self):
        self.open -= 1

    def summary(self):
        kinds = {}
        for e in self.errors:
            kinds[e] = kinds.get(e, 0) + 1
        return {
            "total": self.total, "sent": self.sent, "ok": self.ok,
            "errors": len(self.errors), "error_kinds": kinds, "max_open": self.max_open,
            "answered": self.answered, "rss_max_kib": self.rss_max_kib,
            "rss_all_open_kib": self.rss_all_open_kib,
            "all_open_after_s": self.all_open_after_s,
            "open_at_all_open": self.open_at_all_open,
            "finished_before_all_open": self.finished_before_all_open,
            "keepalive_bytes": self.keepalive_bytes,
        }


async def _watch(crowd, stop, all_open):
    """Samples the proxy's RSS every 100 ms, and notes it once `all_open(crowd)` says every
    request is open at the proxy."""
    while not stop.is_set():
        try:
            rss, _ = memory_kib(crowd.pid)
        except OSError:
            rss = 0
        crowd.rss_max_kib = max(crowd.rss_max_kib, rss)
        if crowd.rss_all_open_kib is None and all_open(crowd):
            crowd.rss_all_open_kib = rss
            crowd.all_open_after_s = time.perf_counter() - crowd.started
            crowd.open_at_all_open = crowd.open
            crowd.finished_before_all_open = crowd.sent - crowd.open
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass


def _streams_all_open(c):
    # Every stream has delivered its first body bytes (the gateway holds response.created back
    # until real output, so this is when it is relaying all of them) and none has finished.
    return c.sent >= c.total and c.answered + len(c.errors) >= c.total


class _CompactsAllOpen:
    # Every request was sent `settle` seconds ago: all wait upstream (answers take longer).
    def __init__(self, settle):
        self.settle = settle
        self.since = None

    def __call__(self, c):
        if c.sent < c.total:
            return False
        if self.since is None:
            self.since = time.perf_counter()
        return time.perf_counter() - self.since >= self.settle


async def _one_stream(crowd, gate, port, path, key, body, timeout, tls=None):
    writer = None
    counted_open = False
    try:
        async with gate:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                        server_hostname="localhost" if tls else None), 10)
            writer.write(request_bytes(port, path, key, body))
            crowd.opened()
            counted_open = True
        status, headers = await asyncio.wait_for(read_head(reader), timeout)
        if status != 200:
            raise HttpError(f"status {status}")
        state = {"first": False, "done": False, "tail": b""}

        def on_data(data):
            if not state["first"]:
                state["first"] = True
                crowd.answered += 1
            window = state["tail"] + data
            if COMPLETED in window:
                state["done"] = True
            state["tail"] = window[-64:]

        await asyncio.wait_for(read_body(reader, headers, on_data), timeout)
        if not state["done"]:
            raise HttpError("stream ended without response.completed")
        crowd.ok += 1
    except (OSError, HttpError, asyncio.TimeoutError, ValueError) as e:
        crowd.errors.append(f"{type(e).__name__}: {e}"[:120])
    finally:
        if counted_open:
            crowd.closed()
        if writer is not None:
            await close(writer)


async def _one_compact(crowd, gate, port, path, key, body, timeout, tls=None):
    writer = None
    counted_open = False
    try:
        async with gate:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                        server_hostname="localhost" if tls else None), 10)
            writer.write(request_bytes(port, path, key, body))
            crowd.opened()
            counted_open = True
        status, headers = await asyncio.wait_for(read_head(reader), timeout)
        crowd.answered += 1
        if status != 200:
            raise HttpError(f"status {status}")
        parts = []
        await asyncio.wait_for(read_body(reader, headers, parts.append), timeout)
        text = b"".join(parts)
        stripped = text.lstrip()
        crowd.keepalive_bytes += len(text) - len(stripped)
        answer = json.loads(stripped)
        if answer.get("object") != "response.compaction":
            raise HttpError(f"not a compaction: {stripped[:80]!r}")
        crowd.ok += 1
    except (OSError, HttpError, asyncio.TimeoutError, ValueError) as e:
        crowd.errors.append(f"{type(e).__name__}: {e}"[:120])
    finally:
        if counted_open:
            crowd.closed()
        if writer is not None:
            await close(writer)


async def crowd(kind, port, path, keys, body, total, pid, timeout, settle=1.0,
                connect_parallel=256, tls=None):
    """Opens `total` requests at once (at most `connect_parallel` connecting at a time); over
    TLS (an `ssl.SSLContext`, server name `localhost`) when `tls` is given."""
    c = Crowd(total, pid)
    gate = asyncio.Semaphore(connect_parallel)
    stop = asyncio.Event()
    if kind == "stream":
        one, all_open = _one_stream, _streams_all_open
    else:
        one, all_open = _one_compact, _CompactsAllOpen(settle)
    watcher = asyncio.create_task(_watch(c, stop, all_open))
    await asyncio.gather(*(
        one(c, gate, port, path, keys[i % len(keys)], body, timeout, tls)
        for i in range(total)))
    stop.set()
    await watcher
    return c.summary()


# --- scenario 3: how a burst stream is framed -----------------------------------------------


async def burst_chunks(port, path, key, body, count):
    """HTTP chunks per burst stream, over `count` sequential requests on one connection."""
    chunks, errors = [], 0
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        for _ in range(count):
            writer.write(request_bytes(port, path, key, body))
            status, headers = await asyncio.wait_for(read_head(reader), 10)
            seen = []
            pieces = await asyncio.wait_for(read_body(reader, headers, seen.append), 10)
            if status != 200 or COMPLETED not in b"".join(seen):
                errors += 1
            chunks.append(pieces)
    except (OSError, HttpError, asyncio.TimeoutError, ValueError):
        errors += 1
    finally:
        await close(writer)
    return {"chunks": chunks, "errors": errors}


# --- scenario 8: Responses over WebSocket -----------------------------------------------------
#
# A minimal RFC 6455 client on asyncio streams, enough for the gateway's Responses socket: the
# upgrade, masked text frames out (with the all-zero masking key: valid, and no XOR to compute,
# which keeps the load generator cheap), unmasked frames in, pings answered with pongs.

WS_TERMINAL = (b'"response.completed"', b'"response.failed"', b'"response.incomplete"',
               b'"error"')


def ws_frame(opcode, payload):
    """One masked, final client frame."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


async def ws_connect(port, path, key):
    """Opens a socket and upgrades it; answers (reader, writer)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        writer.write((
            f"GET {path} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: c3VicmVsYXktYmVuY2gtMDE=\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {key}\r\n"
            "\r\n").encode())
        status, _ = await asyncio.wait_for(read_head(reader), 10)
        if status != 101:
            raise HttpError(f"upgrade answered {status}")
    except BaseException:
        await close(writer)
        raise
    return reader, writer


async def ws_read(reader, writer):
    """The next data message's payload; answers pings on the way. A close frame is an error."""
    while True:
        try:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await reader.readexactly(8), "big")
            if b1 & 0x80:
                raise HttpError("the server masked a frame")
            payload = await reader.readexactly(n) if n else b""
        except asyncio.IncompleteReadError as e:
            raise HttpError("socket closed inside a frame") from e
        opcode = b0 & 0x0F
        if opcode == 0x9:
            writer.write(ws_frame(0xA, payload))
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            raise HttpError(f"closed by the server ({code} {payload[2:80]!r})")
        elif opcode in (0x1, 0x2):
            if not b0 & 0x80:
                raise HttpError("fragmented message (not expected from the gateway)")
            return payload
        # pong (0xA) and anything else: ignored


async def ws_turn(reader, writer, message, on_event=None):
    """One turn: sends `message` (a `response.create`, bytes), reads its events up to the
    terminal one. Raises unless the turn completed."""
    writer.write(ws_frame(0x1, message))
    while True:
        event = await ws_read(reader, writer)
        if on_event is not None:
            on_event(event)
        head = event[:96]
        if any(t in head for t in WS_TERMINAL):
            if b'"response.completed"' not in head:
                raise HttpError(f"turn ended with {event[:120]!r}")
            return


async def ws_close(writer):
    try:
        writer.write(ws_frame(0x8, (1000).to_bytes(2, "big")))
    except OSError:
        pass
    await close(writer)


async def _ws_turns_worker(port, path, keys, message, deadline, out, worker):
    reader = writer = None
    n = worker
    while time.perf_counter() < deadline:
        try:
            if writer is None:
                reader, writer = await ws_connect(port, path, keys[n % len(keys)])
                n += 7
            state = {"ttft": None, "first": None}
            t0 = time.perf_counter()

            def on_event(event, state=state):
                if state["first"] is None:
                    state["first"] = time.perf_counter() - t0
                if state["ttft"] is None and DELTA in event[:96]:
                    state["ttft"] = time.perf_counter() - t0

            await asyncio.wait_for(ws_turn(reader, writer, message, on_event), 30)
            if state["ttft"] is None:
                raise HttpError("turn completed without text")
            out["ttfb"].append(state["first"])
            out["ttft"].append(state["ttft"])
            out["total"].append(time.perf_counter() - t0)
        except (OSError, HttpError, asyncio.TimeoutError, ValueError) as e:
            out["errors"].append(f"{type(e).__name__}: {e}")
            if writer is not None:
                await close(writer)
            writer = None
            await asyncio.sleep(0.05)
    if writer is not None:
        await ws_close(writer)


async def ws_turns(port, path, keys, message, concurrency, seconds):
    """Turns back to back on `concurrency` sockets for `seconds`: the WebSocket counterpart of
    `paced_streams` (which sends the same turn as a streaming POST on keep-alive connections)."""
    out = {"ttfb": [], "ttft": [], "total": [], "errors": []}
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(
        _ws_turns_worker(port, path, keys, message, deadline, out, w) for w in range(concurrency)))
    return out


async def _ws_idle_one(crowd, gate, port, path, key, message, stop, timeout):
    writer = None
    counted_open = False
    try:
        async with gate:
            reader, writer = await ws_connect(port, path, key)
            crowd.opened()
            counted_open = True
        await asyncio.wait_for(ws_turn(reader, writer, message), timeout)
        crowd.answered += 1  # the turn is done: the socket is idle from here
        # Idle until the crowd is measured, answering the gateway's pings meanwhile.
        idle = asyncio.ensure_future(ws_read(reader, writer))
        done, _ = await asyncio.wait({idle, asyncio.ensure_future(stop.wait())},
                                     timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if idle in done:
            idle.result()  # raises what ended it (a close)
            raise HttpError("unexpected message on an idle socket")
        idle.cancel()
        crowd.ok += 1
    except (OSError, HttpError, asyncio.TimeoutError, ValueError) as e:
        crowd.errors.append(f"{type(e).__name__}: {e}"[:120])
    finally:
        if counted_open:
            crowd.closed()
        if writer is not None:
            await ws_close(writer)


async def _keepalive_idle_one(crowd, gate, port, path, key, body, stop, timeout):
    writer = None
    counted_open = False
    try:
        async with gate:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                    10)
            crowd.opened()
            counted_open = True
        writer.write(request_bytes(port, path, key, body))
        status, headers = await asyncio.wait_for(read_head(reader), timeout)
        seen = []
        await asyncio.wait_for(read_body(reader, headers, seen.append), timeout)
        if status != 200 or COMPLETED not in b"".join(seen):
            raise HttpError(f"status {status}")
        crowd.answered += 1  # the request is done: the connection is idle from here
        await asyncio.wait_for(stop.wait(), timeout)
        crowd.ok += 1
    except (OSError, HttpError, asyncio.TimeoutError, ValueError) as e:
        crowd.errors.append(f"{type(e).__name__}: {e}"[:120])
    finally:
        if counted_open:
            crowd.closed()
        if writer is not None:
            await close(writer)


async def idle_crowd(kind, port, path, keys, body, total, pid, timeout, settle=0.5,
                     connect_parallel=64):
    """`total` sockets (`ws`) or keep-alive connections (`keepalive`), each after one turn or
    request, idle at once; the proxy's RSS is read `settle` s after the last one went idle, then
    all are closed. The same summary as `crowd`."""
    c = Crowd(total, pid)
    gate = asyncio.Semaphore(connect_parallel)
    stop = asyncio.Event()
    one = _ws_idle_one if kind == "ws" else _keepalive_idle_one
    since = []

    def ready(crowd):
        # Every socket has had its turn (or failed), `settle` seconds ago.
        if crowd.answered + len(crowd.errors) < crowd.total:
            return False
        if not since:
            since.append(time.perf_counter())
        return time.perf_counter() - since[0] >= settle

    async def release():
        while c.rss_all_open_kib is None:
            await asyncio.sleep(0.05)
        stop.set()

    watcher = asyncio.create_task(_watch(c, stop, ready))
    releaser = asyncio.create_task(release())
    await asyncio.gather(*(
        one(c, gate, port, path, keys[i % len(keys)], body, stop, timeout)
        for i in range(total)))
    stop.set()
    await watcher
    await releaser
    return c.summary()
