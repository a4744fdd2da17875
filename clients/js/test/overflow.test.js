import { test } from 'node:test';
import assert from 'node:assert/strict';

import { bulkAnswer, events, itemsOf, makeClient, UUID_RE, waitFor } from '../testing/fakes.js';

test('a full queue drops the NEW event: counted, onDrop called, track returns null, never throws', async () => {
  const { client, transport, drops } = makeClient(undefined, { maxQueueSize: 5, maxBatchSize: 100 });
  const results = events(8).map((e) => client.track(e));
  assert.equal(results.filter((r) => r !== null).length, 5);
  assert.deepEqual(results.slice(5), [null, null, null]);
  for (const id of results.slice(0, 5)) assert.match(id, UUID_RE);
  assert.equal(client.stats.dropped, 3);
  assert.equal(client.stats.queued, 5);
  assert.deepEqual(drops.map((d) => d.reason), ['queue_full', 'queue_full', 'queue_full']);
  assert.deepEqual(drops.map((d) => d.item.data.i), [5, 6, 7], 'the dropped ones are the newest');

  const r = await client.flush();
  assert.deepEqual(itemsOf(transport.requests[0]).map((i) => i.data.i), [0, 1, 2, 3, 4], 'the queued ones are kept');
  assert.deepEqual([r.sent, r.dropped], [5, 3]);
  assert.match(client.track(events(1)[0]), UUID_RE, 'room again once sent');
});

test('events being sent count against the bound until they are settled', async () => {
  let release;
  const gate = new Promise((r) => (release = r));
  const { client, transport } = makeClient(async (rec) => {
    await gate;
    return bulkAnswer(rec);
  }, { maxQueueSize: 4, maxBatchSize: 3 });
  for (const e of events(3)) client.track(e); // N reached: sent now, in flight
  await waitFor(() => transport.requests.length === 1);
  assert.equal(client.stats.inFlight, 3);
  assert.notEqual(client.track(events(1)[0]), null);
  assert.equal(client.track(events(1)[0]), null, '3 in flight + 1 queued = 4 = maxQueueSize');
  release();
  const r = await client.flush();
  assert.deepEqual([r.sent, r.dropped], [4, 1]);
});

test('the DataStream surface shares the same bound', () => {
  const { client, drops } = makeClient(undefined, { maxQueueSize: 2 });
  client.track(events(1)[0]);
  client.ingest.sendEvent({ streamId: 'web', eventType: 'click', data: { a: 1 } });
  assert.equal(client.ingest.sendEvent({ streamId: 'web', eventType: 'click', data: { a: 2 } }), null);
  assert.equal(drops[0].item.event_type, 'click', 'onDrop gets the item as it would have been sent');
  assert.deepEqual(drops[0].item.data, { a: 2 });
});

test('after shutdown, track() drops with reason "shutdown" and never throws', async () => {
  const { client, transport, drops } = makeClient();
  client.track(events(1)[0]);
  await client.shutdown();
  assert.equal(client.track(events(1)[0]), null);
  assert.equal(client.ingest.sendEvent({ streamId: 's', eventType: 't', data: { a: 1 } }), null);
  assert.deepEqual(drops.map((d) => d.reason), ['shutdown', 'shutdown']);
  assert.equal(client.stats.dropped, 2);
  assert.equal(transport.requests.length, 1);
});
