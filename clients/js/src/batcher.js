// The background sender: a bounded in-memory queue, a flush timer, and the retry policy.
//
// One worker sends one request at a time, oldest events first. A batch is sent when
// `maxBatchSize` events are queued, when the oldest queued event is `flushIntervalMs` old,
// or when flush()/shutdown() asks. Events keep the id they got at enqueue time and the JSON
// they were serialised to then, so every retry resends exactly the same items (idempotent);
// only `sent_at` changes, set at each attempt.

import { ArgusError, errorFromResponse, networkError, parseRetryAfter } from './errors.js';
import { holdOpen, safeCall, utf8Length } from './util.js';

/** Server defaults, used until (or unless) GET /limits answers. */
export const DEFAULT_MAX_ITEMS = 10_000;
export const DEFAULT_MAX_BYTES = 5 * 1024 * 1024;

const GROUP_EVENTS = 'events';

/**
 * @typedef {object} Entry
 * @property {number} seq        enqueue order (flush() waits for every seq up to its own)
 * @property {string} group      'events' or 'ingest:<stream_id>'
 * @property {string|null} stream
 * @property {string} id
 * @property {string} json       the item, serialised once at enqueue time
 * @property {number} bytes
 * @property {number} enqueuedAt clock ms
 */

/** Full-jitter exponential backoff: random in [0, min(cap, base * 2^(retry-1))], at least Retry-After. */
export function backoffDelay(retry, { baseMs, maxMs, random, retryAfterMs }) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
  let delay = random() * ceiling;
  if (retryAfterMs != null && retryAfterMs > delay) delay = retryAfterMs;
  return Math.round(delay);
}

// Live batchers, for the beforeExit flush (one process listener for all of them).
const live = new Set();
let exitHookInstalled = false;
function installExitHook() {
  if (exitHookInstalled) return;
  if (typeof process === 'undefined' || typeof process.on !== 'function') return;
  exitHookInstalled = true;
  process.on('beforeExit', () => {
    for (const ref of live) {
      const b = ref.deref();
      if (!b) live.delete(ref);
      else b._flushOnExit();
    }
  });
}

export class Batcher {
  /**
   * @param {object} o
   * @param {(req: {path: string, bodyText: string}) => Promise<{status:number, headers:object, body:any}>} o.post
   *   sends one batch request (gzip, auth and validate_only are the client's); rejects on network errors
   * @param {() => Promise<{maxItems?: number, maxBytes?: number} | null>} [o.loadLimits]
   * @param {{now(): number, sleep(ms:number): Promise<void>, setTimeout: Function, clearTimeout: Function}} o.clock
   * @param {() => number} o.random
   */
  constructor(o) {
    this._post = o.post;
    this._loadLimits = o.loadLimits ?? null;
    this._limitsReady = null;
    this.clock = o.clock;
    this.random = o.random;
    this.maxBatchSize = o.maxBatchSize;
    this.maxBatchBytes = o.maxBatchBytes ?? DEFAULT_MAX_BYTES;
    this.flushIntervalMs = o.flushIntervalMs;
    this.maxQueueSize = o.maxQueueSize;
    this.maxAttempts = Math.max(1, o.maxAttempts);
    this.backoffBaseMs = o.backoffBaseMs;
    this.backoffMaxMs = o.backoffMaxMs;
    this.sendSentAt = o.sendSentAt !== false;
    this.onError = o.onError;
    this.onDrop = o.onDrop;

    /** @type {Entry[]} */
    this._queue = [];
    this._queuedBytes = 0;
    /** @type {Set<Entry>} */
    this._inFlight = new Set();
    this._seq = 0;
    this._running = false;
    this._timer = null;
    this._timerAt = 0;
    this._closed = false;
    this._waiters = [];
    this._flushTarget = 0;
    this._exitFlushing = false;

    this.stats = { sent: 0, duplicates: 0, failed: 0, dropped: 0, retries: 0, requests: 0, lastError: null };

    if (o.flushOnExit) {
      this._ref = new WeakRef(this);
      live.add(this._ref);
      installExitHook();
    }
  }

  /** Events held in memory: queued plus being sent. */
  get size() {
    return this._queue.length + this._inFlight.size;
  }

  get closed() {
    return this._closed;
  }

  snapshot() {
    const { lastError, ...counts } = this.stats;
    return { ...counts, queued: this._queue.length, inFlight: this._inFlight.size, lastError };
  }

  /**
   * Queue one item. Never throws, never waits. Returns the id, or null when the item was
   * dropped (queue full, shut down) or could not be serialised (reported to onError).
   * @param {string} group
   * @param {string|null} stream
   * @param {string} id
   * @param {object} item
   */
  enqueue(group, stream, id, item) {
    if (this._closed) return this._drop(item, 'shutdown');
    if (this.size >= this.maxQueueSize) return this._drop(item, 'queue_full');
    let json;
    try {
      json = JSON.stringify(item);
    } catch (cause) {
      this._fail(null, item, new ArgusError({ code: 'INVALID_ARGUMENT', message: `event cannot be serialised to JSON: ${cause.message}`, cause }));
      return null;
    }
    const entry = { seq: ++this._seq, group, stream, id, json, bytes: utf8Length(json), enqueuedAt: this.clock.now() };
    this._queue.push(entry);
    this._queuedBytes += entry.bytes + 1;
    if (this._queue.length >= this.maxBatchSize || this._queuedBytes >= this.maxBatchBytes) this._kick();
    else this._armTimer();
    return id;
  }

  _drop(item, reason) {
    this.stats.dropped++;
    safeCall(this.onDrop, item, reason);
    return null;
  }

  // ---- worker -------------------------------------------------------------------------------

  _kick() {
    if (this._running) return;
    this._running = true;
    this._run().then(
      () => {},
      () => {},
    );
  }

  _due() {
    if (this._queue.length === 0) return false;
    if (this._closed || this._queue.length >= this.maxBatchSize || this._queuedBytes >= this.maxBatchBytes) return true;
    const oldest = this._queue[0];
    if (oldest.seq <= this._flushTarget) return true;
    return this.clock.now() - oldest.enqueuedAt >= this.flushIntervalMs;
  }

  async _run() {
    try {
      if (this._loadLimits && !this._limitsReady) this._limitsReady = this._applyLimits();
      if (this._limitsReady) await this._limitsReady;
      while (this._due()) {
        const batch = this._take();
        if (batch.entries.length === 0) continue;
        await this._deliver(batch.group, batch.stream, batch.entries, 1);
        this._checkWaiters();
      }
    } catch (err) {
      // A bug in the worker must not lose events silently: fail what it held.
      const e = err instanceof ArgusError ? err : new ArgusError({ code: 'SDK_ERROR', message: String(err?.message ?? err), cause: err });
      for (const entry of [...this._inFlight]) this._fail(entry, null, e);
    } finally {
      this._running = false;
      this._checkWaiters();
      if (this._due()) this._kick();
      else this._armTimer();
    }
  }

  async _applyLimits() {
    let limits = null;
    try {
      limits = await this._loadLimits();
    } catch {
      limits = null;
    }
    if (!limits) return;
    if (Number.isFinite(limits.maxItems) && limits.maxItems > 0) this.maxBatchSize = Math.min(this.maxBatchSize, limits.maxItems);
    if (Number.isFinite(limits.maxBytes) && limits.maxBytes > 0) this.maxBatchBytes = Math.min(this.maxBatchBytes, limits.maxBytes);
  }

  /** Bytes of a request body around its items (sent_at is always 24 characters). */
  _envelopeBytes(group, stream) {
    return utf8Length(this._body(group, stream, [], '2026-01-01T00:00:00.000Z').bodyText);
  }

  /** Take the oldest event's group: up to maxBatchSize of its events, within maxBatchBytes. */
  _take() {
    const first = this._queue[0];
    const { group, stream } = first;
    const envelope = this._envelopeBytes(group, stream);
    const entries = [];
    const rest = [];
    let bytes = envelope;
    for (const e of this._queue) {
      if (e.group === group && entries.length < this.maxBatchSize && (entries.length === 0 || bytes + e.bytes + 1 <= this.maxBatchBytes)) {
        entries.push(e);
        bytes += e.bytes + 1;
      } else {
        rest.push(e);
      }
    }
    this._queue = rest;
    this._queuedBytes = rest.reduce((n, e) => n + e.bytes + 1, 0);
    for (const e of entries) this._inFlight.add(e);
    // One event too large for any request: fail it now, never send it.
    if (entries.length === 1 && envelope + entries[0].bytes > this.maxBatchBytes) {
      this._fail(entries[0], null, new ArgusError({
        status: 413,
        code: 'PAYLOAD_TOO_LARGE',
        message: `event of ${entries[0].bytes} bytes exceeds the request limit of ${this.maxBatchBytes} bytes`,
        details: { max_bytes: this.maxBatchBytes, bytes: entries[0].bytes },
      }));
      return { group, stream, entries: [] };
    }
    return { group, stream, entries };
  }

  _body(group, stream, entries, sentAt = new Date(this.clock.now()).toISOString()) {
    const items = entries.map((e) => e.json).join(',');
    const clock = this.sendSentAt ? `"sent_at":"${sentAt}",` : '';
    if (group === GROUP_EVENTS) return { path: '/batch/events', bodyText: `{"mode":"partial",${clock}"items":[${items}]}` };
    return { path: '/ingest/batch', bodyText: `{"stream_id":${JSON.stringify(stream)},${clock}"events":[${items}]}` };
  }

  /**
   * Send entries until each one is stored or has failed for good.
   * @param {number} attempt the attempt number of the first send here (splits keep theirs)
   */
  async _deliver(group, stream, entries, attempt) {
    let pending = entries;
    let wait = false;
    let retryAfterMs = null;
    /** @type {Map<Entry, ArgusError>} per-item errors of the last answer, for exhausted retries */
    let itemErrors = new Map();
    while (pending.length > 0) {
      if (wait) {
        this.stats.retries++;
        await this.clock.sleep(backoffDelay(attempt - 1, { baseMs: this.backoffBaseMs, maxMs: this.backoffMaxMs, random: this.random, retryAfterMs }));
      }
      wait = true;
      retryAfterMs = null;
      const { path, bodyText } = this._body(group, stream, pending);
      let res;
      this.stats.requests++;
      try {
        res = await this._post({ path, bodyText });
      } catch (cause) {
        const err = cause instanceof ArgusError ? cause : networkError(cause);
        if (attempt >= this.maxAttempts) return this._failAll(pending, err, attempt);
        attempt++;
        continue;
      }

      if (res.status >= 200 && res.status < 300) {
        const results = res.body && Array.isArray(res.body.results) ? res.body.results : null;
        if (!results) {
          // An answer without per-item results (cannot happen in partial mode): all stored.
          for (const e of pending) this._ok(e, false);
          return;
        }
        const byIndex = new Map();
        for (const r of results) if (r && Number.isInteger(r.index)) byIndex.set(r.index, r);
        const retry = [];
        itemErrors = new Map();
        pending.forEach((entry, i) => {
          const r = byIndex.get(i);
          if (!r) {
            // No result for this index: resend it (same id, so at worst a duplicate answer).
            retry.push(entry);
            itemErrors.set(entry, new ArgusError({ status: res.status, code: 'MISSING_RESULT', message: `no result for item ${i}`, retryable: true }));
          } else if (r.status === 200 || r.status === 201 || r.status === 204) {
            this._ok(entry, r.duplicate === true);
          } else {
            const err = itemError(r);
            if (err.retryable) {
              retry.push(entry);
              itemErrors.set(entry, err);
            } else {
              this._fail(entry, null, err, attempt);
            }
          }
        });
        this._checkWaiters();
        if (retry.length === 0) return;
        if (attempt >= this.maxAttempts) {
          for (const e of retry) this._fail(e, null, itemErrors.get(e), attempt);
          return;
        }
        retryAfterMs = parseRetryAfter(res.headers?.['retry-after'], this.clock.now());
        pending = retry;
        attempt++;
        continue;
      }

      const err = errorFromResponse(res, this.clock.now());
      if (res.status === 413 && pending.length > 1) {
        // Too many items or bytes for the server: learn its limits if it said them, then
        // send each half (same ids, same attempt count).
        const d = err.details || {};
        if (Number.isInteger(d.max_items) && d.max_items > 0) this.maxBatchSize = Math.min(this.maxBatchSize, d.max_items);
        if (Number.isInteger(d.max_bytes) && d.max_bytes > 0) this.maxBatchBytes = Math.min(this.maxBatchBytes, d.max_bytes);
        const mid = Math.ceil(pending.length / 2);
        await this._deliver(group, stream, pending.slice(0, mid), attempt);
        await this._deliver(group, stream, pending.slice(mid), attempt);
        return;
      }
      if (err.retryable && attempt < this.maxAttempts) {
        retryAfterMs = err.retryAfterMs;
        attempt++;
        continue;
      }
      return this._failAll(pending, err, attempt);
    }
  }

  _ok(entry, duplicate) {
    if (!this._inFlight.delete(entry)) return;
    this.stats.sent++;
    if (duplicate) this.stats.duplicates++;
  }

  _failAll(entries, err, attempt) {
    for (const e of entries) this._fail(e, null, err, attempt);
  }

  /** Report a permanent failure: count it and call onError(error, item). */
  _fail(entry, item, err, attempt = 0) {
    if (entry && !this._inFlight.delete(entry)) return;
    this.stats.failed++;
    err.attempts = attempt;
    this.stats.lastError = err;
    if (typeof this.onError === 'function') {
      let it = item;
      if (entry) {
        try {
          it = JSON.parse(entry.json);
        } catch {
          it = entry.json;
        }
      }
      safeCall(this.onError, err, it);
    }
  }

  // ---- timer ----------------------------------------------------------------------------------

  _armTimer() {
    if (this._queue.length === 0) {
      this._clearTimer();
      return;
    }
    if (this._running) return; // the worker re-arms when it stops
    const at = this._queue[0].enqueuedAt + this.flushIntervalMs;
    if (this._timer !== null && this._timerAt === at) return;
    this._clearTimer();
    this._timerAt = at;
    this._timer = this.clock.setTimeout(() => {
      this._timer = null;
      this._kick();
    }, Math.max(0, at - this.clock.now()));
  }

  _clearTimer() {
    if (this._timer !== null) this.clock.clearTimeout(this._timer);
    this._timer = null;
  }

  // ---- flush / shutdown -----------------------------------------------------------------------

  /** True when no event with seq <= target is queued or in flight. */
  _settledThrough(target) {
    if (this._queue.length > 0 && this._queue[0].seq <= target) return false;
    for (const e of this._inFlight) if (e.seq <= target) return false;
    return true;
  }

  _checkWaiters() {
    if (this._waiters.length === 0) return;
    const still = [];
    for (const w of this._waiters) {
      if (this._settledThrough(w.target)) w.done(false);
      else still.push(w);
    }
    this._waiters = still;
    this._flushTarget = still.reduce((m, w) => Math.max(m, w.target), 0);
  }

  /**
   * Resolve when every event queued before this call is stored or has failed for good,
   * or when timeoutMs passes (then `timedOut` is true and the events stay queued).
   * @param {{ timeoutMs?: number }} [opts]
   */
  flush({ timeoutMs } = {}) {
    const target = this._seq;
    if (this._settledThrough(target)) return Promise.resolve({ ...this.snapshot(), timedOut: false });
    // While someone awaits a flush, keep the process alive (the SDK's own timers are unref'd).
    return holdOpen(new Promise((resolve) => {
      let timeout = null;
      const waiter = {
        target,
        done: (timedOut) => {
          if (waiter.finished) return;
          waiter.finished = true;
          if (timeout !== null) this.clock.clearTimeout(timeout);
          resolve({ ...this.snapshot(), timedOut });
        },
      };
      this._waiters.push(waiter);
      this._flushTarget = Math.max(this._flushTarget, target);
      if (timeoutMs != null && timeoutMs >= 0) {
        timeout = this.clock.setTimeout(() => {
          this._waiters = this._waiters.filter((w) => w !== waiter);
          this._flushTarget = this._waiters.reduce((m, w) => Math.max(m, w.target), 0);
          waiter.done(true);
        }, timeoutMs);
      }
      this._kick();
    }));
  }

  /** Stop taking events (later ones are dropped with reason 'shutdown'), flush, stop the timer. */
  async shutdown(opts = {}) {
    this._closed = true;
    if (this._ref) live.delete(this._ref);
    const result = await this.flush(opts);
    this._clearTimer();
    return result;
  }

  _flushOnExit() {
    if (this._exitFlushing || this.size === 0) return;
    this._exitFlushing = true;
    this.flush().then(() => {
      this._exitFlushing = false;
    });
  }
}

/** The ArgusError of one per-item result of a bulk answer. */
export function itemError(r) {
  const e = r.error && typeof r.error === 'object' ? r.error : {};
  const details = e.details && typeof e.details === 'object' ? e.details : {};
  const retryable = r.status === 503 || (r.status >= 500 && details.retryable === true) || e.code === 'RETRY_LATER';
  return new ArgusError({
    status: r.status,
    code: String(e.code || `HTTP_${r.status}`),
    message: String(e.message || `item failed with status ${r.status}`),
    details,
    retryable,
  });
}
