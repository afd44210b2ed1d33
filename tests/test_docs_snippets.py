"""Every code block the docs mark as runnable runs as pasted, against the LWA emulator.

A block is marked by an HTML comment on the line before its fence (invisible on the site):

- ``<!-- run -->``: a ``python`` block runs as a script (``python snippet.py``) and must
  exit 0; a ``bash``/``sh`` block runs with ``bash -euo pipefail`` and must exit 0 (so a
  ``curl`` is written ``curl --fail-with-body ...`` when it expects a 2xx);
- ``<!-- run: file=app.py -->``: the block is written to ``app.py`` (the page says "save
  this as ``app.py``"), for a later block to use;
- ``<!-- run: append=mysite/settings.py -->``: the block is added at the end of that file
  (the page says "add this at the end of ...");
- ``<!-- run: background -->``: a shell block that serves (``uvicorn app:app``) is started
  and left running until its port answers; the next ``background`` block, or the end of
  the page, stops it;
- ``<!-- run: pytest -->``: a ``python`` block of tests is saved as a test file and run
  with ``python -m pytest`` (the package's ``lwa_emulator`` fixture included), which must
  pass; consecutive such blocks (without ``expect``) run in one ``pytest``, a file each;
- ``expect=TEXT`` (with any of the above): the output must contain ``TEXT``.

The blocks of one page run in order, in one fresh directory, with the environment a
reader has after following the quickstart: ``lwa-middleware emulator`` running (here a
fresh emulator on a free port, the ``lwa_emulator`` fixture) and its ``export`` lines
applied (``LWA_API_BASE_URL``, ``LWA_CLIENT_IDS``, ``TOKEN``; plus ``TOKEN_NO_ZIP`` and
``TOKEN_OTHER_APP`` as the demo prints them), the package's scripts on ``PATH``. The one
change made to a block: the ports. ``uvicorn`` and ``flask run`` get a free port through
``UVICORN_PORT`` / ``FLASK_RUN_PORT``, ``127.0.0.1:8000`` and ``--port 8000`` in a shell
block become that port, and ``127.0.0.1:8765`` (where ``lwa-middleware emulator`` listens)
the emulator's, so pages can say ``http://127.0.0.1:8000`` as a reader sees it.

Blocks that install (``pip install``), start the emulator, or need Amazon are not marked.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lwa_middleware.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SHELLS = frozenset({"bash", "sh", "shell"})
#: How the pages write the ports, and what each becomes (``{port}``: the app's free port,
#: ``{emulator}``: the emulator's ``host:port``).
DOCUMENTED_PORTS = {
    "127.0.0.1:8000": "127.0.0.1:{port}",
    "--port 8000": "--port {port}",
    "127.0.0.1:8765": "{emulator}",
}

_MARKER = re.compile(r"^(?P<indent>[ \t]*)<!--\s*run(?::(?P<options>.*?))?\s*-->\s*$")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the fence, 1-based
    lang: str
    code: str
    file: str | None = None
    append: bool = False
    background: bool = False
    pytest: bool = False
    expect: tuple[str, ...] = ()

    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


@dataclass
class Page:
    name: str
    blocks: list[Block] = field(default_factory=list)


def parse_options(text: str, where: str) -> dict[str, object]:
    options: dict[str, object] = {
        "file": None,
        "append": False,
        "background": False,
        "pytest": False,
        "expect": (),
    }
    for item in shlex.split(text or ""):
        key, sep, value = item.partition("=")
        if key in ("background", "pytest") and not sep:
            options[key] = True
        elif key in ("file", "append") and value:
            options["file"] = value
            options["append"] = key == "append"
        elif key == "expect" and value:
            options["expect"] = (*options["expect"], value)  # type: ignore[misc]
        else:
            raise ValueError(f"{where}: unknown run option {item!r}")
    return options


def marked_blocks(path: Path) -> list[Block]:
    """The blocks of one Markdown page marked ``<!-- run ... -->``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(DOCS).as_posix()
    blocks = []
    inside: str | None = None  # the fence of the code block being skipped, if any
    for index, line in enumerate(lines):
        fence_line = _FENCE.match(line)
        if inside is not None:  # a marker shown inside a code block is an example
            if fence_line and fence_line["fence"].startswith(inside) and not fence_line["lang"]:
                inside = None
            continue
        if fence_line:
            inside = fence_line["fence"]
            continue
        marker = _MARKER.match(line)
        if marker is None:
            continue
        where = f"docs/{page}:{index + 1}"
        fence = _FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
        if fence is None:
            raise ValueError(f"{where}: a run marker must be right before a code fence")
        indent, closing = fence["indent"], fence["fence"]
        body = []
        for text in lines[index + 2 :]:
            if text.strip().startswith(closing):
                break
            body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
        else:
            raise ValueError(f"{where}: the code fence is never closed")
        lang = fence["lang"].lower()
        if lang not in SHELLS | {"python"}:
            raise ValueError(f"{where}: only python and shell blocks can run, not {lang!r}")
        options = parse_options(marker["options"] or "", where)
        if options["background"] and lang not in SHELLS:
            raise ValueError(f"{where}: only a shell block can run in the background")
        if options["pytest"] and lang != "python":
            raise ValueError(f"{where}: only a python block can run as tests")
        blocks.append(
            Block(
                page=page,
                line=index + 2,
                lang=lang,
                code="\n".join(body) + "\n",
                file=options["file"],  # type: ignore[arg-type]
                append=bool(options["append"]),
                background=bool(options["background"]),
                pytest=bool(options["pytest"]),
                expect=options["expect"],  # type: ignore[arg-type]
            )
        )
    return blocks


def pages() -> list[Page]:
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        blocks = marked_blocks(path)
        if blocks:
            found.append(Page(path.relative_to(DOCS).as_posix(), blocks))
    return found


PAGES = pages()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[str], where: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"{where}: the server exited with {process.returncode}:\n{output}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"{where}: nothing answered on port {port} within 30 s")


def stop(process: subprocess.Popen[str]) -> None:
    """Stop a background block's process group (started with its own session)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    if process.stdout:
        process.stdout.close()


class Session:
    """One page's blocks, run in order in one directory."""

    def __init__(self, directory: Path, env: dict[str, str], port: int) -> None:
        self.directory = directory
        self.env = env
        self.port = port
        self.emulator = env["LWA_API_BASE_URL"].removeprefix("http://")
        self.server: subprocess.Popen[str] | None = None
        self.count = 0

    def shell_code(self, block: Block) -> str:
        code = block.code
        for documented, actual in DOCUMENTED_PORTS.items():
            code = code.replace(documented, actual.format(port=self.port, emulator=self.emulator))
        return code

    def check_output(self, block: Block, output: str) -> None:
        for text in block.expect:
            assert text in output, f"{block.where()}: {text!r} not in the output:\n{output}"

    def run(self, block: Block) -> None:
        if block.pytest:
            self.run_tests([block])
            return
        self.count += 1
        if block.file is not None:
            path = self.directory / block.file
            if block.append:  # "add this at the end of ..."
                with path.open("a", encoding="utf-8") as file:
                    file.write("\n" + block.code)
            else:
                path.write_text(block.code, encoding="utf-8")
            return
        if block.background:
            self.start_server(block)
            return
        if block.lang == "python":
            script = self.directory / f"snippet_{self.count}.py"
            script.write_text(block.code, encoding="utf-8")
            command = [sys.executable, str(script)]
        else:
            command = ["bash", "-euo", "pipefail", "-c", self.shell_code(block)]
        result = subprocess.run(
            command,
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, (
            f"{block.where()} exited with {result.returncode}:\n{block.code}\n--- output\n{output}"
        )
        self.check_output(block, output)

    def run_tests(self, blocks: list[Block]) -> None:
        """Blocks of tests, one test file each, in one ``python -m pytest`` (a pytest
        process costs seconds to start; the files stay separate modules)."""
        files: dict[str, Block] = {}
        for block in blocks:
            self.count += 1
            tests = self.directory / f"test_snippet_{self.count}.py"
            tests.write_text(block.code, encoding="utf-8")
            files[tests.name] = block
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
        result = subprocess.run(
            command,
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60 * len(files),
            check=False,
        )
        output = result.stdout + result.stderr
        failed = [block.where() for name, block in files.items() if name in output] or [
            blocks[0].where()
        ]
        assert result.returncode == 0, (
            f"{', '.join(failed)} exited with {result.returncode}:\n--- output\n{output}"
        )
        for block in blocks:
            self.check_output(block, output)

    def start_server(self, block: Block) -> None:
        self.stop_server()
        self.server = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", self.shell_code(block)],
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: stop() ends it and its children
        )
        wait_for_port(self.port, self.server, block.where())

    def stop_server(self) -> None:
        if self.server is not None:
            stop(self.server)
            self.server = None


@pytest.fixture
def session(lwa_emulator: Emulator, tmp_path: Path) -> Iterator[Session]:
    _, token = lwa_emulator.mint_for(
        name="Test Customer",
        email="test.customer@example.com",
        postal_code="98101",
        scopes=["profile", "postal_code"],
    )
    _, no_zip = lwa_emulator.mint_for(name="Test Customer", scopes=["profile"])
    _, other_app = lwa_emulator.mint_for(
        name="Test Customer", client_id="amzn1.application-oa2-client.another"
    )
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("LWA_")}
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        LWA_API_BASE_URL=lwa_emulator.url,
        LWA_CLIENT_IDS=lwa_emulator.client_id,
        TOKEN=token,
        TOKEN_NO_ZIP=no_zip,
        TOKEN_OTHER_APP=other_app,
        UVICORN_PORT=str(port),
        FLASK_RUN_PORT=str(port),
        PYTHONDONTWRITEBYTECODE="1",
    )
    running = Session(tmp_path, env, port)
    try:
        yield running
    finally:
        running.stop_server()


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_page_blocks_run_as_pasted(page: Page, session: Session) -> None:
    tests: list[Block] = []  # consecutive blocks of tests run in one pytest
    for block in page.blocks:
        if block.pytest and not block.expect:
            tests.append(block)
            continue
        if tests:
            session.run_tests(tests)
            tests = []
        session.run(block)
    if tests:
        session.run_tests(tests)


def test_the_quickstart_runs_end_to_end() -> None:
    """The quickstart's path is marked: an app file, a server, a request that gets 200."""
    blocks = next(page.blocks for page in PAGES if page.name == "quickstart.md")
    assert any(block.file == "app.py" for block in blocks)
    assert any(block.background and "uvicorn app:app" in block.code for block in blocks)
    assert any("curl --fail-with-body" in block.code and "$TOKEN" in block.code for block in blocks)


def test_markers_parse() -> None:
    """A marker's options, and the mistakes a page can make, are found."""
    assert parse_options("file=app.py", "x") == {
        "file": "app.py",
        "append": False,
        "background": False,
        "pytest": False,
        "expect": (),
    }
    assert parse_options("pytest", "x")["pytest"] is True
    assert parse_options('background expect="HTTP/1.1 200"', "x")["expect"] == ("HTTP/1.1 200",)
    with pytest.raises(ValueError, match="unknown run option"):
        parse_options("backgrund", "x")
