"""A stub OpenAI-compatible chat completions server for engine and CLI tests.

It checks the shape of each request (image data URL, prompt without `<image>`, greedy,
special tokens kept) and answers by the colour of the image's top-left pixel:
red -> HTTP 500, blue -> too slow (sleeps `slow_seconds`), green -> finish "length",
yellow -> a broken reply (not JSON; in a stream: an error event after one delta),
anything else -> a canned page "page WxH". Streaming requests get server-sent events.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

IMAGE_TOKEN_ID = 128815
RED, BLUE, GREEN, YELLOW = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 0)


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
    if body["model"] != "dsocr":
        raise ValueError(f"unknown model {body['model']!r}")
    data = base64.b64decode(url.split(",", 1)[1])
    return Image.open(io.BytesIO(data)).convert("RGB")


class StubServer:
    """Run with `with StubServer() as server:`; `server.base_url`, `server.bodies`."""

    def __init__(self, slow_seconds: float = 3.0):
        self.slow_seconds = slow_seconds
        self.bodies: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                try:
                    self._answer()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

            def _answer(self):
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": f"no route {self.path}"})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.bodies.append(body)
                try:
                    image = check_body(body)
                except (ValueError, KeyError, IndexError) as exc:
                    return self._send(400, {"error": f"bad request: {exc}"})
                pixel = image.getpixel((0, 0))
                if pixel == RED:
                    return self._send(500, {"error": "internal failure"})
                if pixel == BLUE:
                    time.sleep(stub.slow_seconds)
                text = f"page {image.width}x{image.height}"
                finish = "length" if pixel == GREEN else "stop"
                ids = [1000 + i for i in range(len(text.split()))]
                if pixel == YELLOW and body.get("stream"):
                    return self._broken_stream()
                if pixel == YELLOW:
                    return self._send_raw(200, b"<html>proxy error</html>")
                if body.get("stream"):
                    return self._stream(text, ids, finish)
                self._send(
                    200,
                    {
                        "choices": [
                            {
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": finish,
                                "token_ids": ids,
                            }
                        ],
                        "usage": {"prompt_tokens": 7, "completion_tokens": len(ids)},
                        "prompt_token_ids": [0] + [IMAGE_TOKEN_ID] * 5 + [42],
                    },
                )

            def _stream(self, text, ids, finish):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                words = text.split(" ")
                for i, word in enumerate(words):
                    delta = word if i == 0 else " " + word
                    chunk = {
                        "choices": [
                            {
                                "delta": {"content": delta},
                                "token_ids": [ids[i]],
                                "finish_reason": finish if i == len(words) - 1 else None,
                            }
                        ]
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                usage = {
                    "choices": [],
                    "usage": {"prompt_tokens": 7, "completion_tokens": len(ids)},
                }
                self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())

            def _broken_stream(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                first = {"choices": [{"delta": {"content": "par"}, "finish_reason": None}]}
                error = {"error": {"message": "engine died", "code": 500}}
                self.wfile.write(
                    f"data: {json.dumps(first)}\n\ndata: {json.dumps(error)}\n\n".encode()
                )

            def _send(self, code, payload):
                self._send_raw(code, json.dumps(payload).encode())

            def _send_raw(self, code, data):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def page(colour=(255, 255, 255), size=(64, 48)) -> Image.Image:
    """A page image whose top-left pixel picks the stub's behaviour."""
    image = Image.new("RGB", size, "white")
    image.putpixel((0, 0), colour)
    return image
