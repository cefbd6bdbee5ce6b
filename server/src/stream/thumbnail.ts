import sharp from 'sharp';

/** JPEG quality of thumbnails: small files, still legible at a glance */
const THUMBNAIL_QUALITY = 70;

/**
 * A small JPEG of a framebuffer for the admin console. `fb` is RGBX (stride width*4); the
 * image is scaled down to `maxWidth` pixels wide, never up.
 */
export async function encodeThumbnail(
  fb: Buffer,
  width: number,
  height: number,
  maxWidth: number,
): Promise<Buffer> {
  // The 4th byte of the mirror is undefined (RFB padding), not alpha. Drop it in a pass of
  // its own: sharp resizes before it removes alpha, and would premultiply by that byte.
  const rgb = await sharp(fb, { raw: { width, height, channels: 4 } })
    .removeAlpha()
    .raw()
    .toBuffer();
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .resize({ width: Math.min(maxWidth, width) })
    .jpeg({ quality: THUMBNAIL_QUALITY })
    .toBuffer();
}
