import { describe, expect, it } from 'vitest';
import { originAllowed } from '../../../src/gateway/handshake.js';

describe('originAllowed', () => {
  const extra = ['https://portal.example.org'];

  it('lets in the same host, and the configured origins', () => {
    expect(originAllowed('http://vdi.local:8080', 'vdi.local:8080', [])).toBe(true);
    expect(originAllowed('https://portal.example.org', 'vdi.local:8080', extra)).toBe(true);
  });

  it('refuses another site, another port of the same host, and an origin that is no URL', () => {
    expect(originAllowed('https://evil.example', 'vdi.local:8080', extra)).toBe(false);
    expect(originAllowed('http://vdi.local:9999', 'vdi.local:8080', [])).toBe(false);
    expect(originAllowed('null', 'vdi.local:8080', [])).toBe(false);
  });

  it('lets in a client without an Origin (not a browser: no ambient cookie to abuse)', () => {
    expect(originAllowed(undefined, 'vdi.local:8080', [])).toBe(true);
  });
});
