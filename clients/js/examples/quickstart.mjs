// ARGUS_URL=http://127.0.0.1:3000 ARGUS_API_KEY=argus_... node examples/quickstart.mjs
import { Client } from '@argus/sdk';

// baseUrl and apiKey default to the ARGUS_URL and ARGUS_API_KEY environment variables.
const client = new Client({ onError: (err, item) => console.error('not stored:', err.code, item) });

// Plain calls return the answer or throw an ArgusError.
const session = await client.sessions.create({ metadata: { app: 'quickstart' } });

// track() and ingest.sendEvent() queue the event and return at once; batches go in the background.
for (const path of ['/', '/pricing', '/signup']) {
  client.track({ sessionId: session.id, category: 'page', name: 'view', data: { path } });
}
client.ingest.sendEvent({ streamId: 'quickstart', eventType: 'click', data: { button: 'buy' } });

// shutdown() sends what is still queued, waits for it, and stops the timer.
const { sent, failed } = await client.shutdown();
console.log(`session ${session.id}: sent ${sent} events, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
