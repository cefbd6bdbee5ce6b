import { describe, expect, it } from 'vitest';
import { ProviderError } from '../../../src/providers/types.js';
import { parsePpm, typeText } from '../../helpers/qemu-console.js';

// The test helpers that need no QEMU; they drive real VMs in test/integration/qemu-provider.test.ts.

describe('parsePpm', () => {
  it('decodes a P6 image, comments included', () => {
    const raster = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 1, 2, 3]);
    const img = parsePpm(Buffer.concat([Buffer.from('P6\n# made by a test\n2 2\n255\n'), raster]));
    expect(img).toMatchObject({ width: 2, height: 2 });
    expect([...img.rgb]).toEqual([...raster]);
  });

  it('rejects what it cannot read', () => {
    expect(() => parsePpm(Buffer.from('P5\n1 1\n255\n\0'))).toThrow(ProviderError);
    expect(() => parsePpm(Buffer.from('P6\n2 2\n255\n\0\0\0'))).toThrow(/truncated/);
    expect(() => parsePpm(Buffer.from('P6\n1 1\n65535\n\0\0\0\0\0\0'))).toThrow(/maxval/);
    expect(() => parsePpm(Buffer.from('P6\nx y\n255\n'))).toThrow(ProviderError);
  });
});

describe('typeText', () => {
  it('refuses text it cannot type on a US keyboard', async () => {
    const handle = {
      desktopId: 'd1',
      // pid_max is at most 2^22: this pid never exists
      pid: 4_194_305,
      startTime: '12345',
      qmpPath: '/nonexistent/d1.qmp',
      vncPath: '/nonexistent/d1.vnc',
      pidPath: '/nonexistent/d1.pid',
      logPath: '/nonexistent/d1.log',
      overlayPath: '/nonexistent/d1.qcow2',
      goldenPath: '/nonexistent/golden.qcow2',
      accel: 'tcg',
      memoryMb: 512,
      vcpus: 2,
    };
    await expect(typeText(handle, 'grüß')).rejects.toMatchObject({ code: 'QEMU_UNTYPEABLE' });
  });
});
