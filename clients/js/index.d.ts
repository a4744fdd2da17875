// Type declarations for @argus/sdk (hand-written; the implementation is plain ES modules in src/).

export declare const VERSION: string;

/** JSON values as the API takes and returns them. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** An RFC 3339 string, a Date, or epoch milliseconds (sent as RFC 3339 UTC). */
export type TimestampInput = string | Date | number;

// ---- errors ------------------------------------------------------------------------------------

/**
 * The one error type: thrown by the plain calls, passed to `onError` for events that could not
 * be stored. `status` is the HTTP status (or an item's status in a bulk answer); 0 when no
 * answer came back. `code` is Argus's code (`VALIDATION_FAILED`, `ID_CONFLICT`, `RETRY_LATER`,
 * `RATE_LIMITED`, `NOT_FOUND`, ...) or the SDK's own: `NETWORK_ERROR`, `TIMEOUT`,
 * `INVALID_ARGUMENT`, `PAYLOAD_TOO_LARGE`, `HTTP_ERROR` (an answer without Argus's envelope).
 */
export declare class ArgusError extends Error {
  readonly name: 'ArgusError';
  status: number;
  code: string;
  details: Record<string, any>;
  /** True for answers worth retrying (408, 429, 5xx, per-item 503, network errors). */
  retryable: boolean;
  /** The answer's Retry-After, in milliseconds. */
  retryAfterMs: number | null;
  /** The answer's headers (lower-case names). */
  headers: Record<string, string>;
  /** How many times the request was sent before this error was final. */
  attempts: number;
  constructor(init?: {
    status?: number;
    code?: string;
    message?: string;
    details?: Record<string, any>;
    retryable?: boolean;
    retryAfterMs?: number | null;
    headers?: Record<string, string>;
    cause?: unknown;
  });
  toJSON(): { name: string; status: number; code: string; message: string; details: Record<string, any> };
}

// ---- transport and clock -----------------------------------------------------------------------

export interface TransportRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  /** JSON text, or gzip bytes when `content-encoding: gzip`. */
  body: string | Uint8Array | undefined;
}

export interface TransportResponse {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string>;
  /** Parsed JSON; the text when not JSON; null when empty. */
  body: any;
}

/** What the client sends requests through. Resolve with any HTTP answer; reject only when none came. */
export interface Transport {
  request(req: TransportRequest): Promise<TransportResponse>;
}

/** The default transport, over global fetch. */
export declare class FetchTransport implements Transport {
  constructor(options?: { fetch?: typeof fetch; timeoutMs?: number });
  request(req: TransportRequest): Promise<TransportResponse>;
}

/** Injectable time, for tests: every member is optional. */
export interface Clock {
  now?(): number;
  sleep?(ms: number): Promise<void>;
  setTimeout?(fn: () => void, ms: number): unknown;
  clearTimeout?(handle: unknown): void;
}

// ---- options -----------------------------------------------------------------------------------

/** Why an event was dropped before it was queued. */
export type DropReason = 'queue_full' | 'shutdown';

/** An item as it is (or would have been) sent: `BatchEventItem` or `IngestEventItem`. */
export type QueuedItem = BatchEventItem | IngestEventItem;

export interface ClientOptions {
  /** Default: env ARGUS_URL. */
  baseUrl?: string;
  /** Sent as `x-api-key`. Default: env ARGUS_API_KEY. */
  apiKey?: string;
  /** Sent as `Authorization: Bearer ...` instead of an API key. */
  bearerToken?: string;

  /** Events per request; a batch is sent as soon as this many are queued. Default 500 (capped by the server's bulk.max_items). */
  maxBatchSize?: number;
  /** Bytes per request body (uncompressed). Default and cap: the server's bulk.max_bytes (5 MiB). */
  maxBatchBytes?: number;
  /** Send queued events once the oldest is this old. Default 5000. */
  flushIntervalMs?: number;
  /** Events held in memory (queued plus being sent); past it the NEW event is dropped. Default 10000. */
  maxQueueSize?: number;

  /** Sends of one batch (first try included) before its items fail. Default 8. */
  maxAttempts?: number;
  /** Backoff base: the ceiling of retry n is min(max, base * 2^(n-1)), the wait a random fraction of it (full jitter), at least Retry-After. Default 500. */
  backoffBaseMs?: number;
  /** Backoff cap. Default 30000. */
  backoffMaxMs?: number;
  /** Attempts of a plain call (GETs, aggregate, sessions.create with its Idempotency-Key). Default 3. */
  requestMaxAttempts?: number;
  /** Per-request timeout of the default transport. Default 30000. */
  timeoutMs?: number;

  /** Gzip batch bodies (Content-Encoding: gzip). Default true. */
  gzip?: boolean;
  /** Ask GET /limits once before the first batch, to size batches. Default true. */
  fetchLimits?: boolean;
  /** Send batches with `?validate_only=true`: same answers, nothing written. Default false. */
  validateOnly?: boolean;
  /**
   * Send `sent_at` (the client's clock at each attempt) so the server corrects event timestamps
   * for a wrong client clock. Turn off when importing history whose timestamps are right (the
   * correction would shift them by the network delay). Default true.
   */
  sendSentAt?: boolean;
  /** Node: flush queued events when the process is about to exit (`beforeExit`). Default true. */
  flushOnExit?: boolean;

  /**
   * An event that will never be stored: rejected by the server (400, 409), retries exhausted, or
   * invalid input. `item` is the item as it was sent (a `QueuedItem`), or for `INVALID_ARGUMENT`
   * the argument as it was given to track()/sendEvent().
   */
  onError?: (error: ArgusError, item: any) => void;
  /** An event dropped before it was queued (the queue was full, or the client was shut down). */
  onDrop?: (item: QueuedItem, reason: DropReason) => void;

  /** Replace the HTTP layer (tests, proxies). */
  transport?: Transport;
  /** The fetch the default transport uses. Default: global fetch. */
  fetch?: typeof fetch;
  /** Replace the clock (tests): timestamps, sent_at, timers and backoff sleeps. */
  clock?: Clock;
  /** Replace Math.random (the backoff's jitter). */
  random?: () => number;
}

// ---- events ------------------------------------------------------------------------------------

/** An Argus event for `track()` (sent through POST /batch/events). */
export interface TrackEvent {
  sessionId: string;
  category: string;
  name: string;
  /** A non-empty object. */
  data: JsonObject;
  /** Default: `default`. */
  stream?: string;
  /** Default: now (the client's clock; the server corrects it with `sent_at`). */
  timestamp?: TimestampInput;
  metadata?: JsonObject;
  /** Default: a new UUID v4, kept on every retry. */
  id?: string;
}

/** A DataStream-style event for `ingest.sendEvent()` (sent through POST /ingest/batch). */
export interface IngestEvent {
  streamId: string;
  eventType: string;
  /** A non-empty object. */
  data: JsonObject;
  /** Default: now. */
  timestamp?: TimestampInput;
  metadata?: JsonObject;
  /** Default: a new UUID v4, kept on every retry. */
  eventId?: string;
  sessionId?: string;
  category?: string;
}

/** An item of a POST /batch/events body. */
export interface BatchEventItem {
  id: string;
  session_id: string | null;
  category: string;
  name: string;
  stream?: string;
  data: JsonObject;
  timestamp: string;
  metadata?: JsonObject;
}

/** An item of a POST /ingest/batch body. */
export interface IngestEventItem {
  event_id: string;
  event_type: string;
  timestamp: string;
  data: JsonObject;
  metadata?: JsonObject;
  session_id?: string;
  category?: string;
}

/** Counters since the client was created, and what it holds now. */
export interface ClientStats {
  /** Events stored (written, or already stored with the same content). */
  sent: number;
  /** Of `sent`, the ones the server already had (a retry of a stored event). */
  duplicates: number;
  /** Events that will never be stored (each one went to onError). */
  failed: number;
  /** Events dropped before they were queued (each one went to onDrop). */
  dropped: number;
  /** Resends after a retryable answer. */
  retries: number;
  /** Batch requests sent. */
  requests: number;
  /** Waiting to be sent. */
  queued: number;
  /** In a request (or its backoff) now. */
  inFlight: number;
  lastError: ArgusError | null;
}

export interface FlushResult extends ClientStats {
  /** True when the timeout passed first: what is left stays queued and is still sent. */
  timedOut: boolean;
}

export interface FlushOptions {
  /** Stop waiting after this long (nothing is lost: sending goes on). */
  timeoutMs?: number;
}

export interface RateLimitInfo {
  limit: number | null;
  remaining: number | null;
  resetSeconds: number | null;
  eventsLimit: number | null;
  eventsRemaining: number | null;
}

// ---- answers -----------------------------------------------------------------------------------

export interface Session {
  id: string;
  created_at: string;
  metadata?: JsonObject;
}

export interface Page<T> {
  items: T[];
  /** Null only at the end of the listing; a page may be short (even empty) and still have one. */
  next_cursor: string | null;
}

export interface StoredEvent {
  id: string;
  session_id: string | null;
  category: string | null;
  name: string;
  data: JsonObject;
  timestamp: string;
  /** The timestamp as the client sent it, when the server corrected it with `sent_at`. */
  client_timestamp?: string;
  stream: string;
  metadata?: JsonObject;
  received_at: string;
  created_at: string;
  updated_at: string;
  deleted_at?: string;
  [key: string]: unknown;
}

export interface QueriedEvent {
  event_id: string;
  stream_id: string;
  timestamp: string;
  event_type: string;
  category?: string | null;
  session_id?: string | null;
  data: JsonObject;
  metadata?: JsonObject | null;
  [key: string]: unknown;
}

export interface QueryEventsPage {
  events: QueriedEvent[];
  total_count: number;
  has_more: boolean;
  next_cursor: string | null;
}

export type AggregateOperation = 'count' | 'sum' | 'avg' | 'min' | 'max' | 'count_distinct';

export interface AggregateRequest {
  streamId: string;
  timeWindow: { start: TimestampInput; end: TimestampInput };
  /** `field`: `*`, `event_id`, `event_type`, `category`, `session_id`, `timestamp` or a `data.` path. */
  aggregations: Array<{ field?: string; operation: AggregateOperation }>;
  /** `event_type`, `category`, `session_id` or a `data.` path. */
  groupBy?: string | null;
  interval?: 'minute' | 'hour' | 'day' | null;
}

export interface AggregateAnswer {
  stream_id: string;
  time_window: { start: string; end: string };
  group_by: string | null;
  interval: string | null;
  results: Array<{
    group?: string | null;
    interval_start?: string;
    values: Array<{ field: string; operation: string; value: number | string | null }>;
  }>;
  source: 'rollups' | 'raw';
  events_scanned: number;
  count_distinct: 'exact';
}

export interface StreamStatus {
  stream_id: string;
  status: 'active' | 'idle';
  events_processed: number;
  processing_rate: number;
  last_event_timestamp: string | null;
  lag_seconds: number | null;
  errors: { total: number; last_hour: number };
  measured_at: string;
}

/** GET /limits (see docs/openapi.yaml, `Limits`). */
export interface Limits {
  bulk: {
    max_items: number;
    /** Uncompressed bulk body. */
    max_bytes: number;
    max_gzip_decompressed_bytes?: number;
    max_atomic_items: number;
    [key: string]: unknown;
  };
  request: { content_encodings: string[]; max_decompressed_bytes: number; [key: string]: unknown };
  rate_limits: {
    window_seconds: number;
    reset_seconds: number | null;
    requests_per_hour: { limit: number | null; remaining: number | null; [key: string]: unknown };
    events_per_hour: { limit: number | null; remaining: number | null; [key: string]: unknown };
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

// ---- parameters --------------------------------------------------------------------------------

export interface PageParams {
  limit?: number;
  cursor?: string;
}

export interface ListEventsParams extends PageParams {
  /** Sent as `session`. */
  sessionId?: string;
  category?: string;
  name?: string;
  stream?: string;
  /** Sent as `timestamp__gte` (inclusive). */
  timestampGte?: TimestampInput;
  /** Sent as `timestamp__lte` (inclusive). */
  timestampLte?: TimestampInput;
  includeDeleted?: boolean;
}

export interface QueryEventsParams extends PageParams {
  streamId: string;
  /** Inclusive. */
  startTime?: TimestampInput;
  /** Exclusive. */
  endTime?: TimestampInput;
  eventType?: string;
  /** Up to 10,000; not with `cursor`. */
  offset?: number;
}

// ---- the client --------------------------------------------------------------------------------

export declare class Client {
  constructor(options?: ClientOptions);

  readonly baseUrl: string;
  /** The RateLimit-* and Argus-Events-* headers of the latest answer; null until one had them. */
  rateLimit: RateLimitInfo | null;
  /** Counters, and what is queued and in flight now. */
  readonly stats: ClientStats;

  /**
   * Queue an Argus event; it is sent in the background through POST /batch/events.
   * Never throws, never waits. Returns the event's id, or null when it was dropped (see
   * `onDrop`) or is invalid (see `onError`).
   */
  track(event: TrackEvent): string | null;

  /** The DataStream-style surface. */
  readonly ingest: {
    /**
     * Queue a DataStream-style event; sent in the background through POST /ingest/batch, one
     * request per stream. Never throws, never waits. Returns the event_id, or null.
     */
    sendEvent(event: IngestEvent): string | null;
  };

  /** Send everything queued now and wait until each event is stored or has failed for good. Never rejects. */
  flush(options?: FlushOptions): Promise<FlushResult>;
  /** Flush, then stop the timer; later track()/sendEvent() calls are dropped with reason 'shutdown'. */
  shutdown(options?: FlushOptions): Promise<FlushResult>;

  readonly sessions: {
    create(options?: { metadata?: JsonObject }): Promise<Session>;
    get(id: string): Promise<Session>;
    list(params?: PageParams): Promise<Page<Session>>;
    /** Every session, following next_cursor. */
    iterate(params?: PageParams): AsyncGenerator<Session, void, undefined>;
  };

  readonly events: {
    get(id: string, options?: { includeDeleted?: boolean }): Promise<StoredEvent>;
    list(params?: ListEventsParams): Promise<Page<StoredEvent>>;
    /** Every matching event, following next_cursor. */
    iterate(params?: ListEventsParams): AsyncGenerator<StoredEvent, void, undefined>;
  };

  readonly query: {
    /** GET /query/events: one page of a stream's events in a time window, newest first. */
    events(params: QueryEventsParams): Promise<QueryEventsPage>;
    /** Every event of the window, following next_cursor. */
    iterateEvents(params: QueryEventsParams): AsyncGenerator<QueriedEvent, void, undefined>;
    /** POST /query/aggregate. */
    aggregate(request: AggregateRequest): Promise<AggregateAnswer>;
  };

  readonly streams: {
    /** GET /streams/{id}/status. */
    status(streamId: string): Promise<StreamStatus>;
  };

  /** GET /limits. */
  limits(): Promise<Limits>;

  /** Any route: the parsed body of a 2xx answer; throws ArgusError otherwise. */
  request<T = any>(
    method: string,
    path: string,
    options?: { query?: Record<string, string | number | boolean | Date | undefined | null>; body?: unknown; headers?: Record<string, string> },
  ): Promise<T>;
}
