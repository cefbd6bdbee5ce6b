/**
 * Sound out of an X desktop (issue 13).
 *
 * In the desktop (AUDIO_INIT, part of the init script, as the desktop's account inside its
 * sandbox): its own PulseAudio with a null sink as the only, so default, sink and the native
 * protocol on `$XDG_RUNTIME_DIR/pulse/native` (PULSE_SERVER in the session's environment), and
 * a loop that records the sink's monitor with `parec` as raw s16le 48 kHz stereo into the
 * FIFO `$XDG_RUNTIME_DIR/audio.fifo`. Opening a FIFO for writing waits for a reader, so
 * nothing is recorded while nobody listens; when the gateway closes it parec gets EPIPE and
 * the loop waits again.
 *
 * Microphone: the same PulseAudio makes and reads the FIFO `$XDG_RUNTIME_DIR/mic.fifo` as a pipe source
 * (`mic`, s16le mono 16 kHz), set as the default source, so recording programs hear the
 * browser's microphone; the gateway writes each chunk the viewer sends without blocking
 * (a chunk the pipe cannot take now is dropped).
 *
 * In the gateway (XvncAudio): the FIFO is opened (O_NOFOLLOW, and it must be a FIFO of the
 * desktop's account; O_RDWR so a writer coming and going never reads as end of file), its PCM
 * cut into 10 ms packets, or encoded to Opus by ffmpeg running as the desktop's account
 * (libopus, low-delay application, 10 ms frames, Ogg pages of one packet, which
 * OggPacketReader takes apart).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { MIC_FORMAT, type AudioCodec } from '@vdi/shared';
import type { AudioCapture, AudioSink, AudioSource } from '../types.js';
import { ProviderError } from '../types.js';
import { asDesktopAccount } from '../sandbox/launch.js';
import type { XvncHandle } from './handle.js';

/** PATH of the encoder (session.ts's DESKTOP_PATH; session.ts imports this file) */
const ENCODER_PATH = '/usr/local/bin:/usr/bin:/bin';

/** PCM as the desktop records it */
export const AUDIO_RATE = 48_000;
export const AUDIO_CHANNELS = 2;
/** bytes of 10 ms of s16le stereo at 48 kHz: one PCM packet */
const PCM_PACKET_BYTES = (AUDIO_RATE / 100) * AUDIO_CHANNELS * 2;
/** the FIFO's name in the desktop's runtime directory */
export const AUDIO_FIFO = 'audio.fifo';
/** the microphone FIFO's name there */
export const MIC_FIFO = 'mic.fifo';
/** most bytes of PCM or Ogg held while cutting packets before data is dropped */
const MAX_PENDING_BYTES = 256 * 1024;

/**
 * Shell for the init script (run as the desktop, `$rt` its runtime directory, `$x` Xvnc's
 * pid): starts the desktop's PulseAudio and the recording loop when PulseAudio is installed.
 */
export const AUDIO_INIT = `if command -v pulseaudio >/dev/null 2>&1 && command -v parec >/dev/null 2>&1; then
  mkdir -p "$rt/pulse"
  rm -f "$rt/${AUDIO_FIFO}" "$rt/${MIC_FIFO}"
  mkfifo -m 600 "$rt/${AUDIO_FIFO}"
  pulseaudio -n --daemonize=no --exit-idle-time=-1 --disallow-exit=yes --disable-shm=yes \\
    --realtime=no --high-priority=no --use-pid-file=no --log-target=stderr --log-level=error \\
    --load="module-native-protocol-unix socket=$rt/pulse/native auth-anonymous=1" \\
    --load="module-null-sink sink_name=vdi rate=${AUDIO_RATE} channels=${AUDIO_CHANNELS} sink_properties=device.description=Desktop" \\
    --load="module-pipe-source source_name=mic file=$rt/${MIC_FIFO} format=s16le rate=${MIC_FORMAT.sampleRate} channels=${MIC_FORMAT.channels} source_properties=device.description=Microphone" \\
    </dev/null >"$rt/pulse.log" 2>&1 &
  # the browser's microphone is what recording programs get by default
  (
    for i in $(seq 50); do
      PULSE_SERVER="unix:$rt/pulse/native" pactl set-default-source mic 2>/dev/null && chmod 600 "$rt/${MIC_FIFO}" && break
      sleep 0.1
    done
  ) </dev/null >/dev/null 2>&1 &
  (
    while kill -0 $x 2>/dev/null; do
      PULSE_SERVER="unix:$rt/pulse/native" parec --raw --format=s16le --rate=${AUDIO_RATE} \\
        --channels=${AUDIO_CHANNELS} --latency-msec=10 --process-time-msec=5 -d vdi.monitor \\
        >"$rt/${AUDIO_FIFO}" 2>>"$rt/pulse.log" || sleep 0.2
    done
  ) </dev/null >/dev/null 2>&1 &
fi
`;

/** PULSE_SERVER for a desktop whose runtime directory is `runtime` (as it sees it). */
export function pulseServer(runtime: string): string {
  return `unix:${path.join(runtime, 'pulse', 'native')}`;
}

/** The ffmpeg arguments that turn raw PCM on stdin into Ogg Opus on stdout, low delay. */
export function opusEncoderArgs(): string[] {
  return [
    '-hide_banner',
    '-loglevel',
    'error',
    '-fflags',
    '+nobuffer',
    '-probesize',
    '32',
    '-analyzeduration',
    '0',
    '-f',
    's16le',
    '-ar',
    String(AUDIO_RATE),
    '-ac',
    String(AUDIO_CHANNELS),
    '-i',
    'pipe:0',
    '-c:a',
    'libopus',
    '-application',
    'lowdelay',
    '-frame_duration',
    '10',
    '-b:a',
    '128k',
    '-f',
    'ogg',
    // one page per packet, written at once: the page is the unit the gateway forwards
    '-page_duration',
    '10000',
    '-flush_packets',
    '1',
    'pipe:1',
  ];
}

/**
 * Takes Ogg pages apart into packets (RFC 3533): 27-byte page header, segment table, segments;
 * a packet ends at a segment shorter than 255 bytes. The first two packets of an Ogg Opus
 * stream are OpusHead and OpusTags, which are skipped.
 */
export class OggPacketReader {
  private buf: Buffer = Buffer.alloc(0);
  private partial: Buffer[] = [];
  private packets = 0;

  constructor(private readonly onPacket: (p: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (this.buf.length > MAX_PENDING_BYTES) throw new Error('Ogg stream out of step');
    for (;;) {
      if (this.buf.length < 27) return;
      if (this.buf.toString('latin1', 0, 4) !== 'OggS') throw new Error('not an Ogg page');
      const nseg = this.buf[26]!;
      if (this.buf.length < 27 + nseg) return;
      let body = 0;
      for (let i = 0; i < nseg; i++) body += this.buf[27 + i]!;
      const total = 27 + nseg + body;
      if (this.buf.length < total) return;
      let off = 27 + nseg;
      for (let i = 0; i < nseg; i++) {
        const len = this.buf[27 + i]!;
        this.partial.push(this.buf.subarray(off, off + len));
        off += len;
        if (len < 255) {
          const packet = Buffer.concat(this.partial);
          this.partial = [];
          if (++this.packets > 2) this.onPacket(packet);
        }
      }
      this.buf = this.buf.subarray(total);
    }
  }
}

/** One capture of a desktop's sound: `packet` events until close(). */
class FifoCapture
  extends EventEmitter<{ packet: [Buffer]; end: [string] }>
  implements AudioCapture
{
  private readonly pipe: net.Socket;
  private encoder: ChildProcess | undefined;
  private closed = false;

  constructor(h: XvncHandle, codec: AudioCodec) {
    super();
    const fifo = path.join(path.dirname(h.socket), AUDIO_FIFO);
    let fd: number;
    try {
      fd = fs.openSync(
        fifo,
        fs.constants.O_RDWR | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW,
      );
    } catch (e) {
      throw new ProviderError(
        'AUDIO_UNAVAILABLE',
        `the desktop has no sound (${(e as NodeJS.ErrnoException).code ?? 'error'}): is pulseaudio installed?`,
      );
    }
    const st = fs.fstatSync(fd);
    if (!st.isFIFO() || (h.account && st.uid !== h.account.uid)) {
      fs.closeSync(fd);
      throw new ProviderError('AUDIO_UNAVAILABLE', "the desktop's sound pipe is not its own FIFO");
    }
    this.pipe = new net.Socket({ fd, readable: true, writable: false });
    this.pipe.on('error', (err) => this.end(`sound pipe: ${err.message}`));
    this.pipe.on('close', () => this.end('sound pipe closed'));
    if (codec === 'pcm') {
      let pending: Buffer = Buffer.alloc(0);
      this.pipe.on('data', (c: Buffer) => {
        pending = pending.length ? Buffer.concat([pending, c]) : c;
        // behind (should not happen: the socket reads as fast as the desktop writes): drop
        if (pending.length > MAX_PENDING_BYTES) pending = pending.subarray(-PCM_PACKET_BYTES);
        while (pending.length >= PCM_PACKET_BYTES) {
          this.emit('packet', pending.subarray(0, PCM_PACKET_BYTES));
          pending = pending.subarray(PCM_PACKET_BYTES);
        }
      });
      return;
    }
    const a = h.account;
    const argv = a
      ? asDesktopAccount(a, ['ffmpeg', ...opusEncoderArgs()])
      : ['ffmpeg', ...opusEncoderArgs()];
    const enc = spawn(argv[0]!, argv.slice(1), {
      cwd: '/',
      env: { PATH: ENCODER_PATH, LANG: 'C.UTF-8' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.encoder = enc;
    const ogg = new OggPacketReader((p) => this.emit('packet', p));
    let errText = '';
    enc.stderr.on('data', (c: Buffer) => (errText = (errText + c.toString()).slice(-500)));
    enc.stdout.on('data', (c: Buffer) => {
      try {
        ogg.push(c);
      } catch (e) {
        this.end(`encoder output: ${(e as Error).message}`);
      }
    });
    enc.once('error', (e) => this.end(`ffmpeg: ${e.message}`));
    enc.once('exit', (code) => this.end(`ffmpeg exited (${code}) ${errText.trim()}`));
    enc.stdin.on('error', () => undefined);
    this.pipe.pipe(enc.stdin);
  }

  private end(reason: string): void {
    if (this.closed) return;
    this.close();
    this.emit('end', reason);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pipe.destroy();
    this.encoder?.kill('SIGKILL');
  }
}

/**
 * The desktop's microphone FIFO, opened for writing without blocking (O_NOFOLLOW, and it must
 * be a FIFO of the desktop's account: the gateway never writes into anything else the
 * desktop's user could put there). PulseAudio holds its read end open while it runs.
 */
class FifoSink implements AudioSink {
  private fd: number | undefined;

  constructor(h: XvncHandle) {
    const fifo = path.join(path.dirname(h.socket), MIC_FIFO);
    let fd: number;
    try {
      fd = fs.openSync(
        fifo,
        fs.constants.O_WRONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW,
      );
    } catch (e) {
      throw new ProviderError(
        'AUDIO_UNAVAILABLE',
        `the desktop has no microphone input (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    const st = fs.fstatSync(fd);
    if (!st.isFIFO() || (h.account && st.uid !== h.account.uid)) {
      fs.closeSync(fd);
      throw new ProviderError(
        'AUDIO_UNAVAILABLE',
        "the desktop's microphone pipe is not its own FIFO",
      );
    }
    this.fd = fd;
  }

  write(pcm: Buffer): boolean {
    if (this.fd === undefined) return false;
    try {
      // at most PIPE_BUF bytes: written whole or not at all
      return fs.writeSync(this.fd, pcm) === pcm.length;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') return false; // the pipe is full: PulseAudio is behind
      this.close(); // EPIPE: the desktop's sound server is gone
      return false;
    }
  }

  close(): void {
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** The sound of one Xvnc desktop. */
export class XvncAudio implements AudioSource {
  constructor(private readonly h: XvncHandle) {}

  open(codec: AudioCodec): AudioCapture {
    return new FifoCapture(this.h, codec);
  }

  microphone(): AudioSink {
    return new FifoSink(this.h);
  }
}
