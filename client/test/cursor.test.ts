import { describe, expect, it } from 'vitest';
import { cursorCss } from '../src/viewer/cursor';

describe('cursorCss', () => {
  it('hides the cursor for an empty image', () => {
    expect(cursorCss({ width: 0, height: 0, hotX: 0, hotY: 0, png: new ArrayBuffer(0) })).toBe(
      'none',
    );
    expect(cursorCss({ width: 16, height: 16, hotX: 0, hotY: 0, png: new Uint8Array(0) })).toBe(
      'none',
    );
  });

  it('makes a data: URL with the hotspot and a fallback', () => {
    const png = Uint8Array.of(0x89, 0x50, 0x4e, 0x47);
    expect(cursorCss({ width: 16, height: 16, hotX: 3, hotY: 40, png })).toBe(
      'url("data:image/png;base64,iVBORw==") 3 15, auto',
    );
  });
});
