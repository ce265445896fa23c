"""A real nginx, started from the repository's config template, in front of local replicas."""

from __future__ import annotations

import shutil
import string
import subprocess
import time
from pathlib import Path

import httpx

from tests.e2e.procs import REPO, free_port

TEMPLATE = REPO / "deploy" / "nginx" / "templates" / "bertserve.conf.template"

MAIN = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/bertserve.conf;
}}
"""


def render(ports: list[int], listen: int) -> str:
    """The substitution the nginx image's envsubst does in compose: only the variables given,
    nginx's own $variables stay as they are."""
    servers = " ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in ports)
    text = string.Template(TEMPLATE.read_text()).safe_substitute(BERTSERVE_UPSTREAMS=servers, NGINX_PORT=listen)
    assert "${" not in text, "a template variable was left unrendered"
    return text


class Nginx:
    def __init__(self, root: Path, upstream_ports: list[int]) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (root / "bertserve.conf").write_text(render(upstream_ports, self.port))
        (root / "nginx.conf").write_text(MAIN.format(root=root))
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc: subprocess.Popen[bytes] | None = None

    def check_config(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "-t", "-p", str(self.root), "-c", str(self.root / "nginx.conf")],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def __enter__(self) -> Nginx:
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.root), "-c", str(self.root / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/nginx-health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise TimeoutError("nginx did not start: " + (self.root / "error.log").read_text())

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
