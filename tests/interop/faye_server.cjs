// A faye Bayeux server on loopback, a second server implementation for our Python client.
// Usage: node faye_server.cjs <port>; prints "ready" once listening.
const http = require("http");
const faye = require("faye");

const port = parseInt(process.argv[2], 10);
const bayeux = new faye.NodeAdapter({mount: "/bayeux", timeout: 20});
const server = http.createServer();
bayeux.attach(server);
server.listen(port, "127.0.0.1", () => process.stdout.write("ready\n"));
