import sharp from 'sharp';
import { Codec, FrameFlags, readCopyPayload, unpackIndices, type Frame } from '@vdi/shared';
import { InflateSegments } from '../../../../src/stream/deflate-stream.js';

/**
 * A tiny client for tests: draws frames onto an RGBX canvas in order, as the browser does,
 * decoding every codec the server sends (JPEG and PNG through sharp).
 */
export class CanvasReplay {
  readonly canvas: Buffer;
  private readonly rx = new InflateSegments();

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.canvas = Buffer.alloc(width * height * 4);
  }

  async draw(f: Frame): Promise<void> {
    if (f.flags & FrameFlags.Keyframe) this.rx.reset();
    for (const r of f.rects) {
      switch (r.codec) {
        case Codec.Copy: {
          const { srcX, srcY } = readCopyPayload(r);
          const tmp = this.read(srcX, srcY, r.w, r.h);
          this.write(r.x, r.y, r.w, r.h, tmp, 4);
          break;
        }
        case Codec.Fill: {
          const px = Buffer.alloc(r.w * r.h * 3);
          for (let i = 0; i < r.w * r.h; i++) px.set(r.payload.subarray(0, 3), i * 3);
          this.write(r.x, r.y, r.w, r.h, px, 3);
          break;
        }
        case Codec.DeflatePalette: {
          const n = r.payload[0]! + 1;
          const plain = this.rx.inflate(r.payload.subarray(1));
          const pal = plain.subarray(0, n * 3);
          const idx = unpackIndices(plain.subarray(n * 3), r.w, r.h, n);
          const px = Buffer.alloc(r.w * r.h * 3);
          for (let i = 0; i < r.w * r.h; i++)
            px.set(pal.subarray(idx[i]! * 3, idx[i]! * 3 + 3), i * 3);
          this.write(r.x, r.y, r.w, r.h, px, 3);
          break;
        }
        case Codec.DeflateRgb:
          this.write(r.x, r.y, r.w, r.h, this.rx.inflate(r.payload), 3);
          break;
        case Codec.Jpeg:
        case Codec.Png: {
          const { data, info } = await sharp(r.payload).removeAlpha().raw().toBuffer({
            resolveWithObject: true,
          });
          if (info.width !== r.w || info.height !== r.h)
            throw new Error('image size differs from its rect');
          this.write(r.x, r.y, r.w, r.h, data, 3);
          break;
        }
        default:
          throw new Error(`codec ${String(r.codec)} not expected here`);
      }
    }
  }

  /** pixels of the canvas whose RGB differs from `fb` (RGBX, same size) inside `area` */
  differing(fb: Buffer, area = { x: 0, y: 0, w: this.width, h: this.height }): number {
    let n = 0;
    for (let y = area.y; y < area.y + area.h; y++)
      for (let x = area.x; x < area.x + area.w; x++) {
        const i = (y * this.width + x) * 4;
        if (
          this.canvas[i] !== fb[i] ||
          this.canvas[i + 1] !== fb[i + 1] ||
          this.canvas[i + 2] !== fb[i + 2]
        )
          n++;
      }
    return n;
  }

  private read(x: number, y: number, w: number, h: number): Buffer {
    const out = Buffer.alloc(w * h * 4);
    for (let row = 0; row < h; row++)
      this.canvas.copy(
        out,
        row * w * 4,
        ((y + row) * this.width + x) * 4,
        ((y + row) * this.width + x + w) * 4,
      );
    return out;
  }

  /** `px` packed with `bpp` bytes per pixel (RGB first) */
  private write(x: number, y: number, w: number, h: number, px: Uint8Array, bpp: number): void {
    for (let row = 0; row < h; row++)
      for (let col = 0; col < w; col++) {
        const s = (row * w + col) * bpp;
        const d = ((y + row) * this.width + x + col) * 4;
        this.canvas[d] = px[s]!;
        this.canvas[d + 1] = px[s + 1]!;
        this.canvas[d + 2] = px[s + 2]!;
      }
  }
}
