-- Chats, their participants and transcripts; agents and their login tokens.
-- Times are milliseconds since the epoch (BIGINT). The JSON columns are BYTEA: they hold the
-- exact bytes msgspec wrote and are never queried inside, so PostgreSQL neither parses them
-- (JSONB would, and would reorder userData's keys, which clients show in order) nor checks
-- an encoding (TEXT would); asyncpg hands bytes through untouched in both directions.
-- A chat's row is rewritten on every change (its revision): fillfactor leaves room on the
-- page for those updates to stay HOT (no index entries to add).
CREATE TABLE chats (
    chat_id          TEXT PRIMARY KEY,
    service          TEXT NOT NULL,
    secure_key       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    alias            TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_ms       BIGINT NOT NULL,
    queued_ms        BIGINT NOT NULL,
    ended_ms         BIGINT,
    agent_id         TEXT,
    target_agent     TEXT,
    next_participant INTEGER NOT NULL,
    customer_json    BYTEA NOT NULL,
    user_data_json   BYTEA NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX chats_open ON chats (status) WHERE status <> 'ended';

CREATE TABLE participants (
    chat_id        TEXT NOT NULL REFERENCES chats (chat_id),
    participant_id INTEGER NOT NULL,
    type           TEXT NOT NULL,
    nickname       TEXT NOT NULL,
    agent_id       TEXT,
    connected      BOOLEAN NOT NULL,
    PRIMARY KEY (chat_id, participant_id)
);

-- The primary key is what makes a transcript index unique across processes: a writer that
-- computed an index already taken fails instead of writing a second event under it.
CREATE TABLE events (
    chat_id        TEXT NOT NULL REFERENCES chats (chat_id),
    idx            INTEGER NOT NULL,
    message_json   BYTEA NOT NULL,
    PRIMARY KEY (chat_id, idx)
);

CREATE TABLE agents (
    agent_id      TEXT PRIMARY KEY,
    nickname      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    ready         BOOLEAN NOT NULL,
    capacity      INTEGER NOT NULL
);

CREATE TABLE agent_tokens (
    token_hash TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL REFERENCES agents (agent_id),
    created_ms BIGINT NOT NULL
);
