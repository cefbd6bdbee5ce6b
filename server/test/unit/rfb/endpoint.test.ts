import { describe, expect, it } from 'vitest';
import { isLoopbackHost } from '../../../src/rfb/endpoint.js';

describe('isLoopbackHost', () => {
  it.each([
    '127.0.0.1',
    '127.1.2.3',
    'localhost',
    'LOCALHOST',
    'a.localhost',
    '::1',
    '[::1]',
    '::ffff:127.0.0.1',
  ])('%s is this machine', (host) => expect(isLoopbackHost(host)).toBe(true));
  it.each(['192.0.2.10', '10.0.0.1', 'lab-pc.example.org', '::2', '::ffff:10.0.0.1', '128.0.0.1'])(
    '%s is another machine',
    (host) => expect(isLoopbackHost(host)).toBe(false),
  );
});
