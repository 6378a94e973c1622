// The browser's pure session module (src/webchat/web/static/session.js) on the cases the
// Python session passes too (tests/fixtures/session/*.json, run there by tests/test_session.py),
// so the two implementations of the GMS session rules cannot drift apart.
// Run: node --test tests/node/
import assert from "node:assert/strict";
import {readdirSync, readFileSync} from "node:fs";
import {dirname, join} from "node:path";
import {test} from "node:test";
import {fileURLToPath} from "node:url";

import {ChatSession, MAX_EARLY_PUSHES, SessionError} from "../../src/webchat/web/static/session.js";

const here = dirname(fileURLToPath(import.meta.url));
const fixtures = join(here, "..", "fixtures", "session");
const cases = readdirSync(fixtures).filter((name) => name.endsWith(".json")).sort();

// An event as the fixtures write it (tests/test_session.py: event_json writes the same).
function eventJson(e) {
  const out = {kind: e.kind};
  if (e.kind === "messages") Object.assign(out, {indexes: e.messages.map((m) => m.index ?? 0), restoring: e.restoring});
  else if (e.kind === "joined" || e.kind === "left") {
    Object.assign(out, {participantId: e.participant.participantId, name: e.participant.name, self: e.isSelf});
  } else if (e.kind === "typing") Object.assign(out, {participantId: e.participant.participantId, started: e.started});
  else if (e.kind === "fileUploaded") out.index = e.message.index ?? 0;
  else if (e.kind === "error") Object.assign(out, {operation: e.operation, statusCode: e.response.statusCode});
  return out;
}

const FACTS = {
  state: (s) => s.state, nextPosition: (s) => s.nextPosition,
  transcript: (s) => s.transcript.map((m) => m.index ?? 0), agents: (s) => s.agents(),
  connectedAgents: (s) => s.connectedAgents(), sessionData: (s) => s.sessionData(),
};

test("there are shared cases", () => assert.ok(cases.length >= 10));

for (const name of cases) {
  test(name, () => {
    const {steps} = JSON.parse(readFileSync(join(fixtures, name), "utf8"));
    let s = new ChatSession();
    let last = null;
    steps.forEach((step, i) => {
      const where = `${name} step ${i + 1}`;
      if (step.resume) {
        const r = step.resume;
        s = ChatSession.resume(r.chatId, r.userId, r.secureKey, r.alias, r.nextPosition, r.restoringBelow);
      } else if (step.call) {
        assert.equal(typeof s[step.call], "function", `${where}: no call ${step.call}`);
        const call = () => s[step.call](...(step.args ?? []));
        if (step.raises) {
          assert.throws(call, (e) => e instanceof SessionError && e.message === step.raises, where);
          return;
        }
        const made = call();
        if ("returns" in step) assert.deepEqual(made, step.returns, where);
        if (made && typeof made === "object" && "operation" in made) {
          last = made;
          if (step.request) assert.deepEqual(made, step.request, where);
        }
      } else if (step.reply || step.push) {
        const response = structuredClone(step.reply ?? step.push);
        const events = step.push ? s.push(response) : s.receive(last, response);
        assert.deepEqual(events.map(eventJson), step.events, where);
      } else if (step.expect) {
        const got = Object.fromEntries(Object.keys(step.expect).map((k) => [k, FACTS[k](s)]));
        assert.deepEqual(got, step.expect, where);
      } else {
        assert.fail(`${where}: unknown step ${Object.keys(step)}`);
      }
    });
  });
}

test("pushes past the most held while starting become one gap", () => {
  const s = new ChatSession();
  const req = s.requestChat({nickname: "Ada"});
  const message = (index, type = "Message", sender = {nickname: "Grace", participantId: 3, type: "Agent"}) =>
    ({from: sender, index, type, utcTime: 1000 + index, text: "x"});
  for (let index = 2; index < 2 + MAX_EARLY_PUSHES + 6; index++) {
    assert.deepEqual(s.push({statusCode: 0, chatId: "C1", messages: [message(index)]}), []);
  }
  const events = s.receive(req, {statusCode: 0, chatId: "C1", userId: "U", secureKey: "K", alias: "1",
    nextPosition: 2, messages: [message(1, "ParticipantJoined", {nickname: "Ada", participantId: 1, type: "Client"})]});
  const shown = events.filter((e) => e.kind === "messages").flatMap((e) => e.messages.map((m) => m.index));
  assert.deepEqual(shown, Array.from({length: MAX_EARLY_PUSHES}, (_, i) => i + 1));
  assert.equal(events.at(-1).kind, "gap");
  assert.equal(s.nextPosition, MAX_EARLY_PUSHES + 1);
});
