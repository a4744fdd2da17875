import { test } from 'node:test';
import assert from 'node:assert/strict';

import { backoffDelay } from '../src/batcher.js';
import { bulkAnswer, errorAnswer, events, idOf, itemsOf, makeClient } from '../testing/fakes.js';

const ids = (rec) => itemsOf(rec).map(idOf);

test('backoff is full jitter under an exponential ceiling, capped, and at least Retry-After', () => {
  const o = { baseMs: 500, maxMs: 30_000 };
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map((r) => backoffDelay(r, { ...o, random: () => 1 })), [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  assert.equal(backoffDelay(3, { ...o, random: () => 0 }), 0);
  assert.equal(backoffDelay(3, { ...o, random: () => 0.5 }), 1000);
  assert.equal(backoffDelay(1, { ...o, random: () => 1, retryAfterMs: 7000 }), 7000, 'Retry-After above the jitter wins');
  assert.equal(backoffDelay(6, { ...o, random: () => 1, retryAfterMs: 1000 }), 16000, 'the jitter above Retry-After wins');
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(4, { ...o, random: Math.random });
    assert.ok(d >= 0 && d <= 4000);
  }
});

test('429 with Retry-After: waits at least that long, resends the same ids with a new sent_at', async () => {
  const { client, transport, clock } = makeClient((rec, i) =>
    i === 0 ? errorAnswer(429, 'RATE_LIMITED', 'slow down', { reset_seconds: 7 }, { 'Retry-After': '7' }) : bulkAnswer(rec),
    { random: () => 0 }, // no jitter: the wait is exactly Retry-After
  );
  for (const e of events(5)) client.track(e);
  const r = await client.flush();
  assert.equal(transport.requests.length, 2);
  assert.deepEqual(clock.sleeps, [7000]);
  assert.deepEqual(ids(transport.requests[1]), ids(transport.requests[0]), 'same ids on the retry');
  assert.deepEqual(itemsOf(transport.requests[1]), itemsOf(transport.requests[0]), 'same items on the retry');
  const [a, b] = transport.requests.map((q) => Date.parse(q.json.sent_at));
  assert.equal(b - a, 7000, 'sent_at is set at each attempt');
  assert.deepEqual([r.sent, r.failed, r.retries], [5, 0, 1]);
});

test('Retry-After as an HTTP date is honoured too', async () => {
  const { client, clock } = makeClient((rec, i) =>
    i === 0 ? errorAnswer(503, 'SERVICE_UNAVAILABLE', 'down', {}, { 'Retry-After': new Date(Date.parse('2026-03-01T12:00:12.000Z')).toUTCString() }) : bulkAnswer(rec),
    { random: () => 0 },
  );
  client.track(events(1)[0]);
  await client.flush();
  assert.deepEqual(clock.sleeps, [12000]);
});

test('429, 503, other 5xx and network errors are retried with growing backoff; ids never change', async () => {
  const failures = [
    errorAnswer(429, 'RATE_LIMITED'),
    errorAnswer(503, 'SERVICE_UNAVAILABLE'),
    errorAnswer(500, 'INTERNAL'),
    { status: 502, body: { message: 'Bad Gateway' } },
    new TypeError('fetch failed'),
    { status: 504, body: 'Gateway Timeout' },
  ];
  const { client, transport, clock } = makeClient((rec, i) => (i < failures.length ? failures[i] : bulkAnswer(rec)));
  for (const e of events(3)) client.track(e);
  const r = await client.flush();
  assert.equal(transport.requests.length, failures.length + 1);
  assert.deepEqual(clock.sleeps, [500, 1000, 2000, 4000, 8000, 16000]);
  const first = ids(transport.requests[0]);
  for (const q of transport.requests) assert.deepEqual(ids(q), first);
  assert.deepEqual([r.sent, r.failed, r.retries], [3, 0, 6]);
});

test('after maxAttempts the batch fails: each item goes to onError with the last error', async () => {
  const { client, transport, clock, errors } = makeClient(() => errorAnswer(503, 'SERVICE_UNAVAILABLE', 'down', { component: 'dynamodb', retryable: true }), { maxAttempts: 8 });
  const tracked = events(2).map((e) => client.track(e));
  const r = await client.flush();
  assert.equal(transport.requests.length, 8);
  assert.deepEqual(clock.sleeps, [500, 1000, 2000, 4000, 8000, 16000, 30000], 'capped at 30 s');
  assert.deepEqual([r.sent, r.failed], [0, 2]);
  assert.deepEqual(errors.map((e) => e.item.id), tracked);
  for (const { err } of errors) {
    assert.equal(err.name, 'ArgusError');
    assert.equal(err.status, 503);
    assert.equal(err.code, 'SERVICE_UNAVAILABLE');
    assert.equal(err.details.component, 'dynamodb');
    assert.equal(err.attempts, 8);
  }
});

test('network errors: retried, then reported as NETWORK_ERROR', async () => {
  const { client, transport, errors } = makeClient(() => new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } }), { maxAttempts: 3 });
  client.track(events(1)[0]);
  const r = await client.flush();
  assert.equal(transport.requests.length, 3);
  assert.equal(r.failed, 1);
  assert.equal(errors[0].err.code, 'NETWORK_ERROR');
  assert.equal(errors[0].err.status, 0);
  assert.match(errors[0].err.message, /ECONNREFUSED/);
});

test('per-item 503 RETRY_LATER: only those items are resent, with the same ids and content', async () => {
  const { client, transport, errors } = makeClient((rec, i) =>
    i === 0 ? bulkAnswer(rec, (_, idx) => (idx === 1 || idx === 3 ? 503 : 201)) : bulkAnswer(rec),
  );
  for (const e of events(5)) client.track(e);
  const r = await client.flush();
  assert.equal(transport.requests.length, 2);
  const [first, second] = transport.requests.map(itemsOf);
  assert.deepEqual(second, [first[1], first[3]]);
  assert.deepEqual([r.sent, r.failed, r.retries], [5, 0, 1]);
  assert.equal(errors.length, 0);
});

test('per-item 503 that never clears: reported with RETRY_LATER after maxAttempts', async () => {
  const { client, transport, errors } = makeClient((rec) => bulkAnswer(rec, (item) => (item.data.i === 0 ? 503 : 201)), { maxAttempts: 4 });
  for (const e of events(3)) client.track(e);
  const r = await client.flush();
  assert.deepEqual(transport.requests.map((q) => itemsOf(q).length), [3, 1, 1, 1]);
  assert.deepEqual([r.sent, r.failed], [2, 1]);
  assert.equal(errors[0].err.code, 'RETRY_LATER');
  assert.equal(errors[0].err.status, 503);
  assert.equal(errors[0].item.data.i, 0);
});

test('per-item 400 and 409 are permanent: reported with the item, never retried', async () => {
  const { client, transport, errors } = makeClient((rec) => bulkAnswer(rec, (_, idx) => (idx === 0 ? 400 : idx === 2 ? 409 : 201)));
  const tracked = events(4).map((e) => client.track(e));
  const r = await client.flush();
  assert.equal(transport.requests.length, 1);
  assert.deepEqual([r.sent, r.failed, r.retries], [2, 2, 0]);
  assert.deepEqual(errors.map((e) => [e.err.status, e.err.code, e.item.id]), [
    [400, 'VALIDATION_FAILED', tracked[0]],
    [409, 'ID_CONFLICT', tracked[2]],
  ]);
  assert.equal(errors[0].err.details.field, 'data');
  assert.equal(errors[0].item.session_id, events(1)[0].sessionId, 'the item as it was sent');
});

test('200 duplicate counts as sent (a retry of something already stored)', async () => {
  const { client } = makeClient((rec) => bulkAnswer(rec, (_, idx) => (idx === 0 ? 200 : 201)));
  for (const e of events(2)) client.track(e);
  const r = await client.flush();
  assert.deepEqual([r.sent, r.duplicates, r.failed], [2, 1, 0]);
});

test('413 splits the batch in half until each half fits, and learns max_items', async () => {
  const { client, transport } = makeClient((rec) =>
    itemsOf(rec).length > 3 ? errorAnswer(413, 'BATCH_TOO_LARGE', 'too many', { max_items: 3, max_bytes: 5242880 }) : bulkAnswer(rec),
  );
  const tracked = events(10).map((e) => client.track(e));
  const r = await client.flush();
  const sizes = transport.requests.map((q) => itemsOf(q).length);
  assert.deepEqual(sizes, [10, 5, 3, 2, 5, 3, 2]);
  const stored = transport.requests.filter((q) => itemsOf(q).length <= 3).flatMap(ids);
  assert.deepEqual(stored, tracked, 'every id once, in order');
  assert.deepEqual([r.sent, r.failed], [10, 0]);
  // The next batch respects the learned limit.
  for (const e of events(7)) client.track(e);
  await client.flush();
  assert.deepEqual(transport.requests.slice(sizes.length).map((q) => itemsOf(q).length), [3, 3, 1]);
});

test('413 for a single item is a permanent failure', async () => {
  const { client, transport, errors } = makeClient(() => ({ status: 413, body: { message: 'Request Entity Too Large' } }));
  client.track(events(1)[0]);
  const r = await client.flush();
  assert.equal(transport.requests.length, 1);
  assert.equal(r.failed, 1);
  assert.equal(errors[0].err.status, 413);
  assert.equal(errors[0].err.code, 'HTTP_ERROR');
  assert.equal(errors[0].err.message, 'Request Entity Too Large');
});

test('whole-request 400/401/403 are not retried: every item is reported', async () => {
  for (const [status, code] of [[400, 'MALFORMED_JSON'], [401, 'INVALID_API_KEY'], [403, 'INSUFFICIENT_SCOPE']]) {
    const { client, transport, errors } = makeClient(() => errorAnswer(status, code));
    for (const e of events(3)) client.track(e);
    const r = await client.flush();
    assert.equal(transport.requests.length, 1, code);
    assert.equal(r.failed, 3);
    assert.deepEqual(errors.map((e) => e.err.code), [code, code, code]);
  }
});

test('a retried batch blocks later batches (one request at a time), which follow in order', async () => {
  const { client, transport } = makeClient((rec, i) => (i < 2 ? errorAnswer(503, 'SERVICE_UNAVAILABLE') : bulkAnswer(rec)), { maxBatchSize: 2 });
  const tracked = events(4).map((e) => client.track(e));
  await client.flush();
  assert.deepEqual(transport.requests.map(ids), [tracked.slice(0, 2), tracked.slice(0, 2), tracked.slice(0, 2), tracked.slice(2)]);
});
