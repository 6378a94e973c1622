-- Files shared in a chat: metadata here, bytes in the data directory's file vault.
CREATE TABLE files (
    file_id        TEXT PRIMARY KEY,
    chat_id        TEXT NOT NULL REFERENCES chats (chat_id),
    name           TEXT NOT NULL,
    size           INTEGER NOT NULL,
    content_type   TEXT NOT NULL,
    participant_id INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL,
    description    TEXT NOT NULL,
    deleted        INTEGER NOT NULL,
    downloads      INTEGER NOT NULL
);
CREATE INDEX files_by_chat ON files (chat_id);
