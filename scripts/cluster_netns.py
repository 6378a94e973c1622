#!/usr/bin/env python3
"""Several webchat hosts behind nginx on one machine, made with network namespaces.

Each "host" is a network namespace with an address on a private /24 that exists only inside
the namespaces this script creates (10.231.7.0/24 by default), joined to the root namespace
by a veth pair on a bridge, and runs one ``webchat serve``. nginx listens on the root
namespace's loopback and spreads requests over the hosts with ``deploy/nginx/webchat.conf``.
PostgreSQL and Redis stay on the root namespace's loopback with their configuration
untouched: a TCP forwarder (:func:`forward`, in this file) listens on the bridge address and
passes connections on to 127.0.0.1, so the hosts reach them at the bridge address — as hosts
of a real deployment reach a database server on their network.

    python scripts/cluster_netns.py up [--store URL] [--broker URL] [-- SERVE_OPTIONS...]
    python scripts/cluster_netns.py status
    python scripts/cluster_netns.py host 2 kill     (or stop, start, restart, partition, heal)
    python scripts/cluster_netns.py down

``up`` leaves everything running and records what it started in a state folder; ``down``
ends exactly those processes (by pid, after checking each still is one of them) and deletes
the namespaces and the bridge; ``up`` first clears what a previous run left. ``--store`` and
``--broker`` name the services as seen from this machine (``postgresql://postgres@127.0.0.1
/test``): loopback addresses are rewritten to the bridge, where the forwarder listens.
Without them every host keeps its own SQLite database: the network part works, but a chat
exists only on the host that started it.

Tests use :func:`cluster`, a context manager doing ``up`` and ``down`` that yields a
:class:`Cluster`: nginx's URL, the hosts with their direct URLs, per-host control (kill,
stop, start, partition from the network, heal) and nginx's access log, which names the host
that answered each request. Needs root, iproute2 and nginx (``scripts/setup test`` installs
the last two from Debian).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "nginx" / "webchat.conf"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379}
READY_S = 30.0
"""How long a server or nginx may take to answer ``/healthz`` after it was started."""
STOP_S = 15.0
"""How long a process may take to exit after SIGTERM before it gets SIGKILL (webchat drains
held long-polls and closes WebSockets on SIGTERM)."""


class ClusterError(RuntimeError):
    """What the cluster could not do; the message says what and where to look."""


# ---- the topology: names and addresses, derived in one place ------------------------------

@dataclass(frozen=True)
class Topology:
    """Where everything is. Two topologies with different names and subnets can be up at the
    same time (the tests use their own, so a hand-started cluster is left alone)."""

    name: str = "wc"
    """Prefix of the namespaces, links and state folder (letters and digits, ≤ 8)."""
    subnet: str = "10.231.7"
    """The first three octets of the hosts' private /24."""
    hosts: int = 3
    server_port: int = 8080
    """What each ``webchat serve`` listens on, at its own address in its own namespace."""
    lb_port: int = 8088
    """What nginx listens on, at 127.0.0.1 in the root namespace."""
    state_root: str = "/tmp"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", self.name):
            raise ClusterError(f"name {self.name!r}: 1 to 8 lower-case letters and digits "
                               "(link names are at most 15 characters)")
        try:
            network = ipaddress.ip_network(f"{self.subnet}.0/24")
        except ValueError:
            raise ClusterError(f"subnet {self.subnet!r}: three octets, e.g. 10.231.7") from None
        if not network.is_private or network.is_loopback:
            raise ClusterError(f"subnet {network} is not a private range")
        if not 1 <= self.hosts <= 9:
            raise ClusterError("hosts: 1 to 9")

    @property
    def bridge(self) -> str:
        return f"{self.name}-br"

    @property
    def gateway(self) -> str:
        """The bridge's address in the root namespace: where the hosts find the forwarder."""
        return f"{self.subnet}.1"

    def namespace(self, index: int) -> str:
        """Host ``index`` (from 1)'s namespace; its veth's root end has the same name."""
        return f"{self.name}-h{index}"

    def address(self, index: int) -> str:
        return f"{self.subnet}.{10 + index}"

    @property
    def state_dir(self) -> Path:
        return Path(self.state_root) / f"webchat-cluster-{self.name}"

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"


def through_bridge(url: str, gateway: str) -> tuple[str, int | None]:
    """``url`` as a host reaches it, and the port to forward: a loopback host is replaced by
    the bridge address, where the forwarder passes the port on to 127.0.0.1. Any other host
    is reached as it is (no forwarding: the hosts have no route beyond the bridge)."""
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK:
        return url, None
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    if port is None:
        raise ClusterError(f"{url}: no port, and no default one for {parts.scheme!r}")
    user, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}{at}{gateway}:{port}")), port


# ---- nginx's configuration ------------------------------------------------------------------

def render_nginx(template: str, *, listen: str, upstreams: Sequence[str], log_dir: str) -> str:
    """deploy/nginx/webchat.conf with its placeholders filled. The line holding
    ``${WEBCHAT_UPSTREAM}`` is repeated once per upstream; comments are copied as they are
    (the header names the placeholders), and any placeholder left elsewhere is an error."""
    values = {"${WEBCHAT_LISTEN}": listen, "${WEBCHAT_LOG_DIR}": log_dir}
    out: list[str] = []
    for line in template.splitlines(keepends=True):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue
        for placeholder, value in values.items():
            line = line.replace(placeholder, value)
        if "${WEBCHAT_UPSTREAM}" in line:
            out.extend(line.replace("${WEBCHAT_UPSTREAM}", upstream) for upstream in upstreams)
            continue
        left = re.findall(r"\$\{WEBCHAT_[A-Z_]+\}", line)
        if left:
            raise ClusterError(f"{TEMPLATE.name}: unknown placeholder {left[0]}")
        out.append(line)
    return "".join(out)


def nginx_main_conf(state_dir: Path, user: str) -> str:
    """The process settings of the test cluster's nginx around the deployment's snippet
    (what Debian's /etc/nginx/nginx.conf is to a real one), everything in ``state_dir``."""
    temp = state_dir / "nginx-temp"
    return f"""# Written by scripts/cluster_netns.py: the test cluster's nginx process settings.
# What a deployment uses is webchat.conf beside it (deploy/nginx/webchat.conf, rendered).
daemon off;
user {user};
worker_processes auto;
pid {state_dir}/nginx.pid;
error_log {state_dir}/nginx-error.log notice;
events {{
    worker_connections 4096;
}}
http {{
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {state_dir}/webchat.conf;
}}
"""


@dataclass(frozen=True)
class Access:
    """One line of nginx's access log (log_format ``webchat_upstream``)."""

    request: str
    status: int
    upstreams: tuple[str, ...]
    """Every process tried, in order: more than one when nginx routed around a failure."""
    upstream_statuses: tuple[str, ...]

    @property
    def answered_by(self) -> str:
        return self.upstreams[-1] if self.upstreams else ""


_ACCESS = re.compile(r'\S+ \[[^\]]*\] "(?P<request>[^"]*)" (?P<status>\d+) '
                     r"upstream=(?P<upstream>.*?) upstream_status=(?P<ustatus>.*?) rt=\S+$")


def parse_access_log(text: str) -> list[Access]:
    entries: list[Access] = []
    for line in text.splitlines():
        m = _ACCESS.match(line)
        if m is None:
            continue

        def split(value: str) -> tuple[str, ...]:
            # nginx separates tries by ", " and internal redirects by " : "
            return tuple(v for v in re.split(r", | : ", value) if v and v != "-")

        entries.append(Access(m["request"], int(m["status"]), split(m["upstream"]),
                              split(m["ustatus"])))
    return entries


# ---- processes ------------------------------------------------------------------------------

@dataclass
class Proc:
    """A process this script started, known by pid (and by its Popen while this process is
    its parent, so it is reaped). ``marker`` is a string its command line must contain for
    the pid to still be ours: ``down`` never signals a pid that was reused by another."""

    role: str
    pid: int
    marker: str
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        zombie = stat.rpartition(")")[2].split()[0] == "Z"
        return not zombie and self.marker.encode() in cmdline

    def end(self, sig: signal.Signals = signal.SIGTERM, wait_s: float = STOP_S) -> None:
        """Send ``sig`` and wait for the exit; SIGKILL after ``wait_s``."""
        for current, patience in ((sig, wait_s), (signal.SIGKILL, 5.0)):
            if not self.alive():
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, current)
            deadline = time.monotonic() + patience
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.alive():
            raise ClusterError(f"{self.role} (pid {self.pid}) did not exit after SIGKILL")


def spawn(role: str, argv: Sequence[str], log: Path, marker: str,
          namespace: str | None = None) -> Proc:
    """Start ``argv`` (inside ``namespace`` when given) in its own session, so that neither a
    Ctrl-C at the terminal nor the end of ``up`` reaches it; output goes to ``log``.
    ``ip netns exec`` execs the command, so the pid is the command's own."""
    if namespace is not None:
        argv = ["ip", "netns", "exec", namespace, *argv]
    with log.open("ab") as out:
        popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    return Proc(role, popen.pid, marker, popen)


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise ClusterError(f"{' '.join(argv)}: {(done.stderr or done.stdout).strip()}")
    return done


def get(url: str, timeout_s: float = 3.0) -> tuple[int, bytes] | None:
    """A GET's status and body, or None when nothing answered (refused, reset, timeout)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return None


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@functools.cache
def serve_options() -> frozenset[str]:
    """The options this checkout's ``webchat serve`` has: ``--store``, ``--broker``,
    ``--node-id`` and ``--trust-forwarded-for`` are passed only where they exist."""
    done = run([sys.executable, "-m", "webchat", "serve", "--help"])
    return frozenset(re.findall(r"(--[a-z][a-z0-9-]*)", done.stdout))


def start_nginx(state_dir: Path, listen: str, upstreams: Sequence[str]) -> Proc:
    """An nginx of its own in front of ``upstreams`` with the deployment's configuration
    (deploy/nginx/webchat.conf rendered into ``state_dir``, its logs there too), once it
    answers ``/healthz`` through ``listen``. Also used by tests that need only the load
    balancer, without namespaces (tests/test_cluster_chaos.py)."""
    user = "www-data" if _user_exists("www-data") else "nobody"
    temp = state_dir / "nginx-temp"
    temp.mkdir(exist_ok=True)
    shutil.chown(temp, user)
    (state_dir / "webchat.conf").write_text(render_nginx(
        TEMPLATE.read_text(), listen=listen, upstreams=upstreams, log_dir=str(state_dir)))
    conf = state_dir / "nginx.conf"
    conf.write_text(nginx_main_conf(state_dir, user))
    error_log = str(state_dir / "nginx-error.log")
    run(["nginx", "-t", "-q", "-c", str(conf), "-e", error_log])
    nginx = spawn("nginx", ["nginx", "-c", str(conf), "-e", error_log],
                  state_dir / "nginx.out", str(conf))
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if not nginx.alive():
            raise ClusterError(f"nginx exited:\n{tail(Path(error_log))}")
        answer = get(f"http://{listen}/healthz", timeout_s=1.0)
        if answer is not None and answer[0] == 200:
            return nginx
        time.sleep(0.1)
    nginx.end()
    raise ClusterError(f"nginx: no /healthz in {READY_S} s:\n{tail(Path(error_log))}")


# ---- the cluster ----------------------------------------------------------------------------

class Host:
    """One host: a namespace, its address and its ``webchat serve``."""

    def __init__(self, cluster: Cluster, index: int) -> None:
        self.cluster = cluster
        self.index = index
        topology = cluster.topology
        self.name = topology.namespace(index)
        self.address = topology.address(index)
        self.upstream = f"{self.address}:{topology.server_port}"
        self.url = f"http://{self.upstream}"
        self.dir = topology.state_dir / self.name
        self.log = self.dir / "server.log"
        self.proc: Proc | None = None

    def argv(self) -> list[str]:
        c = self.cluster
        argv = [sys.executable, "-m", "webchat", "serve", "--host", self.address,
                "--port", str(c.topology.server_port), "--data-dir", str(self.dir / "data")]
        options = serve_options()
        for flag, url in (("--store", c.store), ("--broker", c.broker)):
            if url is not None:
                if flag not in options:
                    raise ClusterError(f"this webchat serve has no {flag} option yet")
                argv += [flag, through_bridge(url, c.topology.gateway)[0]]
        if "--node-id" in options:
            argv += ["--node-id", self.name]
        if "--trust-forwarded-for" in options:
            argv.append("--trust-forwarded-for")
        if "--agent" not in c.serve_args:
            argv += ["--agent", f"agent:{c.agent_password}"]
        return [*argv, *c.serve_args]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def start(self, wait: bool = True) -> None:
        if self.alive:
            raise ClusterError(f"{self.name}: its server is already running")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(self.name, self.argv(), self.log, str(self.dir), self.name)
        self.cluster.save()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if not self.alive:
                raise ClusterError(f"{self.name}: server exited; {self.log}:\n{tail(self.log)}")
            answer = get(f"{self.url}/healthz", timeout_s=1.0)
            if answer is not None and answer[0] == 200:
                return
            time.sleep(0.1)
        raise ClusterError(f"{self.name}: no /healthz in {READY_S} s; {self.log}:\n"
                           f"{tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL: the process dies mid-request, as in a crash."""
        if self.proc is not None:
            self.proc.end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: webchat's graceful shutdown."""
        if self.proc is not None:
            self.proc.end(signal.SIGTERM)

    def restart(self) -> None:
        self.kill()
        self.start()

    def partition(self) -> None:
        """Cut the host off the network without a word (its bridge port goes down): what a
        powered-off machine looks like to nginx — connects time out, nothing is refused."""
        run(["ip", "link", "set", self.name, "down"])

    def heal(self) -> None:
        run(["ip", "link", "set", self.name, "up"])

    def health(self) -> dict[str, Any] | None:
        """This host's own ``/healthz``, asked directly (not through nginx)."""
        answer = get(f"{self.url}/healthz", timeout_s=1.0)
        if answer is None or answer[0] != 200:
            return None
        body: dict[str, Any] = json.loads(answer[1])
        return body

    def exec(self, argv: Sequence[str], timeout_s: float = 30.0
             ) -> subprocess.CompletedProcess[str]:
        """Run a command inside this host's namespace (what a process on that host sees)."""
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                              text=True, timeout=timeout_s, check=False)


class Cluster:
    """The namespaces, the forwarder, nginx and one server per host; see :func:`cluster`."""

    def __init__(self, topology: Topology, *, store: str | None = None,
                 broker: str | None = None, serve_args: Sequence[str] = (),
                 forward_ports: Sequence[int] = (), agent_password: str | None = None
                 ) -> None:
        self.topology = topology
        self.store = store
        self.broker = broker
        self.forward_ports = tuple(forward_ports)
        """Loopback ports to forward to the bridge besides those of ``store`` and ``broker``
        (e.g. 5432 and 6379 for a client run inside a host)."""
        self.serve_args = tuple(serve_args)
        self.agent_password = agent_password or secrets.token_urlsafe(9)
        """One password for the ``agent`` account on every host (with a shared store, hosts
        each making up their own would overwrite one another's)."""
        self.hosts = [Host(self, i) for i in range(1, topology.hosts + 1)]
        self.nginx: Proc | None = None
        self.forwarder: Proc | None = None
        self.owner: list[int] | None = None
        """The process (pid, start time) whose ``with cluster()`` block this cluster lives
        for: once that process is gone, the cluster is stale and the next one clears it.
        None for one brought up by the command line, which lives until ``down``."""

    # -- what tests and the lead's extensions use

    @property
    def url(self) -> str:
        """nginx: the one address clients use."""
        return self.topology.lb_url

    @property
    def state_dir(self) -> Path:
        return self.topology.state_dir

    @property
    def access_log_path(self) -> Path:
        return self.state_dir / "webchat-access.log"

    def access_log(self) -> list[Access]:
        return parse_access_log(tail(self.access_log_path, chars=10**8))

    def tagged(self, tag: str, count: int, within_s: float = 5.0) -> list[Access]:
        """The access log's entries for the requests holding ``tag``, once there are
        ``count`` of them (or ``within_s`` passed): nginx writes a request's line just after
        answering it, so a client holding its answer may look a moment before it is there."""
        deadline = time.monotonic() + within_s
        while True:
            entries = [e for e in self.access_log() if tag in e.request]
            if len(entries) >= count or time.monotonic() > deadline:
                return entries
            time.sleep(0.02)

    def host_at(self, upstream: str) -> Host:
        return next(h for h in self.hosts if h.upstream == upstream)

    def forwards(self) -> list[int]:
        """The loopback ports the hosts reach through the forwarder: PostgreSQL's and
        Redis's from the URLs, and ``forward_ports``."""
        ports = {through_bridge(url, self.topology.gateway)[1]
                 for url in (self.store, self.broker) if url is not None}
        return sorted({p for p in ports if p is not None} | set(self.forward_ports))

    # -- up and down

    def up(self) -> None:
        """Bring everything up; on any failure, take down what was made and re-raise."""
        check_can_run()
        Cluster.load_or_bare(self.topology).down()  # whatever a run that died left behind
        try:
            self._up()
        except BaseException:
            self.down()
            raise

    def _up(self) -> None:
        t = self.topology
        check_subnet_free(t)
        shutil.rmtree(t.state_dir, ignore_errors=True)
        t.state_dir.mkdir(parents=True)
        t.state_dir.chmod(0o755)  # nginx's workers (www-data) write temp files below it
        make_network(t)
        self.save()
        ports = self.forwards()
        if ports:
            pairs = [f"{t.gateway}:{p}=127.0.0.1:{p}" for p in ports]
            self.forwarder = spawn("forwarder", [sys.executable, __file__, "forward",
                                                 "--tag", str(t.state_dir), *pairs],
                                   t.state_dir / "forwarder.log", str(t.state_dir))
            self.save()
            wait_listening(t.gateway, ports, self.forwarder, t.state_dir / "forwarder.log")
        for host in self.hosts:  # all start at once, then each is waited for
            host.start(wait=False)
        for host in self.hosts:
            host.wait_ready()
        self._start_nginx()

    def _start_nginx(self) -> None:
        t = self.topology
        self.nginx = start_nginx(t.state_dir, f"127.0.0.1:{t.lb_port}",
                                 [h.upstream for h in self.hosts])
        self.save()

    def down(self) -> None:
        """End every process this cluster started, then delete the namespaces and bridge.
        Never raises for what is already gone; the state folder (logs) is kept."""
        procs = [h.proc for h in self.hosts] + [self.nginx, self.forwarder]
        for proc in procs:
            if proc is not None:
                proc.end(signal.SIGTERM)
        delete_network(self.topology)
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "state.json").unlink()

    # -- the state file, for up/status/down in separate runs

    def save(self) -> None:
        procs = {p.role: {"pid": p.pid, "marker": p.marker}
                 for p in [h.proc for h in self.hosts] + [self.nginx, self.forwarder]
                 if p is not None}
        state = {"topology": asdict(self.topology), "store": self.store,
                 "broker": self.broker, "serve_args": list(self.serve_args),
                 "forward_ports": list(self.forward_ports),
                 "agent_password": self.agent_password, "owner": self.owner,
                 "procs": procs}
        path = self.state_dir / "state.json"
        if self.state_dir.is_dir():
            path.write_text(json.dumps(state, indent=1))

    @classmethod
    def load_or_bare(cls, topology: Topology) -> Cluster:
        """The cluster recorded in ``topology``'s state folder (its processes known by pid),
        or one with nothing started, whose ``down`` still deletes links of these names."""
        path = topology.state_dir / "state.json"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(topology)
        recorded = Topology(**state["topology"])
        c = cls(recorded, store=state["store"], broker=state["broker"],
                serve_args=state["serve_args"], forward_ports=state["forward_ports"],
                agent_password=state["agent_password"])
        procs = {role: Proc(role, p["pid"], p["marker"]) for role, p in state["procs"].items()}
        for host in c.hosts:
            host.proc = procs.get(host.name)
        c.nginx = procs.get("nginx")
        c.forwarder = procs.get("forwarder")
        c.owner = state.get("owner")
        return c

    @classmethod
    def down_stale(cls, state_root: str) -> None:
        """Take down every cluster under ``state_root`` whose owning process is gone (a test
        run killed before its ``finally``); clusters of the command line are left alone."""
        for state in Path(state_root).glob("webchat-cluster-*/state.json"):
            try:
                owner = json.loads(state.read_text()).get("owner")
                name = state.parent.name.removeprefix("webchat-cluster-")
                topology = Topology(name, state_root=state_root)
            except (OSError, ValueError, ClusterError):
                continue
            if owner is not None and process_identity(owner[0]) != owner:
                cls.load_or_bare(topology).down()

    def status(self) -> list[str]:
        """What runs, what each host says directly, and a few requests through nginx with
        the host that answered each (from the access log)."""
        t = self.topology
        namespaces = set(run(["ip", "netns", "list"]).stdout.split())

        def state(proc: Proc | None) -> str:
            return "-" if proc is None else f"pid {proc.pid} {'up' if proc.alive() else 'DOWN'}"

        lines = [f"cluster {t.name}: nginx {self.url} ({state(self.nginx)}), "
                 f"hosts on {t.subnet}.0/24 bridge {t.bridge} ({t.gateway})"]
        for name, url in (("store", self.store), ("broker", self.broker)):
            if url is None:
                lines.append(f"{name:<7} {'SQLite on each host' if name == 'store' else 'memory'}"
                             " (not shared: no --" + name + ")")
            else:
                lines.append(f"{name:<7} {through_bridge(url, t.gateway)[0]}  (given: {url})")
        if self.forwarder is not None:
            lines.append(f"forward {', '.join(map(str, self.forwards()))} on {t.gateway} "
                         f"-> 127.0.0.1 ({state(self.forwarder)})")
        for host in self.hosts:
            link = run(["ip", "-br", "link", "show", host.name], check=False).stdout.split()
            ns = ("NO NETNS" if host.name not in namespaces
                  else "CUT OFF" if "DOWN" in link[1:2] else "netns")
            health = host.health()
            said = json.dumps(health, separators=(",", ":")) if health else "no answer"
            lines.append(f"{host.name:<7} {ns:<8} {host.upstream:<18} {state(host.proc):<15} "
                         f"/healthz {said}")
        if self.nginx is not None and self.nginx.alive():
            lines.append(self._probe_balance())
        return lines

    def _probe_balance(self, requests: int = 6) -> str:
        """``requests`` GETs through nginx, each waited for as long as nginx may take to
        route around a host (proxy_next_upstream_timeout, 30 s), and who answered them."""
        tag = secrets.token_hex(4)
        start = time.monotonic()
        statuses = [get(f"{self.url}/healthz?probe={tag}", timeout_s=35.0)
                    for _ in range(requests)]
        seconds = time.monotonic() - start
        entries = self.tagged(f"probe={tag}", requests)
        counts = {h.name: sum(1 for e in entries if e.answered_by == h.upstream)
                  for h in self.hosts}
        retried = sum(1 for e in entries if len(e.upstreams) > 1)
        ok = sum(1 for s in statuses if s is not None and s[0] == 200)
        return (f"through nginx: {ok}/{requests} GET /healthz answered 200 in {seconds:.1f} s, "
                f"by {', '.join(f'{name} {n}' for name, n in counts.items())}"
                f" ({retried} after a failed try)")


@contextlib.contextmanager
def cluster(topology: Topology | None = None, *, store: str | None = None,
            broker: str | None = None, serve_args: Sequence[str] = (),
            forward_ports: Sequence[int] = ()) -> Iterator[Cluster]:
    """The cluster up for the ``with`` block, down after it however the block ends (also on
    SIGTERM, turned into an exception while the block runs in the main thread)."""
    c = Cluster(topology or Topology(), store=store, broker=broker, serve_args=serve_args,
                forward_ports=forward_ports)
    c.owner = process_identity(os.getpid())
    with _sigterm_raises():
        Cluster.down_stale(c.topology.state_root)
        c.up()
        try:
            yield c
        finally:
            c.down()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, _: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- the network ----------------------------------------------------------------------------

def check_can_run() -> None:
    """Root, iproute2 with working namespaces, and nginx: else a ClusterError saying which."""
    if os.geteuid() != 0:
        raise ClusterError("network namespaces need root")
    for tool in ("ip", "nginx"):
        if shutil.which(tool) is None:
            raise ClusterError(f"{tool} not found (scripts/setup test installs it)")
    probe = f"wcprobe{os.getpid()}"
    made = run(["ip", "netns", "add", probe], check=False)
    if made.returncode != 0:
        raise ClusterError(f"ip netns add does not work here: {made.stderr.strip()}")
    run(["ip", "netns", "del", probe], check=False)


def subnet_in_use(subnet: str) -> str | None:
    """The address or route line of the root namespace that falls in ``subnet``'s /24."""
    inside = re.compile(r"(?<![\d.])" + re.escape(f"{subnet}.") + r"\d")
    for what in (["ip", "-o", "-4", "addr", "show"], ["ip", "-4", "route", "show"]):
        for line in run(what).stdout.splitlines():
            if inside.search(line):
                return line.strip()
    return None


def check_subnet_free(t: Topology) -> None:
    """Refuse a subnet this machine already has an address or route in: the hosts' addresses
    must exist only inside the namespaces made here."""
    line = subnet_in_use(t.subnet)
    if line is not None:
        raise ClusterError(f"{t.subnet}.0/24 is already in use here ({line}); "
                           "choose another --subnet")


def free_subnet(first: str = "10.231.8", seed: int = 0) -> str:
    """A /24 next to ``first`` (same first two octets, third from ``first``'s plus ``seed``
    modulo the range) that this machine has no address or route in: for test runs that may
    overlap (each picks by its pid). Two runs picking in the same instant could still meet."""
    a, b, c = (int(x) for x in first.split("."))
    span = 255 - c
    for step in range(span):
        subnet = f"{a}.{b}.{c + (seed + step) % span}"
        if subnet_in_use(subnet) is None:
            return subnet
    raise ClusterError(f"no free /24 in {a}.{b}.{c}-254")


def make_network(t: Topology) -> None:
    """The bridge with the gateway address in the root namespace; per host a namespace with
    loopback up and a veth pair, one end on the bridge, the other (eth0) holding the host's
    address. No default route in the namespaces: a host reaches the bridge's /24 only."""
    run(["ip", "link", "add", t.bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{t.gateway}/24", "dev", t.bridge])
    run(["ip", "link", "set", t.bridge, "up"])
    for i in range(1, t.hosts + 1):
        ns = t.namespace(i)
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "link", "set", ns, "master", t.bridge, "up"])
        run(["ip", "-n", ns, "addr", "add", f"{t.address(i)}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])


def delete_network(t: Topology) -> None:
    """Delete the namespaces (and with them the veth pairs) and the bridge, by name; what is
    not there is skipped. A process still inside a namespace (one started in it by hand or
    by a test) is ended first, by its pid: it would keep the namespace alive."""
    existing = set(run(["ip", "netns", "list"]).stdout.split())
    for i in range(1, t.hosts + 1):
        ns = t.namespace(i)
        if ns not in existing:
            continue
        for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "del", ns], check=False)
        run(["ip", "link", "del", ns], check=False)
    run(["ip", "link", "del", t.bridge], check=False)


def wait_listening(host: str, ports: Sequence[int], proc: Proc, log: Path) -> None:
    import socket

    deadline = time.monotonic() + READY_S
    for port in ports:
        while True:
            if not proc.alive():
                raise ClusterError(f"{proc.role} exited:\n{tail(log)}")
            with socket.socket() as s:
                s.settimeout(1.0)
                if s.connect_ex((host, port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise ClusterError(f"{proc.role}: nothing listens on {host}:{port}")
            time.sleep(0.05)


def process_identity(pid: int) -> list[int] | None:
    """(pid, start time in clock ticks): a pid reused by a later process differs in the
    second; None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return [pid, int(stat.rpartition(")")[2].split()[19])]


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# ---- the TCP forwarder ----------------------------------------------------------------------

async def forward(pairs: Sequence[tuple[str, int, str, int]]) -> None:
    """Listen on each (host, port) and pass every connection on to its target, both ways,
    until SIGTERM. Half-closes are passed on (a client's EOF reaches the server and vice
    versa); an error on one side closes both."""

    async def relay(target: tuple[str, int], reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
        for w in (writer, up_writer):
            w.close()

    servers = [await asyncio.start_server(functools.partial(relay, (th, tp)), lh, lp)
               for lh, lp, th, tp in pairs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("forwarding " + ", ".join(f"{lh}:{lp} -> {th}:{tp}" for lh, lp, th, tp in pairs),
          flush=True)
    await stop.wait()
    for server in servers:
        server.close()


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(1 << 16):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:
        sink.close()  # the other direction's read then ends too


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


# ---- the command line -----------------------------------------------------------------------

HOST_ACTIONS = ("kill", "stop", "start", "restart", "partition", "heal")
"""What ``host N ACTION`` may call: the :class:`Host` methods of the same names."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="make the namespaces, start forwarder, servers, nginx")
    status = commands.add_parser("status", help="what runs, and who answers through nginx")
    down = commands.add_parser("down", help="end what up started, delete the namespaces")
    host = commands.add_parser("host", help="act on one host: kill (SIGKILL), stop "
                                            "(SIGTERM), start, restart, partition, heal")
    host.add_argument("index", type=int, help="1, 2, 3 ...")
    host.add_argument("action", choices=HOST_ACTIONS)
    defaults = Topology()
    for sub in (up, status, down, host):
        sub.add_argument("--name", default=defaults.name,
                         help="prefix of namespaces, links and state folder (default %(default)s)")
        sub.add_argument("--state-root", default=defaults.state_root,
                         help="where the state folder goes (default %(default)s)")
    up.add_argument("--subnet", default=defaults.subnet,
                    help="the hosts' private /24, three octets (default %(default)s)")
    up.add_argument("--hosts", type=int, default=defaults.hosts)
    up.add_argument("--port", type=int, default=defaults.lb_port,
                    help="nginx's port on 127.0.0.1 (default %(default)s)")
    up.add_argument("--server-port", type=int, default=defaults.server_port)
    up.add_argument("--store", help="e.g. postgresql://postgres@127.0.0.1:5432/test "
                                    "(default: SQLite on each host, not shared)")
    up.add_argument("--broker", help="e.g. redis://127.0.0.1:6379/0 (default: in-process)")
    up.add_argument("--forward", type=int, action="append", default=[], metavar="PORT",
                    help="also forward this loopback port to the bridge (repeatable)")
    up.add_argument("serve_args", nargs="*", metavar="-- SERVE_OPTIONS",
                    help="more options for every webchat serve")
    fwd = commands.add_parser("forward", help="(internal) the TCP forwarder")
    fwd.add_argument("--tag", help="marks the process as the cluster's")
    fwd.add_argument("pairs", nargs="+", metavar="LISTEN_HOST:PORT=TARGET_HOST:PORT")
    args = parser.parse_args(argv)

    if args.command == "forward":
        pairs = [(*_endpoint(a), *_endpoint(b))
                 for a, b in (p.split("=", 1) for p in args.pairs)]
        asyncio.run(forward(pairs))
        return 0
    try:
        if args.command == "up":
            topology = Topology(args.name, args.subnet, args.hosts, args.server_port,
                                args.port, args.state_root)
            c = Cluster(topology, store=args.store, broker=args.broker,
                        serve_args=args.serve_args, forward_ports=args.forward)
            with _sigterm_raises():
                c.up()
            print("\n".join(c.status()))
            print(f"agent login: agent / {c.agent_password}   state and logs: {c.state_dir}")
            return 0
        c = Cluster.load_or_bare(Topology(args.name, state_root=args.state_root))
        if args.command in ("status", "host") and not (c.state_dir / "state.json").exists():
            print(f"cluster {args.name}: not up")
            return 1
        if args.command == "host":
            if not 1 <= args.index <= len(c.hosts):
                raise ClusterError(f"host {args.index}: the cluster has 1 to {len(c.hosts)}")
            getattr(c.hosts[args.index - 1], args.action)()
            print(f"{c.hosts[args.index - 1].name}: {args.action} done")
        elif args.command == "status":
            print("\n".join(c.status()))
        else:
            c.down()
            print(f"cluster {args.name}: down (logs kept in {c.state_dir})")
        return 0
    except ClusterError as exc:
        print(f"cluster_netns: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
