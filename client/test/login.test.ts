import { describe, expect, it } from 'vitest';
import { safeNext } from '../src/pages/login';

describe('safeNext', () => {
  it('keeps same-origin paths and refuses everything else', () => {
    expect(safeNext('/desktop/abc?shadow=1')).toBe('/desktop/abc?shadow=1');
    expect(safeNext('/admin/pools')).toBe('/admin/pools');
    expect(safeNext(null)).toBe('/');
    expect(safeNext('https://evil.example/')).toBe('/');
    expect(safeNext('//evil.example/')).toBe('/');
    expect(safeNext('/\\evil.example')).toBe('/');
    expect(safeNext('/login?next=/')).toBe('/');
  });
});
