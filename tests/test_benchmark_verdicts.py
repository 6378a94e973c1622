"""benchmarks/cluster_chat.py's verdicts: what the README's figures are read through. Runs
interleaved to cancel this machine's drift (``--deployments pg,pg2,pg,pg2``) are judged pair by
pair, each 2-process run against the 1-process run beside it, not the last of each against the
last of the other."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from benchmarks.cluster_chat import (
    Agent,
    Chat,
    Customer,
    collector_pauses,
    pair,
    place,
    scaling_pairs,
    verdicts,
)


def run(processes: int, *, p99: float, cores: float, delivered: float = 300.0,
        chats: int = 1500) -> dict[str, Any]:
    return {"deployment": f"{processes} process(es)", "processes": processes,
            "chats": chats * processes, "offered_msgs_per_s": delivered,
            "sent_msgs_per_s": delivered, "delivered_per_s": delivered, "lost": 0,
            "p99_ms": p99, "server_cores": cores, "server_idle_cores": 0.01,
            "server_marginal_ms_per_1k_msgs": 800.0, "server_rss_mb": 128.0,
            "machine_busy_cores": 0.5}


def test_each_two_process_run_is_paired_with_the_one_process_run_beside_it() -> None:
    a1, b1, a2, b2 = (run(1, p99=6.0, cores=0.25), run(2, p99=6.3, cores=0.5, delivered=600),
                      run(1, p99=5.0, cores=0.24), run(2, p99=9.0, cores=0.5, delivered=600))
    runs = [("pg", a1), ("pg2", b1), ("pg", a2), ("pg2", b2)]
    assert scaling_pairs(runs) == [(a1, b1), (a2, b2)]
    assert scaling_pairs([("pg2", b1), ("pg", a1)]) == [(a1, b1)]
    assert scaling_pairs([("sqlite", a1), ("pg2", b1)]) == []

    scaling = [line for line in verdicts(runs) if line.startswith("scaling")]
    assert len(scaling) == 2
    assert "2 processes with a core each deliver 2.00x" in scaling[0]
    assert scaling[0].endswith("p99 6.3 ms vs 6.0 ms: MET")  # within 10 %, 2.0x per core
    assert scaling[1].endswith("p99 9.0 ms vs 5.0 ms: not met")


def test_scaling_below_the_target_ratio_is_not_met_whatever_the_latency() -> None:
    runs = [("pg", run(1, p99=6.0, cores=0.25)),
            ("pg2", run(2, p99=6.0, cores=0.7, delivered=600))]  # 1.43x per core
    (line,) = [line for line in verdicts(runs) if line.startswith("scaling")]
    assert "deliver 1.43x" in line and line.endswith("not met")


def test_more_processes_are_read_against_their_ideal_not_the_two_process_target() -> None:
    one, four = run(1, p99=5.0, cores=0.25), run(4, p99=7.0, cores=1.1, delivered=1200)
    assert scaling_pairs([("pg", one), ("pg4", four), ("sqlite", one)]) == [(one, four)]
    (line,) = [line for line in verdicts([("pg", one), ("pg4", four)])
               if line.startswith("scaling")]
    assert "4 processes with a core each deliver 3.64x one process on one core (ideal 4)" in line
    assert "MET" not in line


def test_a_process_beside_other_work_is_a_control_not_a_target_run() -> None:
    """pgburn (1 process beside --burn cores of other work) is read beside the 2-process
    run next to it, for what of that p99 is the machine's; it neither counts for the
    one-process target nor stands in for the 1-process run of a scaling pair."""
    burned = {**run(1, p99=9.0, cores=0.25), "burned_cores": 0.7, "machine_busy_cores": 1.4}
    two = {**run(2, p99=9.5, cores=0.5, delivered=600), "machine_busy_cores": 1.45}
    lines = verdicts([("pg2", two), ("pgburn", burned)])
    assert lines == ["control: 1 process beside 0.70 cores of other work (machine busy 1.40 "
                     "cores): p99 9.0 ms; the 2-process run beside it (machine busy 1.45 "
                     "cores): p99 9.5 ms"]
    assert scaling_pairs([("pgburn", burned), ("pg2", two)]) == []


def test_a_scaling_pair_tells_deliveries_within_one_process_from_those_across_two() -> None:
    """The 2-process p99 is read apart: deliveries between connections the kernel put on one
    process, against those crossing Redis to the other, in the same run."""
    one = {**run(1, p99=7.7, cores=0.29), "p50_ms": 3.55}
    two = {**run(2, p99=7.8, cores=0.48, delivered=600), "within_process_share": 0.5,
           "within_process_p50_p99_ms": "2.83 / 7.20", "across_processes_p50_p99_ms":
           "3.36 / 8.20"}
    lines = verdicts([("pg", one), ("pg2", two)])
    assert lines[-1] == (
        "  where the 2-process run's time went: deliveries within one process (the "
        "customer's and the agent's connections on the same process, 50% of them) p50 / p99 "
        "2.83 / 7.20 ms, across processes 3.36 / 8.20 ms; the 1-process run 3.55 / 7.70 ms")


def test_two_separate_deployments_are_a_control_for_the_cluster_beside_them() -> None:
    """pgapart (two 1-process deployments side by side, neither hearing the other) is the
    2-process cluster's machine without the cluster: read beside the pg2 run next to it,
    never as a target run nor as the 1-process side of a scaling pair."""
    apart = {**run(1, p99=20.0, cores=1.0, delivered=2000, chats=5000), "p50_ms": 5.0,
             "machine_busy_cores": 1.55}
    two = {**run(2, p99=22.0, cores=1.05, delivered=2000, chats=5000), "p50_ms": 5.5,
           "machine_busy_cores": 1.6}
    assert verdicts([("pgapart", apart), ("pg2", two)]) == [
        "control: 2 separate 1-process deployments side by side, neither hearing the other "
        "(machine busy 1.55 cores): p50 / p99 5.00 / 20.00 ms, 2,000 messages/s per server "
        "core; the 2-process cluster beside them (machine busy 1.60 cores): 5.50 / 22.00 ms, "
        "1,905 per core (0.95x)"]
    one = run(1, p99=8.0, cores=0.5, delivered=1000, chats=5000)
    assert scaling_pairs([("pg", one), ("pgapart", apart), ("pg2", two)]) == [(one, two)]


def socket_at(port: int | None) -> Any:
    """A client WebSocket as :func:`place` reads it: its local port (None: closed)."""
    return SimpleNamespace(get_extra_info=lambda name: None if port is None else
                           ("127.0.0.1", port))


def chat(chat_id: str, customer_port: int | None, agent_port: int | None) -> Chat:
    customer = cast(Customer, SimpleNamespace(chat_id=chat_id, ws=socket_at(customer_port)))
    return Chat(customer, cast(Agent, SimpleNamespace(ws=socket_at(agent_port))))


def test_a_chat_is_placed_by_the_processes_holding_its_two_sockets() -> None:
    serving = {5001: 11, 5002: 12, 5003: 11}  # client port -> server process
    crossing, unplaced = place(serving, [chat("same", 5001, 5003), chat("split", 5002, 5003),
                                         chat("closed", None, 5003),
                                         chat("elsewhere", 6000, 5003)])
    assert crossing == {"split"}
    assert unplaced == {"closed", "elsewhere"}  # in neither split: not "within one process"


def test_each_customer_is_paired_with_the_agent_that_accepted_its_chat() -> None:
    """The router gives each new chat to the least busy agent: chats alternate between
    agents, they do not fill the first one up."""
    first, second = (cast(Agent, SimpleNamespace(accepted=ids)) for ids in ({"a", "c"}, {"b"}))
    customers = [cast(Customer, SimpleNamespace(chat_id=i)) for i in "abc"]
    assert [c.agent for c in pair(customers, [first, second])] == [first, second, first]


def test_the_collector_pauses_read_are_those_logged_since_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("x WARNING webchat.server.gc_policy: garbage collection paused this "
                   "process for 400 ms (generation 2, 3 objects freed)\n")
    start = log.stat().st_size
    with log.open("a") as out:
        out.write("x INFO other: hello\nx WARNING webchat.server.gc_policy: garbage collection"
                  " paused this process for 75 ms (generation 1, 0 objects freed)\n")
    assert collector_pauses(cast(Any, SimpleNamespace(log=log)), start) == [75.0]
