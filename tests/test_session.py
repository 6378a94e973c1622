"""The sans-I/O client session: what a reply means, with no sockets involved.

The example cases live in tests/fixtures/session/*.json, shared with the browser's session.js
(tests/node/session.test.mjs runs the same files); the properties stay here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from webchat.protocol.gms.forms import FormError, flatten, parse_form, unflatten_map
from webchat.protocol.gms.models import ChatResponse, Message, Participant
from webchat.protocol.gms.session import (
    MAX_EARLY_PUSHES,
    ChatSession,
    FileUploaded,
    Gap,
    HttpRequest,
    MessagesReceived,
    ParticipantJoined,
    ParticipantLeft,
    ServerError,
    SessionError,
    SessionEvent,
    Started,
    TypingChanged,
)

CLIENT = Participant("Ada", 1, "Client")
AGENT = Participant("Grace", 3, "Agent")


def msg(index: int, type_: str = "Message", sender: Participant = AGENT, text: str = "x"
        ) -> Message:
    return Message(from_=sender, index=index, type=type_, utcTime=1000 + index, text=text)


def started() -> ChatSession:
    s = ChatSession()
    req = s.request_chat({"nickname": "Ada"})
    events = s.receive(req, ChatResponse(
        statusCode=0, chatId="C1", userId="U", secureKey="K", alias="1", nextPosition=2,
        messages=[msg(1, "ParticipantJoined", CLIENT)]))
    assert isinstance(events[0], Started)
    return s


FIXTURES = Path(__file__).parent / "fixtures" / "session"
CASES = sorted(FIXTURES.glob("*.json"))


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def event_json(event: SessionEvent) -> dict[str, Any]:
    """An event as the fixtures write it (tests/node/session.test.mjs writes the same)."""
    out: dict[str, Any] = {"kind": event.kind}
    if isinstance(event, MessagesReceived):
        out.update(indexes=[m.index for m in event.messages], restoring=event.restoring)
    elif isinstance(event, ParticipantJoined | ParticipantLeft):
        out.update(participantId=event.participant.participant_id,
                   name=event.participant.name, self=event.is_self)
    elif isinstance(event, TypingChanged):
        out.update(participantId=event.participant.participant_id, started=event.started)
    elif isinstance(event, FileUploaded):
        out.update(index=event.message.index)
    elif isinstance(event, ServerError):
        out.update(operation=event.operation, statusCode=event.response.statusCode)
    return out


def state_json(s: ChatSession, keys: Iterable[str]) -> dict[str, Any]:
    facts = {"state": lambda: s.state.value, "nextPosition": lambda: s.next_position,
             "transcript": lambda: [m.index for m in s.transcript],
             "agents": s.agents, "connectedAgents": s.connected_agents,
             "sessionData": s.session_data}
    return {key: facts[key]() for key in keys}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_shared_session_case(path: Path) -> None:
    """One case of tests/fixtures/session: the same file the browser's session.js must pass
    (tests/node/session.test.mjs)."""
    case = json.loads(path.read_text())
    s = ChatSession()
    last: HttpRequest | None = None
    for number, step in enumerate(case["steps"], 1):
        where = f"{path.name} step {number}"
        if "resume" in step:
            r = step["resume"]
            s = ChatSession.resume(r["chatId"], r["userId"], r["secureKey"], r["alias"],
                                   r["nextPosition"], r["restoringBelow"])
        elif "call" in step:
            method = getattr(s, snake(step["call"]))
            if "raises" in step:
                with pytest.raises(SessionError, match=re.escape(step["raises"])):
                    method(*step.get("args", []))
                continue
            made = method(*step.get("args", []))
            if "returns" in step:
                assert made == step["returns"], where
            if isinstance(made, HttpRequest):
                last = made
                if "request" in step:
                    assert {"operation": made.operation, "path": made.path,
                            "fields": made.fields} == step["request"], where
        elif "reply" in step or "push" in step:
            response = msgspec.convert(step.get("reply", step.get("push")), ChatResponse)
            if "push" in step:
                events = s.push(response)
            else:
                assert last is not None, where
                events = s.receive(last, response)
            assert [event_json(e) for e in events] == step["events"], where
        elif "expect" in step:
            assert state_json(s, step["expect"]) == step["expect"], where
        else:
            raise AssertionError(f"{where}: unknown step {sorted(step)}")


def test_every_step_kind_and_call_is_one_the_browser_runner_knows() -> None:
    """The fixtures only use what both runners implement (a new call must be added to both)."""
    calls = {step["call"] for path in CASES for step in json.loads(path.read_text())["steps"]
             if "call" in step}
    node = (Path(__file__).parent / "node" / "session.test.mjs").read_text()
    assert len(CASES) >= 10
    for call in calls:
        assert hasattr(ChatSession, snake(call)), call
    assert "s[step.call]" in node  # the browser runner calls each by its own name


@given(st.integers(min_value=1, max_value=40), st.lists(
    st.tuples(st.integers(min_value=1, max_value=40), st.integers(min_value=0, max_value=40)),
    max_size=30))
def test_any_sequence_of_overlapping_windows_delivers_each_index_once_in_order(total, windows):
    """However replies overlap or repeat (a server answers from at most where we asked, but
    possibly from earlier, and with any amount), the user sees 1..n exactly once, in order."""
    transcript = [msg(i) for i in range(1, total + 1)]
    s = started()
    seen: list[int] = [1]
    for start, length in [*windows, (1, total)]:
        start = min(start, s.next_position)
        part = transcript[start - 1:start - 1 + length]
        events = s.receive(s.refresh(), ChatResponse(statusCode=0, chatId="C1",
                                                     messages=part))
        for e in events:
            if isinstance(e, MessagesReceived):
                seen.extend(m.index for m in e.messages)
    assert seen == list(range(1, total + 1))


def test_forms_flatten_and_parse_strictly():
    assert flatten({"userData": {"a": 1, "b": True}, "n": "x", "skip": None}) == {
        "userData[a]": "1", "userData[b]": "true", "n": "x"}
    assert unflatten_map({"userData[a]": "1", "x": "2"}, "userData") == {"a": "1"}
    with pytest.raises(FormError):
        parse_form(b"a=1&a=2")
    with pytest.raises(FormError):
        parse_form(b"a=%ff")
    assert parse_form(b"") == {}
    assert parse_form(b"a=&b=%20") == {"a": "", "b": " "}


def test_pushes_past_the_most_held_while_starting_become_one_gap() -> None:
    """At most MAX_EARLY_PUSHES wait for the start's reply: the rest are not kept, and the
    session asks for the transcript (a gap) instead of skipping them."""
    s = ChatSession()
    req = s.request_chat({"nickname": "Ada"})
    for index in range(2, 2 + MAX_EARLY_PUSHES + 6):
        assert s.push(ChatResponse(statusCode=0, chatId="C1", messages=[msg(index)])) == []
    events = s.receive(req, ChatResponse(
        statusCode=0, chatId="C1", userId="U", secureKey="K", alias="1", nextPosition=2,
        messages=[msg(1, "ParticipantJoined", CLIENT)]))
    shown = [m.index for e in events if isinstance(e, MessagesReceived) for m in e.messages]
    assert shown == list(range(1, MAX_EARLY_PUSHES + 1))  # 63 held ones after the reply's
    assert isinstance(events[-1], Gap)
    assert s.next_position == MAX_EARLY_PUSHES + 1
