import { test } from 'node:test';
import assert from 'node:assert/strict';

import { bulkAnswer, events, itemsOf, makeClient, UUID_RE } from '../testing/fakes.js';

test('ingest.sendEvent groups queued events by stream: one POST /ingest/batch per stream_id', async () => {
  const { client, transport, clock } = makeClient();
  const a1 = client.ingest.sendEvent({ streamId: 'web', eventType: 'click', data: { b: 1 } });
  const b1 = client.ingest.sendEvent({ streamId: 'pay', eventType: 'charge', data: { amount: 5 }, metadata: { region: 'eu' } });
  const a2 = client.ingest.sendEvent({ streamId: 'web', eventType: 'view', data: { p: '/' }, timestamp: '2026-02-28T10:00:00Z' });
  for (const id of [a1, b1, a2]) assert.match(id, UUID_RE);
  const r = await client.flush();
  assert.equal(r.sent, 3);
  assert.deepEqual(transport.requests.map((q) => [q.path, q.json.stream_id, itemsOf(q).length]), [
    ['/ingest/batch', 'web', 2],
    ['/ingest/batch', 'pay', 1],
  ]);
  const now = new Date(clock.now()).toISOString();
  const web = transport.requests[0].json;
  assert.equal(web.sent_at, now);
  assert.equal(web.items, undefined);
  assert.deepEqual(web.events, [
    { event_id: a1, event_type: 'click', timestamp: now, data: { b: 1 } },
    { event_id: a2, event_type: 'view', timestamp: '2026-02-28T10:00:00Z', data: { p: '/' } },
  ]);
  assert.deepEqual(transport.requests[1].json.events, [{ event_id: b1, event_type: 'charge', timestamp: now, data: { amount: 5 }, metadata: { region: 'eu' } }]);
});

test('ingest events and Argus events go to their own routes, both gzipped', async () => {
  const { client, transport } = makeClient();
  client.track(events(1)[0]);
  client.ingest.sendEvent({ streamId: 'web', eventType: 'click', data: { b: 1 } });
  client.track(events(1)[0]);
  await client.flush();
  assert.deepEqual(transport.requests.map((q) => [q.path, itemsOf(q).length, q.headers['content-encoding']]), [
    ['/batch/events', 2, 'gzip'],
    ['/ingest/batch', 1, 'gzip'],
  ]);
});

test('ingest batches follow the same retry rules (per-item 503, same event_id)', async () => {
  const { client, transport, errors } = makeClient((rec, i) => bulkAnswer(rec, (_, j) => (i === 0 && j === 0 ? 503 : j === 1 ? 409 : 201)));
  for (let i = 0; i < 3; i++) client.ingest.sendEvent({ streamId: 's1', eventType: 't', data: { i } });
  const r = await client.flush();
  assert.deepEqual(transport.requests.map((q) => itemsOf(q).map((e) => e.data.i)), [[0, 1, 2], [0]]);
  assert.equal(itemsOf(transport.requests[1])[0].event_id, itemsOf(transport.requests[0])[0].event_id);
  assert.deepEqual([r.sent, r.failed], [2, 1]);
  assert.equal(errors[0].err.code, 'ID_CONFLICT');
  assert.equal(errors[0].item.data.i, 1);
});

test('optional sessionId, category and a caller-chosen eventId are passed on', async () => {
  const { client, transport } = makeClient();
  const id = '0190f0a2-5f5e-7c3a-9a1b-000000000001';
  assert.equal(client.ingest.sendEvent({ streamId: 's', eventType: 't', data: { a: 1 }, eventId: id, sessionId: 'x', category: 'c', timestamp: Date.UTC(2026, 0, 2) }), id);
  await client.flush();
  assert.deepEqual(itemsOf(transport.requests[0])[0], { event_id: id, event_type: 't', timestamp: '2026-01-02T00:00:00.000Z', data: { a: 1 }, session_id: 'x', category: 'c' });
});

test('sendEvent without a streamId is reported to onError, not sent, and does not throw', async () => {
  const { client, transport, errors } = makeClient();
  assert.equal(client.ingest.sendEvent({ eventType: 't', data: {} }), null);
  assert.equal(client.ingest.sendEvent(undefined), null);
  await client.flush();
  assert.equal(transport.requests.length, 0);
  assert.deepEqual(errors.map((e) => e.err.code), ['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
});

test('validateOnly adds ?validate_only=true on both ingestion routes', async () => {
  const { client, transport } = makeClient(undefined, { validateOnly: true });
  client.track(events(1)[0]);
  client.ingest.sendEvent({ streamId: 'web', eventType: 'click', data: { b: 1 } });
  await client.flush();
  assert.deepEqual(transport.requests.map((q) => [q.path, q.query.validate_only]), [
    ['/batch/events', 'true'],
    ['/ingest/batch', 'true'],
  ]);
});
