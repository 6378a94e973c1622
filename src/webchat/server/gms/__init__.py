"""The GMS customer chat API: one operation table and one gateway for every transport.

``operations`` says what each operation takes and runs; ``gateway`` applies every policy once.
The adapters (``webchat.server.chat_api`` for REST and chat-ntf, ``webchat.server.cometd_chat``
for CometD) only translate their wire format to a ``Call`` and the result back.
"""
