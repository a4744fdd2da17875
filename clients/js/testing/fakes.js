// Test doubles for the unit tests: a transport that records requests and answers from a
// handler, and a manual clock. Kept out of test/ because `node --test test/` runs every file
// there as a test file.

import { gunzipSync } from 'node:zlib';
import { Client } from '../src/index.js';

/** Decode a recorded request body: gunzip when compressed, then JSON. */
export function decodeBody(body, headers = {}) {
  if (body === undefined || body === null) return undefined;
  let text;
  if (typeof body === 'string') text = body;
  else if (headers['content-encoding'] === 'gzip') text = gunzipSync(body).toString('utf8');
  else text = Buffer.from(body).toString('utf8');
  return JSON.parse(text);
}

/**
 * A transport whose answers come from `handler(request, index)`: return
 * `{status, headers, body}`, or an Error (or throw) for a network failure, or a Promise.
 */
export class FakeTransport {
  constructor(handler = okBatch) {
    this.handler = handler;
    this.requests = [];
  }

  async request(req) {
    const u = new URL(req.url);
    const rec = {
      method: req.method,
      url: req.url,
      path: u.pathname,
      query: Object.fromEntries(u.searchParams),
      headers: req.headers,
      rawBody: req.body,
      json: decodeBody(req.body, req.headers),
    };
    this.requests.push(rec);
    const out = await this.handler(rec, this.requests.length - 1);
    if (out instanceof Error) throw out;
    const headers = {};
    for (const [k, v] of Object.entries(out.headers ?? {})) headers[k.toLowerCase()] = String(v);
    return { status: out.status ?? 200, headers, body: out.body ?? null };
  }

  /** The batch requests (POST /batch/events and /ingest/batch) only. */
  get batches() {
    return this.requests.filter((r) => r.method === 'POST' && (r.path === '/batch/events' || r.path === '/ingest/batch'));
  }
}

/** The items of a batch request, whichever route. */
export function itemsOf(rec) {
  return rec.json?.items ?? rec.json?.events ?? [];
}

/** The id of an item, whichever shape. */
export function idOf(item) {
  return item.id ?? item.event_id;
}

/**
 * A bulk answer: `statusOf(item, index)` gives each item's status (default 201);
 * 4xx/5xx get an error object like the server's.
 */
export function bulkAnswer(rec, statusOf = () => 201, extra = {}) {
  const items = itemsOf(rec);
  const results = items.map((item, index) => {
    const status = statusOf(item, index);
    const r = { index, status };
    if (status < 300) {
      r.id = idOf(item);
      if (status === 200) r.duplicate = true;
    } else {
      const code = status === 503 ? 'RETRY_LATER' : status === 409 ? 'ID_CONFLICT' : 'VALIDATION_FAILED';
      r.error = { code, message: `${code} for item ${index}`, details: status === 503 ? { retryable: true } : { field: 'data' } };
      if (status === 503) r.id = idOf(item);
    }
    return r;
  });
  const succeeded = results.filter((r) => r.status < 300).length;
  return { status: 200, headers: extra.headers ?? {}, body: { succeeded, failed: results.length - succeeded, results } };
}

/** The default handler: every item of every batch is written (201). */
export function okBatch(rec) {
  if (rec.method === 'POST' && (rec.path === '/batch/events' || rec.path === '/ingest/batch')) return bulkAnswer(rec);
  return errorAnswer(404, 'ROUTE_NOT_FOUND', 'no such route');
}

export function errorAnswer(status, code, message = code, details = {}, headers = {}) {
  return { status, headers, body: { error: { code, message, details } } };
}

/**
 * A manual clock: now() moves only through advance() and sleep(); sleep() records the wait and
 * returns at once (moving time forward), so backoff of minutes takes no real time.
 */
export class FakeClock {
  constructor(start = Date.parse('2026-03-01T12:00:00.000Z')) {
    this.t = start;
    this.timers = [];
    this.sleeps = [];
    this.now = () => this.t;
    this.setTimeout = (fn, ms) => {
      const h = { at: this.t + Math.max(0, ms), fn };
      this.timers.push(h);
      return h;
    };
    this.clearTimeout = (h) => {
      this.timers = this.timers.filter((x) => x !== h);
    };
    this.sleep = async (ms) => {
      this.sleeps.push(ms);
      this.advance(ms);
    };
  }

  /** Move time forward, firing the timers that fall due, in order. */
  advance(ms) {
    const until = this.t + ms;
    for (;;) {
      const due = this.timers.filter((h) => h.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((h) => h !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = until;
  }
}

/** Let pending promise callbacks and I/O callbacks run. */
export function tick(n = 3) {
  let p = Promise.resolve();
  for (let i = 0; i < n; i++) p = p.then(() => new Promise((r) => setImmediate(r)));
  return p;
}

/** Wait (really, briefly) until cond() holds; fails after timeoutMs. */
export async function waitFor(cond, timeoutMs = 2000) {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms: ${cond}`);
    await new Promise((r) => setImmediate(r));
  }
}

/**
 * A client wired to a FakeTransport and a FakeClock, with jitter fixed (random() = 1: every
 * backoff is its ceiling), no GET /limits and no beforeExit hook unless asked.
 */
export function makeClient(handler, options = {}) {
  const transport = options.transport ?? new FakeTransport(handler);
  const clock = options.clock ?? new FakeClock();
  const errors = [];
  const drops = [];
  const client = new Client({
    baseUrl: 'http://argus.test',
    apiKey: 'argus_test_key',
    fetchLimits: false,
    flushOnExit: false,
    random: () => 1,
    onError: (err, item) => errors.push({ err, item }),
    onDrop: (item, reason) => drops.push({ item, reason }),
    ...options,
    transport,
    clock,
  });
  return { client, transport, clock, errors, drops };
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const SESSION = '0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b';

/** n Argus events for track(). */
export function events(n, extra = {}) {
  return Array.from({ length: n }, (_, i) => ({ sessionId: SESSION, category: 'test', name: 'e', data: { i }, ...extra }));
}
