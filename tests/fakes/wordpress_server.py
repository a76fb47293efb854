"""A real WordPress (Debian's ``wordpress`` package) on PHP's built-in web server and the local MariaDB.

Nothing here imitates WordPress: the site is a copy of ``/usr/share/wordpress`` with a self-contained
``wp-config.php`` (Debian's looks its settings up by HTTP host, which breaks under the PHP CLI), installed by
WordPress's own ``wp_install()`` into a throwaway database, with an application password minted by WordPress.

``WP_ENVIRONMENT_TYPE`` is ``local`` because WordPress ignores application passwords over plain HTTP on any
other kind of site. WP-Cron is off, so a scheduled post stays ``future`` until something runs the cron.

Without the packages (``apt-get install wordpress php-cli php-mysql``) or MariaDB the tests skip, saying
so; with ``AIOS_REQUIRE_WORDPRESS=1`` (set by CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import pytest

WORDPRESS_SOURCE = Path("/usr/share/wordpress")
MARIADB = ("127.0.0.1", 3306)
REQUIRED = os.environ.get("AIOS_REQUIRE_WORDPRESS") == "1"
ADMIN = "editor-in-chief"
SUBSCRIBER = "reader"  # a real account that may not write posts: its application password gets a 403

_SALTS = (
    "AUTH_KEY",
    "SECURE_AUTH_KEY",
    "LOGGED_IN_KEY",
    "NONCE_KEY",
    "AUTH_SALT",
    "SECURE_AUTH_SALT",
    "LOGGED_IN_SALT",
    "NONCE_SALT",
)

_CONFIG = """<?php
define('DB_NAME', '{database}');
define('DB_USER', 'root');
define('DB_PASSWORD', '');
define('DB_HOST', '{db_host}');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
{salts}
$table_prefix = 'wp_';
define('WP_HOME', '{url}');
define('WP_SITEURL', '{url}');
define('WP_ENVIRONMENT_TYPE', 'local');
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_DEBUG', false);
if (!defined('ABSPATH')) {{
    define('ABSPATH', __DIR__ . '/');
}}
require_once ABSPATH . 'wp-settings.php';
"""

_CREATE_DATABASE = """<?php
$db = new mysqli('{host}', 'root', '', '', {port});
$db->query('CREATE DATABASE `{database}` CHARACTER SET utf8mb4');
"""

_DROP_DATABASE = """<?php
$db = new mysqli('{host}', 'root', '', '', {port});
$db->query('DROP DATABASE IF EXISTS `{database}`');
"""

_INSTALL = """<?php
define('WP_INSTALLING', true);
$_SERVER['HTTP_HOST'] = '{host_port}';
require __DIR__ . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
add_filter('pre_wp_mail', '__return_false');
$site = wp_install('AIOS test shop', '{admin}', 'editor@example.com', false, '', wp_generate_password(24));
$reader = wp_insert_user(['user_login' => '{subscriber}', 'user_pass' => wp_generate_password(24),
    'user_email' => 'reader@example.com', 'role' => 'subscriber']);
[$admin_password] = WP_Application_Passwords::create_new_application_password($site['user_id'], ['name' => 'aios']);
[$reader_password] = WP_Application_Passwords::create_new_application_password($reader, ['name' => 'aios']);
echo json_encode(['admin' => $admin_password, 'subscriber' => $reader_password]);
"""


def wordpress_unavailable() -> str | None:
    """Why a WordPress cannot be set up on this machine, or None if it can."""
    if shutil.which("php") is None or not (WORDPRESS_SOURCE / "wp-settings.php").exists():
        return "WordPress tests need `apt-get install wordpress php-cli php-mysql`"
    try:
        socket.create_connection(MARIADB, timeout=1).close()
    except OSError:
        return f"WordPress tests need MariaDB (or MySQL) on {MARIADB[0]}:{MARIADB[1]}, user root, no password"
    return None


def skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"AIOS_REQUIRE_WORDPRESS=1 but {reason}")
    pytest.skip(reason)


class WordPressServer:
    """One WordPress site in a temporary directory and database; ``url``, ``user``, ``app_password``."""

    def __init__(self) -> None:
        self.database = f"aios_wp_{secrets.token_hex(6)}"
        self._directory = Path(tempfile.mkdtemp(prefix="aios-wordpress-"))
        self._site = self._directory / "site"
        self._process: subprocess.Popen[bytes] | None = None
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.user = ADMIN
        self.app_password = ""
        self.subscriber = SUBSCRIBER
        self.subscriber_password = ""

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        shutil.copytree(WORDPRESS_SOURCE, self._site, symlinks=True)
        host, port = MARIADB
        (self._site / "wp-config.php").write_text(
            _CONFIG.format(
                database=self.database,
                db_host=f"{host}:{port}",
                url=self.url,
                salts="\n".join(f"define('{name}', '{secrets.token_hex(32)}');" for name in _SALTS),
            )
        )
        self._php(_CREATE_DATABASE.format(host=host, port=port, database=self.database))
        passwords = json.loads(
            self._php(_INSTALL.format(host_port=f"127.0.0.1:{self.port}", admin=ADMIN, subscriber=SUBSCRIBER))
        )
        self.app_password = passwords["admin"]
        self.subscriber_password = passwords["subscriber"]
        self._process = subprocess.Popen(
            ["php", "-S", f"127.0.0.1:{self.port}"],
            cwd=self._site,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_serving()

    def _php(self, script: str) -> str:
        """Run a PHP script inside the site's directory (so it finds wp-load.php); its output."""
        path = self._site / f"aios-{secrets.token_hex(4)}.php"
        path.write_text(script)
        try:
            done = subprocess.run(
                ["php", path.name], cwd=self._site, capture_output=True, text=True, timeout=60, check=False
            )
        finally:
            path.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"PHP failed setting up WordPress: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done.stdout

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.url}/?rest_route=/", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"WordPress did not answer at {self.url} within 20 s")
            time.sleep(0.05)

    def posts(self, **params: str) -> list[dict[str, object]]:
        """Every post WordPress has (any status) matching ``params``, as its REST API gives them."""
        response = httpx.get(
            f"{self.url}/",
            params={"rest_route": "/wp/v2/posts", "status": "any", "context": "edit", "per_page": "100"}
            | params,
            auth=(self.user, self.app_password),
            timeout=10,
        )
        response.raise_for_status()
        posts: list[dict[str, object]] = response.json()
        return posts

    @contextmanager
    def in_maintenance(self) -> Iterator[None]:
        """WordPress's own maintenance mode (a ``.maintenance`` file, as during an update): every request is a
        503 until it ends."""
        flag = self._site / ".maintenance"
        flag.write_text("<?php $upgrading = time();\n")
        try:
            yield
        finally:
            flag.unlink()

    def delete_post(self, slug: str) -> None:
        """Delete the post with this slug for good, as an editor emptying the trash does."""
        for post in self.posts(slug=slug):
            self._delete(post)

    def delete_all_posts(self) -> None:
        """Empty the site (trash included), so the next test's slugs are free."""
        for post in self.posts(status="any,trash"):
            self._delete(post)

    def _delete(self, post: dict[str, object]) -> None:
        httpx.delete(
            f"{self.url}/",
            params={"rest_route": f"/wp/v2/posts/{post['id']}", "force": "true"},
            auth=(self.user, self.app_password),
            timeout=10,
        ).raise_for_status()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        try:
            if self._site.exists():
                host, port = MARIADB
                self._php(_DROP_DATABASE.format(host=host, port=port, database=self.database))
        finally:
            shutil.rmtree(self._directory, ignore_errors=True)


def wordpress_site() -> Iterator[WordPressServer]:
    """One WordPress, or a skip (a failure under AIOS_REQUIRE_WORDPRESS=1) saying what is missing."""
    reason = wordpress_unavailable()
    if reason is not None:
        skip_or_fail(reason)
    with WordPressServer() as site:
        yield site


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
