"""The sans-I/O client session: what a reply means, with no sockets involved."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webchat.protocol.gms.forms import FormError, flatten, parse_form, unflatten_map
from webchat.protocol.gms.models import ChatResponse, ErrorEntry, Message, Participant
from webchat.protocol.gms.session import (
    ChatSession,
    Ended,
    HttpRequest,
    MessagesReceived,
    ParticipantJoined,
    ParticipantLeft,
    ServerError,
    SessionError,
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


def test_requests_carry_identity_and_quote_the_chat_id():
    s = started()
    s.chat_id = "a/b"
    req = s.send_message("hello", "text")
    assert req.path == "/a%2Fb/send"
    assert req.fields == {"userId": "U", "secureKey": "K", "alias": "1", "message": "hello",
                          "messageType": "text", "transcriptPosition": "2"}


def test_no_requests_without_a_session():
    s = ChatSession()
    with pytest.raises(SessionError, match="There is no active chat session"):
        s.refresh()
    s.request_chat({})
    with pytest.raises(SessionError, match="There is already an active chat session"):
        s.request_chat({})


def test_failed_request_chat_allows_a_new_start():
    s = ChatSession()
    req = s.request_chat({})
    events = s.receive(req, ChatResponse(statusCode=2, errors=[ErrorEntry(161, "name")]))
    assert isinstance(events[0], ServerError)
    assert not s.active
    s.request_chat({"nickname": "Ada"})


def test_replayed_and_overlapping_replies_deliver_each_event_once():
    s = started()
    req = s.refresh()
    reply = ChatResponse(statusCode=0, chatId="C1", nextPosition=4,
                         messages=[msg(2, "ParticipantJoined"), msg(3)])
    first = s.receive(req, reply)
    assert isinstance(first[0], MessagesReceived)
    assert [m.index for m in first[0].messages] == [2, 3]
    assert isinstance(first[1], ParticipantJoined)
    assert first[1].participant.name == "Grace"
    assert s.receive(req, reply) == []  # the same reply again: nothing new
    assert [m.index for m in s.transcript] == [1, 2, 3]
    assert s.next_position == 4


def test_next_position_is_trusted_only_for_transcript_requests():
    s = started()
    typing = s.start_typing()
    s.receive(typing, ChatResponse(statusCode=0, chatId="C1", nextPosition=9))
    assert s.next_position == 2  # events 2..8 were not delivered: still owed
    refresh = s.refresh()
    s.receive(refresh, ChatResponse(statusCode=0, chatId="C1", nextPosition=9))
    assert s.next_position == 9


def test_typing_and_end():
    s = started()
    events = s.receive(s.refresh(), ChatResponse(
        statusCode=0, chatId="C1", chatEnded=True,
        messages=[msg(2, "TypingStarted"), msg(3, "TypingStarted", CLIENT),
                  msg(4, "ParticipantLeft")]))
    typing = [e for e in events if isinstance(e, TypingChanged)]
    assert len(typing) == 1  # the customer's own typing echo is not reported
    assert typing[0].participant.name == "Grace"
    assert isinstance(events[-1], Ended)
    assert not s.active
    # An event that arrives after the end flag (another push) is still shown, once, and the
    # end is not reported twice.
    late = HttpRequest("push", "", {})
    reply = ChatResponse(statusCode=0, chatId="C1", chatEnded=True,
                         messages=[msg(5, "ParticipantLeft", CLIENT)])
    events = s.receive(late, reply)
    assert [type(e) for e in events] == [MessagesReceived, ParticipantLeft]
    assert s.receive(late, reply) == []


def test_messages_without_index_are_deduplicated_by_content():
    s = started()
    unindexed = Message(from_=AGENT, type="Message", utcTime=5, text="old server")
    req = s.refresh()
    reply = ChatResponse(statusCode=0, chatId="C1", messages=[unindexed])
    assert len(s.receive(req, reply)) == 1
    assert s.receive(req, reply) == []


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
