-- Chats, their participants and transcripts; agents and their login tokens.
CREATE TABLE chats (
    chat_id          TEXT PRIMARY KEY,
    service          TEXT NOT NULL,
    secure_key       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    alias            TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_ms       INTEGER NOT NULL,
    queued_ms        INTEGER NOT NULL,
    ended_ms         INTEGER,
    agent_id         TEXT,
    target_agent     TEXT,
    next_participant INTEGER NOT NULL,
    customer_json    TEXT NOT NULL,
    user_data_json   TEXT NOT NULL
);
CREATE INDEX chats_open ON chats (status) WHERE status <> 'ended';

CREATE TABLE participants (
    chat_id        TEXT NOT NULL REFERENCES chats (chat_id),
    participant_id INTEGER NOT NULL,
    type           TEXT NOT NULL,
    nickname       TEXT NOT NULL,
    agent_id       TEXT,
    connected      INTEGER NOT NULL,
    PRIMARY KEY (chat_id, participant_id)
) WITHOUT ROWID;

CREATE TABLE events (
    chat_id        TEXT NOT NULL REFERENCES chats (chat_id),
    idx            INTEGER NOT NULL,
    message_json   BLOB NOT NULL,
    PRIMARY KEY (chat_id, idx)
) WITHOUT ROWID;

CREATE TABLE agents (
    agent_id      TEXT PRIMARY KEY,
    nickname      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    ready         INTEGER NOT NULL,
    capacity      INTEGER NOT NULL
);

CREATE TABLE agent_tokens (
    token_hash TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL REFERENCES agents (agent_id),
    created_ms INTEGER NOT NULL
);
