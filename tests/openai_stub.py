"""A stub OpenAI-compatible server, run as its own process, that misbehaves on command.

`python tests/openai_stub.py` serves two loopback ports (the second stands for "another
host": a different origin) and prints `{"port": P, "other_port": Q}` on its first line.
`StubServer()` starts it for a test and stops it afterwards.

Chat completions check the shape of each request (image data URL, prompt without
`<image>`, greedy, special tokens kept) and answer with what they received: `page WxH` (the
image's size). A page whose top-left pixel is RED gets HTTP 400. Commands in the prompt text,
`[[stub k=v;k=v]]`, change that for one page (`id` names the page; attempts are counted per
id; `times=N`, default 1, says how many attempts `fail`, `drop` and `redirect` apply to):

    fail=S;retry_after=T          HTTP S (with a Retry-After header of T)
    drop                          the connection closed, no reply
    redirect=URL                  307 to URL
    trickle                       200, then one byte every 0.1 s, never finishing
    badjson                       200 with a body that is not JSON
    slow=T                        wait T seconds first
    gate=N                        wait until N requests have been in flight at once (<= 3 s)
    length                        finish_reason "length"
    streamerror                   a stream: one delta, then an error event
    pixel                         the answer adds the image mode and top-left pixel

GET /stats gives requests per port, the Authorization headers seen, the most chat requests
in flight at once, the connections opened and the last chat body (its image URL cut short);
POST /reset clears them.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from PIL import Image

IMAGE_TOKEN_ID = 128815
MODEL = "dsocr"
RED = (255, 0, 0)
PROMPT_IDS = [0] + [IMAGE_TOKEN_ID] * 5 + [42]
COMMAND = re.compile(r"\[\[stub ([^\]]*)\]\]")


def command(text: str) -> dict[str, str]:
    """The `[[stub k=v;...]]` settings in a prompt text ({} when none)."""
    found = COMMAND.search(text)
    if not found:
        return {}
    pairs = (item.partition("=") for item in found.group(1).split(";") if item.strip())
    return {key.strip(): value.strip() for key, _, value in pairs}


def check_body(body: dict) -> Image.Image:
    """Raise ValueError unless the body is what the OpenAI engine must send."""
    content = body["messages"][0]["content"]
    url = content[0]["image_url"]["url"]
    if content[0]["type"] != "image_url" or not url.startswith("data:image/png;base64,"):
        raise ValueError("first part must be a PNG data URL")
    text = content[1]["text"]
    if content[1]["type"] != "text" or "<image>" in text:
        raise ValueError(f"bad text part {text!r}")
    if body["temperature"] != 0 or body["skip_special_tokens"] is not False:
        raise ValueError("decoding must be greedy with special tokens kept")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        raise ValueError("max_tokens must be a positive int")
    if body["model"] != MODEL:
        raise ValueError(f"unknown model {body['model']!r}")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


class State:
    """What the server has seen, shared by its threads."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.reset()

    def reset(self) -> None:
        self.requests: dict[str, int] = {}
        self.auth: list[str | None] = []
        self.attempts: dict[str, int] = {}
        self.in_flight = self.max_in_flight = self.connections = 0
        self.last_body: dict | None = None

    def stats(self) -> dict:
        return {"requests": self.requests, "auth": self.auth, "max_in_flight": self.max_in_flight,
                "connections": self.connections, "last_body": self.last_body}


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's pool reuses connections

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with STATE.lock:
            STATE.connections += 1

    def do_GET(self):
        if self.path == "/stats":
            with STATE.lock:
                return self._json(200, STATE.stats())
        if self.path == "/v1/models":
            return self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        self._json(404, {"error": f"no route {self.path}"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/reset":
            with STATE.lock:
                STATE.reset()
            return self._json(200, {})
        port = str(self.server.server_address[1])
        with STATE.lock:
            STATE.requests[port] = STATE.requests.get(port, 0) + 1
            STATE.auth.append(self.headers.get("Authorization"))
            STATE.in_flight += 1
            STATE.max_in_flight = max(STATE.max_in_flight, STATE.in_flight)
            STATE.lock.notify_all()
        try:
            self._chat(json.loads(raw))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a deadline test)
        finally:
            with STATE.lock:
                STATE.in_flight -= 1

    def _chat(self, body: dict):
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": f"no route {self.path}"})
        try:
            image = check_body(body)
        except (ValueError, KeyError, IndexError, OSError) as exc:
            return self._json(400, {"error": f"bad request: {exc}"})
        text = body["messages"][0]["content"][1]["text"]
        with STATE.lock:
            STATE.last_body = json.loads(json.dumps(body))
            STATE.last_body["messages"][0]["content"][0]["image_url"]["url"] = "data:..."
        if image.convert("RGB").getpixel((0, 0)) == RED:
            return self._json(400, {"error": "the stub refuses red pages"})
        cmd = command(text)
        with STATE.lock:
            attempt = STATE.attempts[cmd.get("id", "")] = STATE.attempts.get(cmd.get("id", ""), 0) + 1
        if "gate" in cmd:
            with STATE.lock:
                STATE.lock.wait_for(lambda: STATE.max_in_flight >= int(cmd["gate"]), timeout=3.0)
        if "slow" in cmd:
            time.sleep(float(cmd["slow"]))
        if attempt <= int(cmd.get("times", "1")):
            if "fail" in cmd:
                headers = {"Retry-After": cmd["retry_after"]} if "retry_after" in cmd else {}
                return self._json(int(cmd["fail"]), {"error": "try later"}, headers)
            if "drop" in cmd:
                self.close_connection = True
                return None
            if "redirect" in cmd:
                self.send_response(307)
                self.send_header("Location", cmd["redirect"])
                self.send_header("Content-Length", "0")
                return self.end_headers()
        if "trickle" in cmd:
            return self._trickle()
        if "badjson" in cmd:
            return self._send(200, b"<html>proxy error</html>", "text/html")
        words = describe(image, pixel="pixel" in cmd).split(" ")
        finish = "length" if "length" in cmd else "stop"
        if body.get("stream"):
            return self._stream(words, finish, broken="streamerror" in cmd)
        ids = [1000 + i for i in range(len(words))]
        self._json(200, {
            "choices": [{"message": {"role": "assistant", "content": " ".join(words)},
                         "finish_reason": finish, "token_ids": ids}],
            "usage": {"prompt_tokens": 7, "completion_tokens": len(ids)},
            "prompt_token_ids": PROMPT_IDS,
        })

    def _stream(self, words: list[str], finish: str, broken: bool):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, word in enumerate(words):
            last = i == len(words) - 1
            delta = {"content": word if i == 0 else " " + word}
            event = {"choices": [{"delta": delta, "token_ids": [1000 + i],
                                  "finish_reason": finish if last else None}]}
            if i == 0:
                event["prompt_token_ids"] = PROMPT_IDS
            self._event(event)
            if broken:
                self._event({"error": {"message": "engine died", "code": 500}})
                break
        else:
            self._event({"choices": [], "usage": {"prompt_tokens": 7,
                                                  "completion_tokens": len(words)}})
            self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _event(self, payload: dict):
        self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

    def _chunk(self, data: bytes):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _trickle(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        end = time.monotonic() + 30
        while time.monotonic() < end:
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(0.1)
        self.close_connection = True

    def _json(self, code: int, payload: dict, headers: dict | None = None):
        self._send(code, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, code: int, data: bytes, kind: str, headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def describe(image: Image.Image, *, pixel: bool) -> str:
    """What the stub "reads" on a page: its size (and mode and top-left pixel) as received."""
    line = f"page {image.width}x{image.height}"
    if pixel:
        rgba = image.convert("RGBA").getpixel((0, 0))
        line += f" mode {image.mode} rgb({','.join(str(v) for v in rgba[:3])})"
    return line


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def serve() -> None:
    """Serve until stdin closes (the test process ended, even if it was killed)."""
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    servers = [_Server(("127.0.0.1", 0), Handler) for _ in range(2)]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = [s.server_address[1] for s in servers]
    print(json.dumps({"port": ports[0], "other_port": ports[1]}), flush=True)
    servers[0].serve_forever()


def _exit_with_parent() -> None:
    sys.stdin.read()
    os._exit(0)


class StubServer:
    """The stub in its own process: `with StubServer() as stub: stub.base_url ...`."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline()
        if not line:
            self.process.kill()
            raise RuntimeError("the stub server did not start")
        ports = json.loads(line)
        self.root = f"http://127.0.0.1:{ports['port']}"
        self.base_url = f"{self.root}/v1"
        self.other_root = f"http://127.0.0.1:{ports['other_port']}"
        self.other_port = str(ports["other_port"])

    def stats(self) -> dict:
        return httpx.get(f"{self.root}/stats").json()

    def reset(self) -> None:
        httpx.post(f"{self.root}/reset")

    def last_body(self) -> dict:
        """The last chat completion body the stub got (image URL cut short)."""
        return self.stats()["last_body"]

    def __enter__(self) -> StubServer:
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def page(colour=(255, 255, 255), size=(64, 48)) -> Image.Image:
    """A page image whose top-left pixel is `colour` (RED: the stub refuses it)."""
    image = Image.new("RGB", size, "white")
    image.putpixel((0, 0), colour)
    return image


if __name__ == "__main__":
    serve()
