import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config/index.js';

describe('RFB_REMOTE_ENCODINGS', () => {
  it('defaults to Tight, then ZRLE', () => {
    expect(loadConfig({}).desktopLimits.remoteEncodings).toEqual(['tight', 'zrle']);
  });

  it('takes a comma-separated preference, or none', () => {
    expect(
      loadConfig({ RFB_REMOTE_ENCODINGS: ' ZRLE , tight' }).desktopLimits.remoteEncodings,
    ).toEqual(['zrle', 'tight']);
    expect(loadConfig({ RFB_REMOTE_ENCODINGS: '' }).desktopLimits.remoteEncodings).toEqual([]);
  });

  it.each(['jpeg', 'tight,tight', 'raw,zrle'])('refuses %s with a clear error', (v) => {
    expect(() => loadConfig({ RFB_REMOTE_ENCODINGS: v })).toThrow(ConfigError);
    expect(() => loadConfig({ RFB_REMOTE_ENCODINGS: v })).toThrow(/RFB_REMOTE_ENCODINGS/);
  });
});
