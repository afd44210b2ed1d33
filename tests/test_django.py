"""``lwa_middleware.integrations.django`` in a project made as docs/django.md makes it
(``django-admin startproject`` plus the documented settings and files), served by
gunicorn (WSGI, ``LWAWSGIMiddleware``) and by uvicorn (ASGI, ``LWAMiddleware``) against the
emulator: the first request of a customer creates their ``User``, the next finds it, email
and name follow the Amazon profile (a unique-email clash is logged, not an error), an
inactive user is refused at once, a ``Remote-User`` header does nothing.

What needs other settings (``create_unknown_user = False``, ``lwa_account_optional``,
the checks at startup, async views) runs in Django's test client in a process of its own
(``django_checks.py``), on the same project.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lwa_middleware.emulator import Emulator
from test_docs_snippets import PAGES, free_port, stop, wait_for_port

from conftest import bearer

HERE = Path(__file__).resolve().parent
SERVERS = ["gunicorn", "uvicorn"]


def build_project(directory: Path, env: dict[str, str]) -> None:
    """docs/django.md's project: ``startproject``, then every file the page has saved."""
    blocks = next(page.blocks for page in PAGES if page.name == "django.md")
    for block in blocks:
        if block.file is not None:
            path = directory / block.file
            if block.append:
                with path.open("a", encoding="utf-8") as file:
                    file.write("\n" + block.code)
            else:
                path.write_text(block.code, encoding="utf-8")
        elif "startproject" in block.code:
            subprocess.run(["bash", "-c", block.code], cwd=directory, env=env, check=True)
    python = [sys.executable, "manage.py"]
    subprocess.run([*python, "migrate", "--verbosity", "0"], cwd=directory, env=env, check=True)


@dataclass
class Project:
    directory: Path
    env: dict[str, str]
    urls: dict[str, str]
    logs: dict[str, Path]

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.directory / "db.sqlite3", isolation_level=None)

    def users(self, username: str) -> list[tuple[Any, ...]]:
        with self.db() as db:
            return db.execute(
                "SELECT id, email, first_name, last_name, is_active FROM auth_user "
                "WHERE username = ?",
                (username,),
            ).fetchall()


@pytest.fixture(scope="module")
def project(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    directory = tmp_path_factory.mktemp("mysite")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWA_")}
    env |= {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "LWA_API_BASE_URL": emulator.url,
        "LWA_CLIENT_IDS": emulator.client_id,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    build_project(directory, env)
    ports = {server: free_port() for server in SERVERS}
    commands = {
        "gunicorn": [
            sys.executable,
            "-m",
            "gunicorn",
            "mysite.wsgi",
            "--bind",
            f"127.0.0.1:{ports['gunicorn']}",
            "--threads",
            "4",
        ],
        "uvicorn": [
            sys.executable,
            "-m",
            "uvicorn",
            "mysite.asgi:application",
            "--port",
            str(ports["uvicorn"]),
            "--lifespan",
            "off",
        ],
    }
    logs = {server: directory / f"{server}.log" for server in SERVERS}
    processes: list[subprocess.Popen[str]] = []
    try:
        for server, command in commands.items():
            with logs[server].open("w") as log:
                process = subprocess.Popen(
                    command,
                    cwd=directory,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
            processes.append(process)
        for server, process in zip(SERVERS, processes):
            wait_for_port(ports[server], process, server)
        urls = {server: f"http://127.0.0.1:{ports[server]}" for server in SERVERS}
        yield Project(directory, env, urls, logs)
    finally:
        for process in processes:
            stop(process)


@pytest.fixture(params=SERVERS)
def url(request: pytest.FixtureRequest, project: Project) -> str:
    return project.urls[request.param]


def mail(url: str, name: str) -> str:
    """An email address of one server's test (every address is unique in the project)."""
    return f"{name}.{url.rpartition(':')[2]}@example.com"


def me(url: str, token: str, **headers: str) -> httpx.Response:
    return httpx.get(url + "/me", headers={**bearer(token), **headers}, timeout=10)


def test_the_first_request_creates_the_user_the_next_finds_it(
    project: Project, emulator: Emulator, url: str
) -> None:
    user, token = emulator.mint_for(name="Grace Brewster Hopper", email=mail(url, "grace"))
    assert project.users(user.user_id) == []
    first = me(url, token)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "username": user.user_id,
        "name": "Grace Brewster Hopper",
        "email": mail(url, "grace"),
        "scopes": ["profile", "profile:user_id"],
    }
    rows = project.users(user.user_id)
    assert len(rows) == 1
    assert rows[0][1:] == (mail(url, "grace"), "Grace Brewster", "Hopper", 1)
    for _ in range(2):
        assert me(url, token).status_code == 200
    assert project.users(user.user_id) == rows  # found, not created again
    with project.db() as db:
        (password,) = db.execute(
            "SELECT password FROM auth_user WHERE username = ?", (user.user_id,)
        ).fetchone()
        assert password.startswith("!")  # unusable: no password signs this user in
        assert db.execute("SELECT COUNT(*) FROM django_session").fetchone() == (0,)


def test_an_inactive_user_is_refused_at_once(
    project: Project, emulator: Emulator, url: str
) -> None:
    user, token = emulator.mint_for(name="Ina Active", email=mail(url, "ina"))
    assert me(url, token).status_code == 200
    with project.db() as db:
        db.execute("UPDATE auth_user SET is_active = 0 WHERE username = ?", (user.user_id,))
    for _ in range(2):  # re-checked on every request: no cache to wait out
        refused = me(url, token)
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/json;charset=UTF-8"
        assert "www-authenticate" not in refused.headers
        body = refused.json()
        assert body["error"] == "access_denied"
        assert refused.headers["x-request-id"] == body["request_id"]
    with project.db() as db:
        db.execute("UPDATE auth_user SET is_active = 1 WHERE username = ?", (user.user_id,))
    assert me(url, token).status_code == 200


def test_a_remote_user_header_does_nothing(project: Project, emulator: Emulator, url: str) -> None:
    victim, victim_token = emulator.mint_for(name="Victim", email=mail(url, "victim"))
    assert me(url, victim_token).status_code == 200  # the victim's User exists
    mallory, token = emulator.mint_for(name="Mallory", email=mail(url, "mallory"))
    for header in ("Remote-User", "Remote_User", "X-Remote-User"):
        spoofed = me(url, token, **{header: victim.user_id})
        assert spoofed.json()["username"] == mallory.user_id
    # without a token (an excluded path, a page that does not exist): nobody is signed in
    health = httpx.get(url + "/health", headers={"Remote-User": victim.user_id}, timeout=10)
    assert health.json() == {"status": "ok"}
    anonymous = httpx.get(url + "/me", headers={"Remote-User": victim.user_id}, timeout=10)
    assert anonymous.status_code == 400  # the LWA middleware: no token
    admin = httpx.get(
        url + "/admin/",
        headers={**bearer(token), "Remote-User": victim.user_id},
        timeout=10,
        follow_redirects=False,
    )
    assert admin.status_code == 302  # Mallory is no staff: the admin's login page
    assert "/admin/login/" in admin.headers["location"]


def test_email_and_name_follow_the_profile_and_a_clash_is_skipped(
    project: Project, emulator: Emulator, url: str
) -> None:
    old, new = mail(url, "ann.old"), mail(url, "ann.new")
    user, token = emulator.mint_for(name="Ann Old", email=old)
    assert me(url, token).status_code == 200
    emulator.add_user(name="Ann New", email=new, user_id=user.user_id)
    renamed = emulator.mint(user.user_id, ["profile"])
    assert me(url, renamed).json()["name"] == "Ann New"
    assert project.users(user.user_id)[0][1:4] == (new, "Ann", "New")
    # a unique email column: another customer with that email is created without it, and
    # keeping it in step is skipped with a WARNING, never an error
    with project.db() as db:
        db.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS unique_email ON auth_user(email) WHERE email != ''"
        )
    twin, twin_token = emulator.mint_for(name="Ann Twin", email=new)
    for _ in range(2):
        response = me(url, twin_token)
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "Ann Twin"
    assert project.users(twin.user_id)[0][1:4] == ("", "Ann", "Twin")
    server = "gunicorn" if url == project.urls["gunicorn"] else "uvicorn"
    log = project.logs[server].read_text()
    assert "a new user was created without the Amazon profile's email, first_name" in log
    assert "email of user" in log and "not updated from the Amazon profile" in log
    assert twin_token not in log and new not in log


def test_django_checks_in_process(project: Project) -> None:
    """``django_checks.py``: the backend's and middleware's other settings, under Django's
    sync and async test clients."""
    done = subprocess.run(
        [sys.executable, str(HERE / "django_checks.py")],
        cwd=project.directory,
        env={**project.env, "DJANGO_SETTINGS_MODULE": "mysite.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("all django checks passed"), done.stdout
