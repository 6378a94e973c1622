-- Files shared in a chat: metadata here, bytes in file_blobs (every process reads every
-- upload, which a data directory on one host could not give).
CREATE TABLE files (
    file_id        TEXT PRIMARY KEY,
    chat_id        TEXT NOT NULL REFERENCES chats (chat_id),
    name           TEXT NOT NULL,
    size           BIGINT NOT NULL,
    content_type   TEXT NOT NULL,
    participant_id INTEGER NOT NULL,
    created_ms     BIGINT NOT NULL,
    description    TEXT NOT NULL,
    deleted        BOOLEAN NOT NULL,
    downloads      INTEGER NOT NULL
);
CREATE INDEX files_by_chat ON files (chat_id);

-- No foreign key to files: the bytes are written before the event that announces them is
-- committed, so a crash in between leaves an orphan blob, never an event pointing at nothing.
-- EXTERNAL: uploads are images and PDFs, already compressed; do not try again.
CREATE TABLE file_blobs (
    file_id TEXT PRIMARY KEY,
    data    BYTEA NOT NULL
);
ALTER TABLE file_blobs ALTER COLUMN data SET STORAGE EXTERNAL;
