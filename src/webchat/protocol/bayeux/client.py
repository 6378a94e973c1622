"""The client side of Bayeux as a pure state machine (protocols.md §3.3, §3.4, §3.10).

It builds the messages to send and interprets what arrives; the transport decides when to send
them. After every reply :attr:`BayeuxClient.next_step` says what to do next — connect again
after ``delay_ms``, handshake again after a backoff, or stop — following the server's advice the
way the CometD JavaScript client does (backoff grows by 1 s per failure up to 60 s).
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any

from msgspec import UNSET

from webchat.protocol.bayeux.messages import BayeuxMessage


class Step(enum.Enum):
    HANDSHAKE = "handshake"
    CONNECT = "connect"
    STOP = "stop"


@dataclass(frozen=True)
class NextStep:
    step: Step
    delay_ms: int = 0


@dataclass(frozen=True)
class Delivery:
    channel: str
    data: Any


@dataclass(frozen=True)
class Reply:
    """The server's answer to one of our messages (publish, subscribe …)."""

    id: str
    channel: str
    successful: bool
    error: str | None


@dataclass(frozen=True)
class Handshook:
    client_id: str
    rehandshake: bool


@dataclass(frozen=True)
class Failed:
    channel: str
    error: str


ClientEvent = Delivery | Reply | Handshook | Failed


@dataclass
class BayeuxClient:
    connection_types: tuple[str, ...] = ("websocket", "long-polling")
    ack: bool = True
    backoff_increment_ms: int = 1000
    max_backoff_ms: int = 60_000
    client_id: str | None = None
    connection_type: str = "long-polling"
    interval_ms: int = 0
    timeout_ms: int = 30_000
    backoff_ms: int = 0
    batch: int = 0
    server_acks: bool = False
    handshakes: int = 0
    next_step: NextStep = field(default_factory=lambda: NextStep(Step.HANDSHAKE))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _connected_once: bool = False

    def _id(self) -> str:
        return str(next(self._ids))

    # ---- building messages -----------------------------------------------------------------

    def handshake(self) -> BayeuxMessage:
        self.client_id = None
        self._connected_once = False
        self.batch = 0
        msg = BayeuxMessage(channel="/meta/handshake", id=self._id(), version="1.0",
                            minimumVersion="1.0",
                            supportedConnectionTypes=list(self.connection_types),
                            advice={"timeout": 60_000, "interval": 0})
        if self.ack:
            msg.ext = {"ack": True}
        return msg

    def connect(self) -> BayeuxMessage:
        msg = BayeuxMessage(channel="/meta/connect", id=self._id(), clientId=self.client_id or "",
                            connectionType=self.connection_type)
        if not self._connected_once:
            msg.advice = {"timeout": 0}
        if self.server_acks:
            msg.ext = {"ack": self.batch}
        return msg

    def subscribe(self, channel: str) -> BayeuxMessage:
        return BayeuxMessage(channel="/meta/subscribe", id=self._id(),
                             clientId=self.client_id or "", subscription=channel)

    def publish(self, channel: str, data: Any) -> BayeuxMessage:
        return BayeuxMessage(channel=channel, id=self._id(), clientId=self.client_id or "",
                             data=data)

    def disconnect(self) -> BayeuxMessage:
        self.next_step = NextStep(Step.STOP)
        return BayeuxMessage(channel="/meta/disconnect", id=self._id(),
                             clientId=self.client_id or "")

    # ---- interpreting replies --------------------------------------------------------------

    def transport_failed(self) -> None:
        """The request or socket failed without a Bayeux reply: back off and retry."""
        step = Step.CONNECT if self.client_id else Step.HANDSHAKE
        if self.next_step.step is not Step.STOP:
            self.next_step = NextStep(step, self._back_off())

    def _back_off(self) -> int:
        """Each failure waits one increment longer, up to the maximum (CometD JS defaults)."""
        self.backoff_ms = min(self.max_backoff_ms, self.backoff_ms + self.backoff_increment_ms)
        return self.backoff_ms

    def receive(self, messages: list[BayeuxMessage]) -> list[ClientEvent]:
        events: list[ClientEvent] = []
        for msg in messages:
            channel = msg.channel if isinstance(msg.channel, str) else ""
            if channel == "/meta/handshake":
                events.append(self._on_handshake(msg))
            elif channel == "/meta/connect":
                failure = self._on_connect(msg)
                if failure is not None:
                    events.append(failure)
            elif channel.startswith("/meta/") or msg.data is UNSET:
                if msg.successful is not UNSET or channel.startswith("/meta/"):
                    events.append(Reply(str(msg.id) if msg.id is not UNSET else "", channel,
                                        msg.successful is True,
                                        msg.error if isinstance(msg.error, str) else None))
            else:
                events.append(Delivery(channel, msg.data))
        return events

    def _advise(self, msg: BayeuxMessage) -> str | None:
        advice = msg.advice if isinstance(msg.advice, dict) else {}
        if isinstance(advice.get("interval"), int):
            self.interval_ms = max(0, int(advice["interval"]))
        if isinstance(advice.get("timeout"), int):
            self.timeout_ms = int(advice["timeout"])
        reconnect = advice.get("reconnect")
        return reconnect if isinstance(reconnect, str) else None

    def _on_handshake(self, msg: BayeuxMessage) -> ClientEvent:
        reconnect = self._advise(msg)
        if msg.successful is True and isinstance(msg.clientId, str):
            self.client_id = msg.clientId
            self.handshakes += 1
            self.backoff_ms = 0
            offered = msg.supportedConnectionTypes
            if isinstance(offered, list) and self.connection_type not in offered:
                self.connection_type = next(
                    (t for t in self.connection_types if t in offered), self.connection_type)
            self.server_acks = self.ack and isinstance(msg.ext, dict) and \
                msg.ext.get("ack") not in (None, False)
            self.next_step = NextStep(Step.CONNECT, 0)
            return Handshook(msg.clientId, rehandshake=self.handshakes > 1)
        if reconnect == "none":
            self.next_step = NextStep(Step.STOP)
        else:
            self.next_step = NextStep(Step.HANDSHAKE, self._back_off())
        return Failed("/meta/handshake", str(msg.error) if msg.error is not UNSET else "")

    def _on_connect(self, msg: BayeuxMessage) -> ClientEvent | None:
        reconnect = self._advise(msg)
        if self.server_acks and isinstance(msg.ext, dict) and isinstance(msg.ext.get("ack"), int):
            self.batch = int(msg.ext["ack"])
        if self.next_step.step is Step.STOP:
            return None
        if msg.successful is True:
            self._connected_once = True
            self.backoff_ms = 0
            if reconnect == "none":
                self.next_step = NextStep(Step.STOP)
            elif reconnect == "handshake":
                self.next_step = NextStep(Step.HANDSHAKE, self.interval_ms)
            else:
                self.next_step = NextStep(Step.CONNECT, self.interval_ms)
            return None
        if reconnect == "none":
            self.next_step = NextStep(Step.STOP)
        elif reconnect == "handshake" or (isinstance(msg.error, str)
                                          and msg.error.startswith("402")):
            self.client_id = None
            self.next_step = NextStep(Step.HANDSHAKE, 0)
        else:
            self.next_step = NextStep(Step.CONNECT, self._back_off())
        return Failed("/meta/connect", str(msg.error) if msg.error is not UNSET else "")
