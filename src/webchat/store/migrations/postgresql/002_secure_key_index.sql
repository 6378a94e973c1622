-- CometD chat operations name a chat by its secureKey alone (protocols.md §2.3).
CREATE UNIQUE INDEX chats_secure_key ON chats (secure_key);
