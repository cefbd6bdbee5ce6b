/** Pixel data that does not fit its rect: a wrong length, a palette index out of range, bad deflate. */
export class PixelFormatError extends Error {
  readonly code = 'PIXEL_FORMAT';
  override name = 'PixelFormatError';
}
