"""Run `dsocr serve` as a real subprocess on a free loopback port, for the server tests."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`with ServeProcess(args) as server:` -> `server.url` ("http://127.0.0.1:PORT")."""

    def __init__(self, args: list[str], *, startup_seconds: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.startup_seconds = startup_seconds
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ServeProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("DSOCR_API_KEY", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dsocr_connectors.cli", "serve", "--port", str(self.port),
             "--log-level", "warning", *self.args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + self.startup_seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dsocr serve exited {self.proc.returncode}:\n"
                                   f"{self.proc.stdout.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("dsocr serve did not answer /health in time")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        """What the server printed (after it stopped)."""
        return self.proc.stdout.read() if self.proc and self.proc.stdout else ""


def png_bytes(size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (255, 255, 255)
              ) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def data_url(size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (255, 255, 255)
             ) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(size, color)).decode()


def chat_body(url: str, text: str = "Free OCR.", **fields) -> dict:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    return {"model": "dsocr", "messages": [{"role": "user", "content": content}], **fields}
