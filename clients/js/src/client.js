// The Argus client: synchronous calls (sessions, events, queries) that return or throw, and
// the background ingestion surface (track, ingest.sendEvent) that never blocks or throws.

import { Batcher, backoffDelay, DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEMS } from './batcher.js';
import { ArgusError, errorFromResponse, networkError } from './errors.js';
import { FetchTransport } from './transport.js';
import { gzip, holdOpen, makeClock, toTimestamp, uuid } from './util.js';

export const VERSION = '0.1.0';

const DEFAULTS = {
  maxBatchSize: 500,
  flushIntervalMs: 5_000,
  maxQueueSize: 10_000,
  maxAttempts: 8,
  backoffBaseMs: 500,
  backoffMaxMs: 30_000,
  requestMaxAttempts: 3,
  timeoutMs: 30_000,
  gzip: true,
  fetchLimits: true,
  validateOnly: false,
  flushOnExit: true,
  sendSentAt: true,
};

function env(name) {
  return typeof process !== 'undefined' && process.env ? process.env[name] : undefined;
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** camelCase parameters to the API's names; unknown keys pass through as given. */
function mapKeys(params, names) {
  const out = {};
  if (!isObject(params)) return out;
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null) continue;
    out[names[k] ?? k] = v instanceof Date ? v.toISOString() : v;
  }
  return out;
}

const EVENT_LIST_PARAMS = {
  sessionId: 'session',
  timestampGte: 'timestamp__gte',
  timestampLte: 'timestamp__lte',
  includeDeleted: 'include_deleted',
};
const QUERY_EVENTS_PARAMS = { streamId: 'stream_id', startTime: 'start_time', endTime: 'end_time', eventType: 'event_type' };

function num(v) {
  if (v === undefined || v === null || v === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

export class Client {
  #apiKey;
  #bearerToken;
  #transport;
  #clock;
  #random;
  #gzip;
  #validateOnly;
  #requestMaxAttempts;
  #backoff;
  #batcher;

  /**
   * @param {import('../index.js').ClientOptions} [options]
   */
  constructor(options = {}) {
    const o = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
    const baseUrl = o.baseUrl ?? env('ARGUS_URL');
    if (!baseUrl) throw new ArgusError({ code: 'INVALID_ARGUMENT', message: 'no base URL: pass { baseUrl } or set ARGUS_URL' });
    this.baseUrl = String(baseUrl).replace(/\/+$/, '');
    this.#apiKey = o.apiKey ?? (o.bearerToken ? undefined : env('ARGUS_API_KEY'));
    this.#bearerToken = o.bearerToken;
    if (!this.#apiKey && !this.#bearerToken) {
      throw new ArgusError({ code: 'INVALID_ARGUMENT', message: 'no credentials: pass { apiKey } (or { bearerToken }) or set ARGUS_API_KEY' });
    }
    const minimum = { maxBatchSize: 1, maxQueueSize: 1, maxAttempts: 1, requestMaxAttempts: 1, maxBatchBytes: 1, flushIntervalMs: 0, backoffBaseMs: 0, backoffMaxMs: 0, timeoutMs: 0 };
    for (const [k, min] of Object.entries(minimum)) {
      if (k === 'maxBatchBytes' && o[k] === undefined) continue;
      if (typeof o[k] !== 'number' || !Number.isFinite(o[k]) || o[k] < min) {
        throw new ArgusError({ code: 'INVALID_ARGUMENT', message: `${k} must be a number of at least ${min}, got ${o[k]}` });
      }
    }
    this.#transport = o.transport ?? new FetchTransport({ fetch: o.fetch, timeoutMs: o.timeoutMs });
    this.#clock = makeClock(o.clock);
    this.#random = o.random ?? Math.random;
    this.#gzip = o.gzip !== false;
    this.#validateOnly = o.validateOnly === true;
    this.#requestMaxAttempts = o.requestMaxAttempts;
    this.#backoff = { baseMs: o.backoffBaseMs, maxMs: o.backoffMaxMs };
    /** The rate-limit headers of the latest answer (null until one carried them). */
    this.rateLimit = null;

    this.#batcher = new Batcher({
      post: (req) => this.#postBatch(req),
      loadLimits: o.fetchLimits ? () => this.#loadLimits() : null,
      clock: this.#clock,
      random: this.#random,
      maxBatchSize: Math.min(o.maxBatchSize, DEFAULT_MAX_ITEMS),
      maxBatchBytes: Math.min(o.maxBatchBytes ?? DEFAULT_MAX_BYTES, DEFAULT_MAX_BYTES),
      flushIntervalMs: o.flushIntervalMs,
      maxQueueSize: o.maxQueueSize,
      maxAttempts: o.maxAttempts,
      backoffBaseMs: o.backoffBaseMs,
      backoffMaxMs: o.backoffMaxMs,
      onError: o.onError,
      onDrop: o.onDrop,
      flushOnExit: o.flushOnExit,
      sendSentAt: o.sendSentAt,
    });

    const client = this;
    this.sessions = Object.freeze({
      /** POST /sessions → {id, created_at, metadata?}. Retried safely with an Idempotency-Key. */
      create: (opts = {}) => client.#call('POST', '/sessions', { body: opts.metadata === undefined ? {} : { metadata: opts.metadata }, idempotencyKey: uuid() }),
      get: (id) => client.#call('GET', `/sessions/${encodeURIComponent(id)}`),
      list: (params = {}) => client.#call('GET', '/sessions', { query: mapKeys(params, {}) }),
      iterate: (params = {}) => client.#iterate('/sessions', mapKeys(params, {}), 'items'),
    });
    this.events = Object.freeze({
      get: (id, opts = {}) => client.#call('GET', `/events/${encodeURIComponent(id)}`, { query: mapKeys(opts, EVENT_LIST_PARAMS) }),
      list: (params = {}) => client.#call('GET', '/events', { query: mapKeys(params, EVENT_LIST_PARAMS) }),
      iterate: (params = {}) => client.#iterate('/events', mapKeys(params, EVENT_LIST_PARAMS), 'items'),
    });
    this.ingest = Object.freeze({
      sendEvent: (event) => client.#sendEvent(event),
    });
    this.query = Object.freeze({
      events: (params = {}) => client.#call('GET', '/query/events', { query: mapKeys(params, QUERY_EVENTS_PARAMS) }),
      iterateEvents: (params = {}) => client.#iterate('/query/events', mapKeys(params, QUERY_EVENTS_PARAMS), 'events'),
      aggregate: (request) => client.#call('POST', '/query/aggregate', { body: aggregateBody(request), retrySafe: true }),
    });
    this.streams = Object.freeze({
      status: (id) => client.#call('GET', `/streams/${encodeURIComponent(id)}/status`),
    });
  }

  // ---- background ingestion -------------------------------------------------------------------

  /**
   * Queue one Argus event for `POST /batch/events`. Never throws and never waits.
   * @returns {string|null} the event's id, or null when it was dropped
   */
  track(event) {
    try {
      if (!isObject(event)) {
        return this.#reject(event, 'track() takes one object: {sessionId, category, name, data, ...}');
      }
      const id = event.id ?? uuid();
      const item = { id, session_id: event.sessionId ?? null, category: event.category, name: event.name };
      if (event.stream !== undefined && event.stream !== null) item.stream = event.stream;
      item.data = event.data === undefined ? {} : event.data;
      item.timestamp = toTimestamp(event.timestamp ?? this.#clock.now());
      if (event.metadata !== undefined && event.metadata !== null) item.metadata = event.metadata;
      return this.#batcher.enqueue('events', null, id, item);
    } catch (cause) {
      return this.#reject(event, `track() failed: ${cause?.message ?? cause}`);
    }
  }

  #sendEvent(event) {
    try {
      if (!isObject(event)) {
        return this.#reject(event, 'ingest.sendEvent() takes one object: {streamId, eventType, data, ...}');
      }
      if (typeof event.streamId !== 'string' || event.streamId === '') {
        return this.#reject(event, 'ingest.sendEvent(): streamId is required (a string)');
      }
      const id = event.eventId ?? uuid();
      // event_id is always sent (retries are idempotent), so timestamp is required: default now.
      const item = { event_id: id, event_type: event.eventType, timestamp: toTimestamp(event.timestamp ?? this.#clock.now()) };
      item.data = event.data === undefined ? {} : event.data;
      if (event.metadata !== undefined && event.metadata !== null) item.metadata = event.metadata;
      if (event.sessionId !== undefined && event.sessionId !== null) item.session_id = event.sessionId;
      if (event.category !== undefined && event.category !== null) item.category = event.category;
      return this.#batcher.enqueue(`ingest:${event.streamId}`, event.streamId, id, item);
    } catch (cause) {
      return this.#reject(event, `ingest.sendEvent() failed: ${cause?.message ?? cause}`);
    }
  }

  #reject(event, message) {
    try {
      this.#batcher._fail(null, event, new ArgusError({ code: 'INVALID_ARGUMENT', message }));
    } catch {
      // never throw from track
    }
    return null;
  }

  /**
   * Send everything queued now and wait for it (stored or failed for good).
   * @param {{timeoutMs?: number}} [opts]
   */
  flush(opts) {
    return this.#batcher.flush(opts);
  }

  /** Flush, then stop: the timer is cleared and later track() calls are dropped ('shutdown'). */
  shutdown(opts) {
    return this.#batcher.shutdown(opts);
  }

  /** Counters since the client was created, and what is queued now. */
  get stats() {
    return this.#batcher.snapshot();
  }

  // ---- synchronous calls ----------------------------------------------------------------------

  /** GET /limits: the server's request, bulk and rate limits. */
  limits() {
    return this.#call('GET', '/limits');
  }

  /**
   * Any route: resolves with the parsed body of a 2xx answer, throws ArgusError otherwise.
   * @param {string} method
   * @param {string} path e.g. '/streams/web'
   * @param {{query?: object, body?: unknown, headers?: Record<string,string>}} [opts]
   */
  request(method, path, opts = {}) {
    const m = String(method).toUpperCase();
    return this.#call(m, path, { query: opts.query, body: opts.body, headers: opts.headers, retrySafe: m === 'GET' });
  }

  async *#iterate(path, query, field) {
    let cursor = query.cursor;
    const q = { ...query };
    for (;;) {
      if (cursor) q.cursor = cursor;
      const page = await this.#call('GET', path, { query: q });
      for (const item of page?.[field] ?? []) yield item;
      cursor = page?.next_cursor;
      if (!cursor) return;
      delete q.offset; // offset and cursor together are 400
    }
  }

  async #call(method, path, { query, body, headers = {}, idempotencyKey, retrySafe = method === 'GET' || idempotencyKey !== undefined } = {}) {
    const maxAttempts = retrySafe ? this.#requestMaxAttempts : 1;
    const h = { ...headers };
    if (idempotencyKey) h['idempotency-key'] = idempotencyKey;
    const bodyText = body === undefined ? undefined : JSON.stringify(body);
    for (let attempt = 1; ; attempt++) {
      let err;
      try {
        const res = await this.#http({ method, path, query, bodyText, headers: h, compress: false });
        if (res.status >= 200 && res.status < 300) return res.body;
        err = errorFromResponse(res, this.#clock.now());
        // A keyed request still running elsewhere answers 409 with Retry-After: wait for it.
        if (res.status === 409 && err.code === 'IDEMPOTENCY_IN_PROGRESS') err.retryable = true;
      } catch (cause) {
        err = cause instanceof ArgusError ? cause : networkError(cause);
      }
      if (!err.retryable || attempt >= maxAttempts) {
        err.attempts = attempt;
        throw err;
      }
      // The caller awaits this call: hold the process open through the (unref'd) backoff.
      await holdOpen(this.#clock.sleep(backoffDelay(attempt, { baseMs: this.#backoff.baseMs, maxMs: this.#backoff.maxMs, random: this.#random, retryAfterMs: err.retryAfterMs })));
    }
  }

  async #loadLimits() {
    const limits = await this.#call('GET', '/limits', { retrySafe: false });
    const bulk = limits?.bulk ?? {};
    const req = limits?.request ?? {};
    const encodings = req.content_encodings;
    if (Array.isArray(encodings) && !encodings.includes('gzip')) this.#gzip = false;
    const byteCaps = [bulk.max_bytes, req.max_decompressed_bytes].filter((n) => Number.isFinite(n) && n > 0);
    return { maxItems: bulk.max_items, maxBytes: byteCaps.length ? Math.min(...byteCaps) : undefined };
  }

  async #postBatch({ path, bodyText }) {
    const query = this.#validateOnly ? { validate_only: 'true' } : undefined;
    const compress = this.#gzip;
    const res = await this.#http({ method: 'POST', path, query, bodyText, headers: {}, compress });
    if (res.status === 415 && compress) {
      // A server that does not take gzip: send uncompressed from now on.
      this.#gzip = false;
      return this.#http({ method: 'POST', path, query, bodyText, headers: {}, compress: false });
    }
    return res;
  }

  async #http({ method, path, query, bodyText, headers, compress }) {
    let url = this.baseUrl + path;
    if (query && Object.keys(query).length > 0) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) qs.append(k, String(v));
      url += `?${qs}`;
    }
    const h = { accept: 'application/json', ...headers };
    if (this.#apiKey) h['x-api-key'] = this.#apiKey;
    else h.authorization = `Bearer ${this.#bearerToken}`;
    let body = bodyText;
    if (bodyText !== undefined) {
      h['content-type'] = 'application/json';
      if (compress) {
        const gz = await gzip(bodyText);
        if (gz) {
          body = gz;
          h['content-encoding'] = 'gzip';
        }
      }
    }
    const res = await this.#transport.request({ method, url, headers: h, body });
    this.#noteRateLimit(res.headers || {});
    return res;
  }

  #noteRateLimit(h) {
    if (h['ratelimit-limit'] === undefined && h['argus-events-limit'] === undefined) return;
    this.rateLimit = {
      limit: num(h['ratelimit-limit']),
      remaining: num(h['ratelimit-remaining']),
      resetSeconds: num(h['ratelimit-reset']),
      eventsLimit: num(h['argus-events-limit']),
      eventsRemaining: num(h['argus-events-remaining']),
    };
  }
}

/** POST /query/aggregate's body from camelCase (snake_case keys pass through). */
function aggregateBody(r) {
  if (!isObject(r)) return r;
  const out = {};
  for (const [k, v] of Object.entries(r)) {
    if (v === undefined) continue;
    if (k === 'streamId') out.stream_id = v;
    else if (k === 'groupBy') out.group_by = v;
    else if (k === 'timeWindow' || k === 'time_window') out.time_window = mapKeys(v, {});
    else out[k] = v;
  }
  return out;
}
