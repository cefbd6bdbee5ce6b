/**
 * The Prometheus registry (`GET /metrics`) and the metrics every layer observes: a leaf
 * module with no imports of ours, so the broker, the stream and auth can count without
 * reaching up to the gateway. The gateway's own metrics are in gateway/metrics.ts.
 */
import client from 'prom-client';

export const registry = new client.Registry();
/**
 * How often the event loop's delay is sampled for `nodejs_eventloop_lag_*`, ms. prom-client's
 * default of 10 ms is a timer waking the process 100 times a second, idle or not: about
 * 5 ms of CPU per second on its own, half of an idle gateway's CPU. At 100 ms a stall of the
 * loop still shows in the histogram, for a tenth of the wake-ups.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;
client.collectDefaultMetrics({
  register: registry,
  eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
});

export const metrics = {
  /** set at each scrape from the store (broker.updateGauges) */
  sessions: new client.Gauge({
    name: 'vdi_sessions',
    help: 'Live sessions by state (starting, active, disconnected) and pool',
    labelNames: ['state', 'pool'],
    registers: [registry],
  }),
  desktops: new client.Gauge({
    name: 'vdi_desktops',
    help: 'Desktops by state (provisioning, ready, in-use, stopping, stopped, failed) and pool',
    labelNames: ['state', 'pool'],
    registers: [registry],
  }),
  /** set at each scrape from this node's attachments */
  viewers: new client.Gauge({
    name: 'vdi_viewers',
    help: "Viewers attached to a session on this node: the user's own (user) or an administrator watching (shadow)",
    labelNames: ['kind'],
    registers: [registry],
  }),
  encodeSeconds: new client.Histogram({
    name: 'vdi_frame_encode_seconds',
    help: "Time to encode one frame's rectangles (in parallel) for a viewer",
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  }),
  brokerTickSeconds: new client.Histogram({
    name: 'vdi_broker_tick_seconds',
    help: 'Time of one broker tick (timeouts, spares, health checks)',
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  }),
  signIns: new client.Counter({
    name: 'vdi_sign_ins_total',
    help: 'Sign-in attempts by result: succeeded, failed (wrong credentials, disabled) or throttled',
    labelNames: ['result'],
    registers: [registry],
  }),
};
