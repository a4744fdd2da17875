import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { bulkAnswer, errorAnswer, events, itemsOf, makeClient, tick, waitFor } from '../testing/fakes.js';

test('flush() on an empty client resolves at once', async () => {
  const { client, transport } = makeClient();
  const r = await client.flush();
  assert.equal(r.timedOut, false);
  assert.equal(transport.requests.length, 0);
});

test('flush() sends everything queued and resolves once it is stored or failed', async () => {
  const { client, transport } = makeClient((rec) => bulkAnswer(rec, (_, i) => (i === 1 ? 400 : 201)), { maxBatchSize: 4 });
  for (const e of events(10)) client.track(e);
  const r = await client.flush();
  assert.deepEqual(transport.requests.map((q) => itemsOf(q).length), [4, 4, 2]);
  assert.deepEqual([r.sent, r.failed, r.queued, r.inFlight, r.timedOut], [7, 3, 0, 0, false]);
});

test('flush() waits through backoff and per-item retries', async () => {
  const { client, transport, clock } = makeClient((rec, i) =>
    i === 0 ? errorAnswer(429, 'RATE_LIMITED', 'x', {}, { 'retry-after': '3' }) : i === 1 ? bulkAnswer(rec, (_, j) => (j === 0 ? 503 : 201)) : bulkAnswer(rec),
  );
  for (const e of events(3)) client.track(e);
  const r = await client.flush();
  assert.equal(transport.requests.length, 3);
  assert.deepEqual(clock.sleeps, [3000, 1000]);
  assert.equal(r.sent, 3);
});

test('flush({timeoutMs}) gives up waiting, reports timedOut, and sending goes on', async () => {
  let release;
  const gate = new Promise((r) => (release = r));
  const { client, clock } = makeClient(async (rec) => {
    await gate;
    return bulkAnswer(rec);
  });
  client.track(events(1)[0]);
  const pending = client.flush({ timeoutMs: 10_000 });
  await tick();
  clock.advance(10_000);
  const r = await pending;
  assert.equal(r.timedOut, true);
  assert.equal(r.inFlight, 1);
  release();
  const r2 = await client.flush();
  assert.deepEqual([r2.timedOut, r2.sent], [false, 1]);
});

test('flush() covers what was queued at call time; concurrent flushes all resolve', async () => {
  const { client } = makeClient(undefined, { maxBatchSize: 2 });
  for (const e of events(3)) client.track(e);
  const a = client.flush();
  for (const e of events(3)) client.track(e);
  const b = client.flush();
  const [ra, rb] = await Promise.all([a, b]);
  assert.ok(ra.sent >= 3);
  assert.equal(rb.sent, 6);
});

test('shutdown() drains the queue, stops the timer, and can be called twice', async () => {
  const { client, transport, clock } = makeClient(undefined, { flushIntervalMs: 5000 });
  for (const e of events(3)) client.track(e);
  assert.equal(clock.timers.length, 1, 'the flush timer is armed');
  const r = await client.shutdown();
  assert.deepEqual([r.sent, r.queued, r.inFlight], [3, 0, 0]);
  assert.equal(clock.timers.length, 0, 'no timer left');
  assert.equal(transport.requests.length, 1);
  const again = await client.shutdown();
  assert.equal(again.sent, 3);
  clock.advance(60_000);
  await tick();
  assert.equal(transport.requests.length, 1);
});

test('shutdown() while a batch is in its backoff waits for it', async () => {
  const { client, transport } = makeClient((rec, i) => (i < 2 ? errorAnswer(503, 'SERVICE_UNAVAILABLE') : bulkAnswer(rec)), { maxBatchSize: 2 });
  for (const e of events(2)) client.track(e);
  await waitFor(() => transport.requests.length >= 1);
  const r = await client.shutdown();
  assert.equal(r.sent, 2);
  assert.equal(transport.requests.length, 3);
});

test('an awaited flush() or call keeps the process alive through an (unref\'d) backoff', () => {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const script = `
    import { FakeTransport, bulkAnswer, errorAnswer } from '../testing/fakes.js';
    import { Client } from '../src/index.js';
    const busy = errorAnswer(503, 'SERVICE_UNAVAILABLE', 'busy', {}, { 'retry-after': '0.3' });
    const transport = new FakeTransport((rec, i) => (i % 2 === 0 ? busy : rec.path === '/sessions' ? { status: 201, body: { id: 's' } } : bulkAnswer(rec)));
    const client = new Client({ baseUrl: 'http://argus.test', apiKey: 'k', fetchLimits: false, flushOnExit: false, transport });
    const session = await client.sessions.create();
    client.track({ sessionId: session.id, category: 'c', name: 'n', data: { a: 1 } });
    const r = await client.flush();
    console.log('session=' + session.id + ' sent=' + r.sent + ' requests=' + transport.requests.length);
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: here, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /session=s sent=1 requests=4/);
});
