"""The server's parts in process: reading chat requests, upload names, the gate's queue
bound and a request's cancellation, and the converted document matching `Converter`'s."""

from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import Future

import pytest
from PIL import Image

from core_model.engines.interface import PageRequest, PageResult
from dsocr_connectors.pipeline import Converter
from dsocr_connectors.serve.chat import ChatRequest, decode_image, read_chat
from dsocr_connectors.serve.errors import ApiError
from dsocr_connectors.serve.gate import EngineGate, QueueFull, RequestEngine
from dsocr_connectors.serve.metrics import Metrics
from dsocr_connectors.serve.options import ServeOptions
from dsocr_connectors.serve.uploads import convert_file, file_label, spool
from tests.scripted_engine import ScriptedEngine
from tests.serve_process import chat_body, data_url, png_bytes

OPTIONS = ServeOptions(model_name="dsocr", mode="base")


def chat(**fields) -> ChatRequest:
    return ChatRequest.model_validate({**chat_body(data_url(), "Free OCR."), **fields})


def test_the_prompt_follows_the_image_as_vllm_builds_it():
    url, prompt, mode, limit = read_chat(chat(max_tokens=7), OPTIONS)
    assert url.startswith("data:image/png;base64,")
    assert (prompt, mode, limit) == ("<image>\nFree OCR.", "base", 7)
    kwargs = {"base_size": 1024, "image_size": 640, "crop_mode": True}
    assert read_chat(chat(mm_processor_kwargs=kwargs), OPTIONS)[2] == "gundam"
    empty = chat_body(data_url(), "")
    assert read_chat(ChatRequest.model_validate(empty), OPTIONS)[1].startswith("<image>\n<|grounding|>")


@pytest.mark.parametrize("fields, status, words", [
    ({"model": "other"}, 404, "does not exist"),
    ({"skip_special_tokens": True}, 400, "special tokens"),
    ({"mm_processor_kwargs": {"base_size": 999}}, 400, "match no mode"),
    ({"messages": [{"role": "system", "content": "x"},
                   {"role": "user", "content": "Free OCR."}]}, 400, "one user message"),
    ({"messages": [{"role": "user", "content": "no image"}]}, 400, "exactly one image"),
])
def test_requests_the_server_cannot_honour_are_refused_saying_why(fields, status, words):
    with pytest.raises(ApiError) as caught:
        read_chat(chat(**fields), OPTIONS)
    assert caught.value.status == status and words in caught.value.message


def test_only_data_urls_of_real_images_are_decoded():
    assert decode_image(data_url((30, 20))).size == (30, 20)
    photo = Image.new("RGB", (40, 20), "white")
    exif = photo.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", exif=exif)
    upright = decode_image("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode())
    assert (upright.size, upright.mode) == ((20, 40), "RGB")
    for url, words in [("https://example.com/a.png", "fetches nothing"),
                       ("data:image/png;base64,%%%", "bad base64"),
                       ("data:image/png;base64,aGVsbG8=", "not a readable image")]:
        with pytest.raises(ApiError, match=words):
            decode_image(url)


def test_client_file_names_are_labels_never_paths(tmp_path):
    assert file_label("../../etc/passwd") == "passwd"
    assert file_label("C:\\Users\\me\\scan.PDF") == "scan.PDF"
    assert file_label("") == file_label(None) == "upload"
    assert file_label("a\x00b\nc.pdf") == "abc.pdf"
    path = spool(io.BytesIO(b"data"), "../evil.sh", str(tmp_path))
    assert path.parent == tmp_path and path.name.startswith("dsocr-upload-")
    assert path.suffix == "" and path.read_bytes() == b"data"
    assert spool(io.BytesIO(b"x"), "scan.PDF", str(tmp_path)).suffix == ".pdf"


class HeldEngine:
    """Starts nothing until `release` is set; then answers every page."""

    name = "held"
    concurrency = 1

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[PageRequest] = []

    def submit(self, request, *, on_token=None):
        future: Future[PageResult] = Future()

        def work():
            self.release.wait(5)
            if future.set_running_or_notify_cancel():
                self.started.append(request)
                future.set_result(PageResult(text="ok", key=request.key))

        threading.Thread(target=work, daemon=True).start()
        return future


def test_the_gate_refuses_past_its_queue_and_a_cancelled_request_withdraws_its_pages():
    engine = HeldEngine()
    gate = EngineGate(engine, max_queue=2, metrics=Metrics())
    request = RequestEngine(gate)
    image = Image.new("RGB", (8, 8))
    futures = [request.submit(PageRequest(image=image, key=i)) for i in range(3)]
    with pytest.raises(QueueFull):
        gate.check_room()  # 1 in the engine's hands, 2 waiting
    request.cancel("timed out")
    results = [f.result(timeout=1) for f in futures]
    assert [(r.finish_reason, r.error, r.key) for r in results] == [
        ("error", "timed out", 0), ("error", "timed out", 1), ("error", "timed out", 2)]
    late = request.submit(PageRequest(image=image, key=3)).result(timeout=1)
    assert late.error == "timed out"
    engine.release.set()
    for _ in range(100):
        if gate.num_pending == 0:
            break
        threading.Event().wait(0.02)
    assert gate.num_pending == 0 and engine.started == []  # nothing read for nobody
    gate.check_room()


def test_the_served_document_is_the_one_converter_convert_makes(tmp_path):
    """... and the request's converter is closed after (its worker processes, which start
    with it, do not outlive the request); the shared engine is not."""
    source = tmp_path / "page.png"
    source.write_bytes(png_bytes())
    engine = ScriptedEngine()
    converter = Converter(engine=engine, mode="tiny", finish_processes=1)
    direct = converter.convert(source, name="page.png")
    pool = converter._finish_pool
    served = convert_file(converter, tmp_path / "page.png", "page.png")
    assert not source.exists()  # the upload is deleted after
    assert converter._finish_pool is None and pool._closed
    assert Converter(engine=engine, mode="tiny").convert(png_bytes()).pages  # still open
    assert served.metadata == direct.metadata and served.source == direct.source
    assert [p.raw_output for p in served.pages] == [p.raw_output for p in direct.pages]


@pytest.mark.parametrize("argv, words", [
    (["serve"], "no model"),
    (["serve", "--engine", "openai"], "--base-url"),
    (["serve", "--engine", "text-layer"], "model engine"),
    (["serve", "--model", "m", "--max-queue", "0"], "--max-queue"),
])
def test_dsocr_serve_refuses_to_start_without_an_engine_it_can_use(argv, words, monkeypatch,
                                                                   capsys):
    from dsocr_connectors.cli import main

    monkeypatch.delenv("DSOCR_MODEL", raising=False)
    assert main(argv) == 1
    assert words in capsys.readouterr().err


class SplitCharacterEngine:
    """Streams a character split over two tokens (the first has no text yet), and ends with
    text it never streamed (held back, then EOS), as a real engine can."""

    name = "split"
    concurrency = 1

    def submit(self, request, *, on_token=None):
        on_token(7, "")
        on_token(8, "字")
        future: Future[PageResult] = Future()
        future.set_result(PageResult(text="字é", token_ids=[7, 8, 9], num_output_tokens=3))
        return future


def test_a_stream_sends_every_character_and_token_id_even_those_held_back():
    import json

    from fastapi.testclient import TestClient

    from dsocr_connectors.serve import create_app

    body = chat_body(data_url(), stream=True, return_token_ids=True)
    body.pop("model")
    with TestClient(create_app(SplitCharacterEngine())) as client:
        reply = client.post("/v1/chat/completions", json=body)
    chunks = [json.loads(line[6:]) for line in reply.text.splitlines()
              if line.startswith("data: {")]
    choices = [c["choices"][0] for c in chunks if c["choices"]]
    assert "".join(c["delta"].get("content", "") for c in choices) == "字é"
    assert [t for c in choices for t in c.get("token_ids", [])] == [7, 8, 9]
    assert choices[-1]["finish_reason"] == "stop"
