// Load generator for benchmarks/cometd_chat.py built on the official CometD JavaScript client.
// Usage: node cometd_load.mjs <url> <clients> <rooms> <publishesPerSecond> <seconds> [noack]
// Prints one JSON object: deliveries, latency percentiles.
import {createRequire} from "module";
const require = createRequire(import.meta.url + "/../../tests/interop/");
const {adapt} = await import(require.resolve("cometd-nodejs-client"));
const {CometD, AckExtension} = await import(require.resolve("cometd"));

adapt();
const [url, clientsArg, roomsArg, rateArg, secondsArg, ackArg] = process.argv.slice(2);
const useAck = ackArg !== "noack";
const clients = +clientsArg, rooms = +roomsArg, rate = +rateArg, seconds = +secondsArg;
const latencies = [];
let measuring = false;
let delivered = 0;

function connect(n) {
    return new Promise((resolve, reject) => {
        const cometd = new CometD();
        if (useAck) cometd.registerExtension("ack", new AckExtension());
        cometd.configure({url, logLevel: "error"});
        cometd.handshake((reply) => {
            if (!reply.successful) return reject(new Error(reply.error));
            cometd.subscribe(`/rooms/${n % rooms}`, (m) => {
                if (measuring) {
                    delivered++;
                    latencies.push(Number(process.hrtime.bigint() - BigInt(m.data.t)) / 1e6);
                }
            }, () => resolve(cometd));
        });
    });
}

const all = [];
for (let i = 0; i < clients; i += 50) {
    const batch = [];
    for (let n = i; n < Math.min(clients, i + 50); n++) batch.push(connect(n));
    all.push(...await Promise.all(batch));
}
await new Promise((r) => setTimeout(r, 1000));
measuring = true;
const start = Date.now();
let seq = 0;
await new Promise((resolve) => {
    const tick = setInterval(() => {
        const due = Math.floor((Date.now() - start) / 1000 * rate);
        while (seq < due) {
            const c = all[seq % all.length];
            c.publish(`/rooms/${seq % rooms}`, {t: process.hrtime.bigint().toString(), s: seq});
            seq++;
        }
        if (Date.now() - start >= seconds * 1000) { clearInterval(tick); resolve(); }
    }, 5);
});
const elapsed = (Date.now() - start) / 1000;
await new Promise((r) => setTimeout(r, 1000));
measuring = false;
latencies.sort((a, b) => a - b);
const pct = (p) => latencies.length ? latencies[Math.min(latencies.length - 1,
    Math.round(p / 100 * (latencies.length - 1)))] : null;
process.stdout.write(JSON.stringify({published: seq, delivered,
    delivered_per_s: delivered / elapsed, p50: pct(50), p99: pct(99),
    max: latencies.length ? latencies[latencies.length - 1] : null}) + "\n");
for (const c of all) c.disconnect();
setTimeout(() => process.exit(0), 500);
