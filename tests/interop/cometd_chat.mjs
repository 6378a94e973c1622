// Drives a chat through our server with the official CometD JavaScript client in Node.
// Usage: node cometd_chat.mjs <cometURL> <websocket|long-polling> <service>
// It resumes the chat from its own position after a re-handshake.
// Prints one JSON line per observation on stdout; the Python test reads them.
import {adapt} from "cometd-nodejs-client";
import {CometD, AckExtension} from "cometd";

adapt();

const [url, transport, service] = process.argv.slice(2);
const channel = `/service/chatV2/${service}`;
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const cometd = new CometD();
cometd.registerExtension("ack", new AckExtension());
if (transport === "long-polling") {
    cometd.unregisterTransport("websocket");
}
cometd.configure({url, logLevel: "warn"});

let secureKey = null;
const seen = [];

cometd.addListener("/meta/connect", (m) => {
    if (!m.successful) {
        out({event: "connectFailed", error: m.error || null,
             code: (m.failure && m.failure.websocketCode) || null});
    } else if (m.advice) {
        out({event: "advice", reconnect: m.advice.reconnect, interval: m.advice.interval});
    }
});

// After a re-handshake (the server restarted, or the session lives in another process) the
// chat goes on from the last event seen: the server only knows the new session's clientId,
// and CometD dropped the subscriptions made outside listeners.
cometd.addListener("/meta/handshake", (m) => {
    if (!m.successful || !m.reestablish || !secureKey) return;
    out({event: "rehandshake", transport: cometd.getTransport().type});
    cometd.subscribe(channel, handleDelivery, () => {
        const transcriptPosition = seen.length ? Math.max(...seen) + 1 : 1;
        cometd.publish(channel, {operation: "requestNotifications", secureKey,
                                 transcriptPosition},
            (ack) => out({event: "published", operation: "requestNotifications",
                          successful: ack.successful}));
    });
});

function handleDelivery(message) {
    const data = message.data;
    if (data.statusCode !== 0) {
        out({event: "error", data});
        return;
    }
    if (data.secureKey && !secureKey) {  // every response carries it; the first starts
        secureKey = data.secureKey;
        out({event: "started", chatId: data.chatId});
    }
    for (const m of data.messages || []) {
        seen.push(m.index);
        out({event: "message", index: m.index, type: m.type, from: m.from.type,
             text: m.text || null});
    }
    if (data.chatEnded) {
        out({event: "ended", indexes: seen});
        cometd.disconnect(() => process.exit(0));
    }
}

let handshook = false;
cometd.handshake((reply) => {
    // CometD calls this back on every handshake; a re-handshake resumes (the listener above).
    if (handshook) return;
    handshook = reply.successful;
    out({event: "handshake", successful: reply.successful,
         transport: cometd.getTransport() && cometd.getTransport().type});
    if (!reply.successful) {
        out({event: "handshakeFailed", error: reply.error});
        process.exit(2);
    }
    cometd.subscribe(channel, handleDelivery, (sub) => {
        out({event: "subscribed", successful: sub.successful});
        cometd.publish(channel, {operation: "requestChat", nickname: "Node Ada",
            userData: {client: "cometd-js"}}, (ack) => out({event: "published",
            successful: ack.successful}));
    });
});

// Commands from the test arrive on stdin, one JSON object per line.
let buffer = "";
process.stdin.on("data", (chunk) => {
    buffer += chunk;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const cmd = JSON.parse(line);
        cometd.publish(channel, {...cmd, secureKey},
            (ack) => out({event: "published", operation: cmd.operation,
                          successful: ack.successful}));
    }
});
setTimeout(() => { out({event: "timeout"}); process.exit(3); }, 30000);
