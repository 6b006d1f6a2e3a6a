"""A scriptable, fault-injecting JSON-RPC proxy for tests (stdlib ``http.server`` + httpx).

``FaultProxy(upstream).start()`` listens on 127.0.0.1 (a free port) and forwards JSON-RPC
requests, single or batched, to ``upstream`` (anvil), whatever the request path. Three ways to
break it:

* ``push(Fault(...), ...)`` queues request-level faults, used one per incoming request in
  order: an HTTP status (with headers, e.g. ``Retry-After``), a dropped connection (closed
  without a reply), a reset connection (RST), a delay before answering, a truncated JSON body,
  replies in reverse order, or a raw body.
* ``rules`` (``Rule(method, action, block=None, times=1)``) rewrite matching reply items: set the
  result to null, give receipts another block hash (a reorg), give a block a parent hash that
  links to nothing (a stale backend's block), replace the result with a JSON-RPC error, or leave
  the item out of the reply.
* Knobs that hold until ``reset()``: ``max_batch`` with ``batch_reject`` (``"413"``: HTTP 413;
  ``"object"``: one JSON-RPC error object instead of an array; ``"items"``: an error item per
  call), ``unsupported`` (methods answered with "method not found" in ``unsupported_style``),
  and ``chain_id`` (what ``eth_chainId`` reports).

Every request is recorded in ``seen`` (path, batch or not, size, methods, fault applied).
Import it from tests in this folder as ``from fault_proxy import FaultProxy`` (pytest puts the
test file's folder on ``sys.path``, as for ``reference.py``).
"""

from __future__ import annotations

import collections
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson

FORK_HASH = "0x" + "de" * 32


@dataclass(frozen=True)
class Fault:
    """A request-level fault. ``kind`` is one of: ``status`` (reply ``status`` with ``headers``
    and ``body``), ``drop`` (close the connection, no reply), ``reset`` (abort with RST),
    ``delay`` (sleep ``delay`` s, then answer normally), ``truncate`` (answer with the first half
    of the real reply), ``reverse`` (batch replies in reverse order), ``raw`` (reply ``body``)."""

    kind: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


@dataclass
class Rule:
    """Rewrite reply items for ``method`` (for block ``block`` if given), ``times`` times
    (-1: always). ``action``: ``null``, ``fork`` (receipts' blockHash changed), ``unlink`` (the
    block's parentHash changed: it no longer links to the block before it), ``error``
    (JSON-RPC error with ``message``), ``omit`` (item left out of the batch reply)."""

    method: str
    action: str
    block: int | None = None
    times: int = 1
    message: str = "injected failure"

    def matches(self, call: dict) -> bool:
        if self.times == 0 or call.get("method") != self.method:
            return False
        if self.block is None:
            return True
        params = call.get("params") or []
        return bool(params) and params[0] == hex(self.block)


@dataclass(frozen=True)
class Seen:
    path: str
    batch: bool
    size: int
    methods: tuple[str, ...]
    fault: str | None
    authorization: str | None


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0  # requests being handled (a delayed one may outlive its test)
        self._upstream = httpx.Client(timeout=30.0)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- scripting ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the script and what was seen, once no request is being handled: a request a
        test's client gave up on (a delay fault) must not consume the next test's rules."""
        with self._lock:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=30)
            self.faults: collections.deque[Fault] = collections.deque()
            self.rules: list[Rule] = []
            self.max_batch: int | None = None
            self.batch_reject = "413"
            self.unsupported: set[str] = set()
            self.unsupported_style = "code"  # "code": -32601; "message": -32000 + text
            self.chain_id: int | None = None
            self.seen: list[Seen] = []

    def push(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def batch_sizes(self, method: str | None = None) -> list[int]:
        return [s.size for s in self.seen if method is None or method in s.methods]

    def count(self, method: str) -> int:
        """Calls of ``method`` the proxy received."""
        return sum(s.methods.count(method) for s in self.seen)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fault-proxy")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._upstream.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling (called from handler threads) -----------------------------------

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def _answer(self, payload: Any) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for a parsed request, after knobs and rules."""
        is_batch = isinstance(payload, list)
        calls = payload if is_batch else [payload]
        if is_batch and self.max_batch is not None and len(calls) > self.max_batch:
            message = f"batch too large: {len(calls)} requests, limit is {self.max_batch}"
            if self.batch_reject == "413":
                return 413, {}, b"request entity too large"
            error = {"code": -32600, "message": message}
            if self.batch_reject == "object":
                return 200, {}, orjson.dumps({"jsonrpc": "2.0", "id": None, "error": error})
            return 200, {}, orjson.dumps(
                [{"jsonrpc": "2.0", "id": c.get("id"), "error": error} for c in calls])

        replies: dict[int, dict] = {}
        forward = []
        for i, call in enumerate(calls):
            method = call.get("method")
            if method in self.unsupported:
                error = ({"code": -32601, "message": "Method not found"}
                         if self.unsupported_style == "code" else
                         {"code": -32000,
                          "message": f"the method {method} does not exist/is not available"})
                replies[i] = {"jsonrpc": "2.0", "id": call.get("id"), "error": error}
            elif method == "eth_chainId" and self.chain_id is not None:
                replies[i] = {"jsonrpc": "2.0", "id": call.get("id"), "result": hex(self.chain_id)}
            else:
                forward.append(i)
        if forward:
            sent = [calls[i] for i in forward]
            answer = orjson.loads(self._upstream.post(
                self.upstream, content=orjson.dumps(sent),
                headers={"content-type": "application/json"}).content)
            by_id = {item.get("id"): item for item in answer}
            for i in forward:
                replies[i] = by_id[calls[i].get("id")]

        out = []
        for i, call in enumerate(calls):
            item = dict(replies[i])
            omit = False
            with self._lock:
                for rule in self.rules:
                    if rule.matches(call):
                        rule.times -= 1 if rule.times > 0 else 0
                        omit = self._apply(rule, item) or omit
            if not omit:
                out.append(item)
        if not is_batch:
            return 200, {}, orjson.dumps(out[0] if out else {"jsonrpc": "2.0"})
        return 200, {}, orjson.dumps(out)

    @staticmethod
    def _apply(rule: Rule, item: dict) -> bool:
        if rule.action == "null":
            item["result"] = None
        elif rule.action == "fork":
            result = item.get("result")
            receipts = result if isinstance(result, list) else [result]
            item["result"] = [dict(r, blockHash=FORK_HASH) for r in receipts if r] \
                if isinstance(result, list) else dict(result or {}, blockHash=FORK_HASH)
        elif rule.action == "unlink":
            if isinstance(item.get("result"), dict):
                item["result"] = dict(item["result"], parentHash=FORK_HASH)
        elif rule.action == "error":
            item.pop("result", None)
            item["error"] = {"code": -32000, "message": rule.message}
        elif rule.action == "omit":
            return True
        else:
            raise ValueError(f"unknown rule action {rule.action!r}")
        return False


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as real nodes

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        proxy = self.owner
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        calls = payload if isinstance(payload, list) else [payload]
        fault = proxy._next_fault()
        with proxy._lock:
            proxy._in_flight += 1
            proxy.seen.append(Seen(
                path=self.path, batch=isinstance(payload, list), size=len(calls),
                methods=tuple(c.get("method") for c in calls if isinstance(c, dict)),
                fault=fault.kind if fault else None,
                authorization=self.headers.get("authorization")))
        try:
            if fault is not None and fault.kind == "drop":
                self.close_connection = True
                return
            if fault is not None and fault.kind == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if fault is not None and fault.kind == "status":
                self._send(fault.status, fault.headers, fault.body)
                return
            if fault is not None and fault.kind == "raw":
                self._send(200, fault.headers, fault.body)
                return
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.delay)
            status, headers, reply = proxy._answer(payload)
            if fault is not None and fault.kind == "truncate":
                reply = reply[: len(reply) // 2]
            if fault is not None and fault.kind == "reverse" and reply.startswith(b"["):
                reply = orjson.dumps(list(reversed(orjson.loads(reply))))
            self._send(status, headers, reply)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True  # the client gave up (e.g. timed out)
        finally:
            with proxy._lock:
                proxy._in_flight -= 1
                proxy._idle.notify_all()

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
