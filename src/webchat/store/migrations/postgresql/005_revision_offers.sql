-- A chat's revision (changes committed) and its outstanding offer, shared by every process.
ALTER TABLE chats ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chats ADD COLUMN offered_to TEXT;
ALTER TABLE chats ADD COLUMN offered_ms BIGINT;
