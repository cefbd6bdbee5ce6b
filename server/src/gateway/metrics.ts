import client from 'prom-client';
import { registry } from '../metrics.js';

export { registry };

export const gatewayMetrics = {
  sockets: new client.Gauge({
    name: 'vdi_viewer_sockets',
    help: 'Connected viewer sockets',
    registers: [registry],
  }),
  frames: new client.Counter({
    name: 'vdi_frames_sent_total',
    help: 'Frames sent to viewers',
    registers: [registry],
  }),
  bytes: new client.Counter({
    name: 'vdi_frame_bytes_sent_total',
    help: 'Frame bytes sent to viewers',
    registers: [registry],
  }),
  badEvents: new client.Counter({
    name: 'vdi_bad_events_total',
    help: 'Invalid events from browsers',
    labelNames: ['event'],
    registers: [registry],
  }),
  droppedInput: new client.Counter({
    name: 'vdi_dropped_input_total',
    help: 'Input events dropped by the rate limit',
    registers: [registry],
  }),
  renderSeconds: new client.Histogram({
    name: 'vdi_frame_render_seconds',
    help: "Time from a frame's arrival in the browser to its pixels on screen (decode and draw), as viewers report it with their acks",
    buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  }),
  silentViewers: new client.Counter({
    name: 'vdi_silent_viewers_dropped_total',
    help: 'Viewer sockets dropped because nothing was heard from them for the viewer timeout',
    registers: [registry],
  }),
};
