/**
 * Reads the FLV stream ffmpeg writes for a video region and turns each H.264 picture into one
 * self-contained Annex-B chunk, as WebCodecs decodes it without a `description`.
 *
 * Why FLV and not ffmpeg's raw `-f h264`: a raw Annex-B byte stream has no lengths, so the end
 * of a picture is known only when the next one starts, one frame late. FLV frames every
 * picture in a tag with its length and a keyframe flag. The stream (Adobe FLV spec v10.1, E.4):
 *
 *   header  'F' 'L' 'V', u8 version, u8 flags, u32be headerSize (9); then u32be 0
 *   tag     u8 type (9 = video), u24be dataSize, u24be timestamp, u8 timestampExt, u24be 0,
 *           dataSize bytes, u32be previousTagSize
 *   video   u8 (frameType << 4 | codecId), codecId 7 = AVC; u8 AVCPacketType
 *           (0 = AVCDecoderConfigurationRecord, 1 = NAL units, 2 = end of sequence);
 *           s24be composition time; then the record, or NAL units each after a big-endian
 *           length of lengthSize bytes
 *
 * The parameter sets (SPS, PPS) arrive once in the configuration record; they are put in
 * front of every key picture so that a decoder can start at any key chunk.
 */

export interface H264Chunk {
  key: boolean;
  /** WebCodecs codec string from the SPS: avc1.PPCCLL */
  codec: string;
  /** Annex-B: NAL units after 00 00 00 01 start codes */
  data: Buffer;
}

export class FlvFormatError extends Error {
  readonly code = 'FLV_FORMAT';
}

const FLV_HEADER_BYTES = 9;
const TAG_HEADER_BYTES = 11;
const TAG_VIDEO = 9;
const CODEC_AVC = 7;
const FRAME_KEY = 1;
const AVC_CONFIG = 0;
const AVC_NALU = 1;
/** A tag larger than this is refused (a 4K picture at a high bit rate is far below). */
const MAX_TAG_BYTES = 16 * 1024 * 1024;
const START_CODE = Buffer.of(0, 0, 0, 1);

/**
 * Resumable: feed it the child's stdout as it arrives, split anywhere; each complete
 * picture comes back from push(). Bytes of an incomplete tag are kept (at most one tag).
 */
export class FlvH264Reader {
  private buf: Buffer = Buffer.alloc(0);
  private headerDone = false;
  private lengthSize = 4;
  private paramSets: Buffer | undefined;
  private codec = '';

  push(data: Buffer): H264Chunk[] {
    this.buf = this.buf.length === 0 ? data : Buffer.concat([this.buf, data]);
    const out: H264Chunk[] = [];
    for (;;) {
      if (!this.headerDone) {
        if (this.buf.length < FLV_HEADER_BYTES + 4) break;
        if (this.buf.toString('latin1', 0, 3) !== 'FLV') throw new FlvFormatError('not FLV');
        const headerSize = this.buf.readUInt32BE(5);
        if (headerSize < FLV_HEADER_BYTES || headerSize > 64) {
          throw new FlvFormatError(`FLV header size ${headerSize}`);
        }
        if (this.buf.length < headerSize + 4) break;
        this.buf = this.buf.subarray(headerSize + 4);
        this.headerDone = true;
        continue;
      }
      if (this.buf.length < TAG_HEADER_BYTES) break;
      const type = this.buf[0]! & 0x1f;
      const size = this.buf.readUIntBE(1, 3);
      if (size > MAX_TAG_BYTES) throw new FlvFormatError(`FLV tag of ${size} bytes`);
      const end = TAG_HEADER_BYTES + size + 4;
      if (this.buf.length < end) break;
      const body = this.buf.subarray(TAG_HEADER_BYTES, TAG_HEADER_BYTES + size);
      this.buf = this.buf.subarray(end);
      if (type === TAG_VIDEO) {
        const chunk = this.videoTag(body);
        if (chunk) out.push(chunk);
      }
    }
    // keep only the unread rest, not the whole buffer it is a view of
    if (this.buf.length > 0 && this.buf.byteOffset > 0) this.buf = Buffer.from(this.buf);
    return out;
  }

  private videoTag(body: Buffer): H264Chunk | undefined {
    if (body.length < 5) throw new FlvFormatError('video tag too short');
    const frameType = body[0]! >> 4;
    const codecId = body[0]! & 0x0f;
    if (codecId !== CODEC_AVC) throw new FlvFormatError(`video codec id ${codecId} is not AVC`);
    const packetType = body[1]!;
    const payload = body.subarray(5);
    if (packetType === AVC_CONFIG) {
      this.readConfig(payload);
      return undefined;
    }
    if (packetType !== AVC_NALU) return undefined; // end of sequence
    if (!this.paramSets) throw new FlvFormatError('picture before the decoder configuration');
    const key = frameType === FRAME_KEY;
    const parts: Buffer[] = key ? [this.paramSets] : [];
    let p = 0;
    while (p < payload.length) {
      if (p + this.lengthSize > payload.length) throw new FlvFormatError('NAL length truncated');
      const n = payload.readUIntBE(p, this.lengthSize);
      p += this.lengthSize;
      if (n === 0 || p + n > payload.length) throw new FlvFormatError('NAL unit truncated');
      parts.push(START_CODE, payload.subarray(p, p + n));
      p += n;
    }
    if (parts.length === 0 || (key && parts.length === 1)) return undefined; // no picture
    return { key, codec: this.codec, data: Buffer.concat(parts) };
  }

  /** AVCDecoderConfigurationRecord (ISO/IEC 14496-15, 5.2.4.1) */
  private readConfig(rec: Buffer): void {
    if (rec.length < 7 || rec[0] !== 1) throw new FlvFormatError('bad AVC configuration record');
    this.codec = `avc1.${hex(rec[1]!)}${hex(rec[2]!)}${hex(rec[3]!)}`;
    this.lengthSize = (rec[4]! & 3) + 1;
    const sets: Buffer[] = [];
    let p = 6; // after numOfSequenceParameterSets
    const take = (count: number): void => {
      for (let i = 0; i < count; i++) {
        if (p + 2 > rec.length) throw new FlvFormatError('parameter set truncated');
        const n = rec.readUInt16BE(p);
        p += 2;
        if (p + n > rec.length) throw new FlvFormatError('parameter set truncated');
        sets.push(START_CODE, rec.subarray(p, p + n));
        p += n;
      }
    };
    take(rec[5]! & 0x1f);
    if (p >= rec.length) throw new FlvFormatError('no picture parameter sets');
    take(rec[p++]!);
    if (sets.length < 4) throw new FlvFormatError('configuration without SPS and PPS');
    this.paramSets = Buffer.concat(sets);
  }
}

function hex(b: number): string {
  return b.toString(16).toUpperCase().padStart(2, '0');
}
