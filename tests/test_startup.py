"""What the entry points import: `dsocr --help` nothing heavy, the paths without a model no torch.

Each check runs the entry point in a fresh interpreter and looks at the import graph, not at
a clock, so it cannot flake on a loaded machine (the timings are `benchmarks/startup.py`'s).
A watcher on `sys.meta_path` records where each watched module was first looked for, so a
failure shows the import chain to make lazy. "Without torch" is also checked for real: torch
and safetensors (the `model` extra) are made unimportable and the same commands must work.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RAW = ROOT / "tests" / "data" / "raw_outputs" / "001_odb-en-paper-maxwell-equations.txt"

# Never on a path without a model: each costs from 0.1 s (onnxruntime) to several seconds.
HEAVY = (
    "torch", "safetensors", "transformers", "vllm", "ray", "pandas", "pyarrow", "scipy",
    "pymupdf.layout", "pymupdf4llm", "onnxruntime", "llama_index", "langchain_core",
    "fastapi", "uvicorn",
)
# Not even these for `dsocr --help` and `import dsocr_connectors`.
LIGHT = HEAVY + ("pydantic", "numpy", "PIL", "pymupdf", "dsocr_connectors.document")
MODEL_EXTRA = ("torch", "safetensors")

_PRELUDE = """
import json, sys, traceback
WATCHED = set({watched!r})
FIRST = {{}}
class Watcher:
    def find_spec(self, name, path=None, target=None):
        if name in WATCHED and name not in FIRST:
            FIRST[name] = "".join(traceback.format_stack(limit=30)[:-1])
        return None
sys.meta_path.insert(0, Watcher())
for name in {blocked!r}:
    sys.modules[name] = None  # as if not installed: importing it raises ImportError
STEPS = {{}}
def step(name):
    STEPS[name] = sorted(n for n in WATCHED if sys.modules.get(n) is not None)
"""
_EPILOGUE = """
print("@@" + json.dumps({"steps": STEPS, "first": FIRST}))
"""


@dataclass
class Run:
    steps: dict[str, list[str]]  # step name -> watched modules imported by then
    first: dict[str, str]  # watched module -> the stack that first looked for it
    stdout: str
    stderr: str

    def assert_not_imported(self, step: str, names: tuple[str, ...]) -> None:
        found = [name for name in self.steps[step] if name in names]
        where = "\n".join(f"--- {name} first imported from:\n{self.first.get(name)}"
                          for name in found)
        assert not found, f"{step} imported {found}\n{where}"


def run_python(code: str, *, watched: tuple[str, ...] = LIGHT, blocked: tuple[str, ...] = (),
               cwd: Path = ROOT, timeout: float = 120) -> Run:
    """Run `code` in a fresh interpreter that records first imports of `watched` modules;
    `step(name)` in the code snapshots them."""
    script = _PRELUDE.format(watched=watched, blocked=blocked) + textwrap.dedent(code) + _EPILOGUE
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout)
    marker = result.stdout.rfind("@@")
    assert result.returncode == 0 and marker >= 0, f"failed:\n{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout[marker + 2 :])
    return Run(report["steps"], report["first"], result.stdout[:marker], result.stderr)


def test_help_and_the_package_import_nothing_heavy():
    run = run_python("""
        import dsocr_connectors
        step("import dsocr_connectors")
        from dsocr_connectors.cli import main
        try:
            main(["--help"])
        except SystemExit as exit:
            assert exit.code == 0
        step("dsocr --help")
        assert dsocr_connectors.Document.__name__ == "Document"  # still there, on first use
    """)
    run.assert_not_imported("import dsocr_connectors", LIGHT)
    run.assert_not_imported("dsocr --help", LIGHT)
    for name in ("convert", "parse-raw", "info", "serve"):
        assert name in run.stdout


def test_the_help_lists_each_subcommand_as_it_registers_itself():
    from dsocr_connectors.cli import COMMANDS, build_parser

    full = build_parser()  # every subcommand module imported and registered
    subparsers = next(a for a in full._actions if a.dest == "command")
    registered = {action.dest: action.help for action in subparsers._choices_actions}
    assert registered == COMMANDS


def test_commands_without_a_model_never_import_torch(tmp_path):
    """The README's main command, parse-raw, info: none imports torch (or the layout model,
    pandas, ray, the frameworks)."""
    run = run_python(f"""
        from dsocr_connectors.cli import main
        assert main(["convert", "examples/", "-o", {str(tmp_path / "out")!r}, "-q"]) == 2
        step("dsocr convert examples/")
        assert main(["parse-raw", {str(RAW)!r}, "--format", "md", "-o", {str(tmp_path)!r}]) == 0
        step("dsocr parse-raw")
        assert main(["info"]) == 0
        step("dsocr info")
    """, watched=HEAVY)
    run.assert_not_imported("dsocr convert examples/", HEAVY)
    run.assert_not_imported("dsocr parse-raw", HEAVY)
    from core_model.torch_status import gpu_build, has_gpu_driver

    if gpu_build() is None or not has_gpu_driver():  # else info asks torch for devices
        run.assert_not_imported("dsocr info", HEAVY)
    assert "Spring Water Quality Report" in (tmp_path / "out" / "born_digital.md").read_text()


def test_the_openai_engine_never_imports_torch(tmp_path):
    """`--engine openai` against a real HTTP server, and the loop check the engine runs on a
    page that hit the token limit."""
    run = run_python(f"""
        from tests.openai_stub import StubServer
        from core_model.engines.loop_detect import LoopDetector
        from dsocr_connectors.cli import main
        with StubServer() as server:
            code = main(["convert", "examples/scanned.pdf", "-q", "-o", {str(tmp_path / "out")!r},
                         "--engine", "openai", "--base-url", server.base_url, "--model", "dsocr"])
        assert code == 0, code  # the scanned pages were read, by the server
        assert LoopDetector().loop_start([7, 8, 9] * 400) is not None
        step("dsocr convert --engine openai")
    """, watched=HEAVY)
    run.assert_not_imported("dsocr convert --engine openai", HEAVY)
    assert "page " in (tmp_path / "out" / "scanned.md").read_text()


def test_the_connectors_read_text_layers_without_torch():
    pytest.importorskip("llama_index.core")
    pytest.importorskip("langchain_core")
    framework = ("llama_index", "langchain_core")
    watched = tuple(name for name in HEAVY if name not in framework)
    run = run_python("""
        from dsocr_connectors import DeepSeekOCRLoader, DeepSeekOCRReader
        docs = DeepSeekOCRReader().load_data("examples/born_digital.pdf")
        assert len(docs) == 2 and "Spring Water" in docs[0].text
        step("DeepSeekOCRReader")
        pages = DeepSeekOCRLoader("examples/born_digital.pdf").load()
        assert len(pages) == 2 and "Spring Water" in pages[0].page_content
        step("DeepSeekOCRLoader")
    """, watched=watched)
    run.assert_not_imported("DeepSeekOCRReader", watched)
    run.assert_not_imported("DeepSeekOCRLoader", watched)


def test_without_the_model_extra_the_text_path_works_and_the_native_engine_says_what_to_install(
    tmp_path,
):
    run = run_python(f"""
        from dsocr_connectors.cli import main
        assert main(["convert", "examples/", "-o", {str(tmp_path / "out")!r}, "-q"]) == 2
        assert main(["convert", "examples/scanned.pdf", "-o", {str(tmp_path / "m")!r}, "-q",
                     "--model", {str(tmp_path)!r}]) == 1
        assert main(["info"]) == 0
        from core_model.engines import load_engine
        try:
            load_engine("native", model={str(tmp_path)!r})
        except ModuleNotFoundError as exc:
            print("native:", exc)
        step("done")
    """, blocked=MODEL_EXTRA, watched=())
    install = "pip install 'dsocr-connectors[model]'"
    assert f"the native engine needs torch, which is not installed: {install}" in run.stderr
    assert "native: the native engine needs torch" in run.stdout
    assert f"torch: not installed; the native engine needs it: {install}" in run.stdout
    assert "native      no   torch is not installed" in run.stdout
    assert (tmp_path / "out" / "born_digital.md").stat().st_size > 1000
