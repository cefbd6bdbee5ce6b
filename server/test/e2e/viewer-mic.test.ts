/**
 * Issue 13's stretch goal, the microphone, end to end: real Chromium whose microphone is a
 * file (a 1 kHz tone, Chromium's fake capture device), the real server process, a sandboxed
 * Xvnc desktop with its own PulseAudio. With Microphone on in the viewer's Sound panel, a
 * recording program in the desktop (`parec` from the default source, as the desktop's
 * account) hears the tone; with it off, it hears nothing of it. The viewer cannot make the
 * gateway write faster than real time (mic-relay.ts, unit-tested with a manual clock).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { asDesktop, MediaRig } from '../helpers/media.js';
import { until } from '../helpers/server.js';

const TONE_HZ = 1000;

/** A 16-bit mono 48 kHz WAV of a sine tone (Chromium loops it as the microphone). */
function toneWav(hz: number, ms: number): Buffer {
  const rate = 48_000;
  const frames = Math.round((rate * ms) / 1000);
  const data = Buffer.alloc(frames * 2);
  for (let i = 0; i < frames; i++)
    data.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * 0.5 * 32767), i * 2);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(1, 22);
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}

/** RMS (0..1) and the frequency by zero crossings of s16le mono PCM at `rate`. */
function analyse(pcm: Buffer, rate: number): { rms: number; hz: number; seconds: number } {
  const n = Math.floor(pcm.length / 2);
  if (n === 0) return { rms: 0, hz: 0, seconds: 0 };
  let sum = 0;
  let crossings = 0;
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const v = pcm.readInt16LE(i * 2) / 32768;
    sum += v * v;
    if (i > 0 && prev < 0 !== v < 0) crossings++;
    prev = v;
  }
  const seconds = n / rate;
  return { rms: Math.sqrt(sum / n), hz: crossings / 2 / seconds, seconds };
}

interface MicWindow {
  __vdiMic?: { state: string; chunks: number };
}

describe('microphone: the browser microphone is the desktop recording source', () => {
  const rig = new MediaRig();
  const wav = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-mic-')), 'tone.wav');
  let page: Page;
  let desktop: XvncHandle;

  const pulseEnv = () => ({
    PULSE_SERVER: `unix:${path.dirname(desktop.xEnv!.XAUTHORITY)}/pulse/native`,
  });

  /** `seconds` of what the desktop's default source records, analysed. */
  async function record(seconds: number) {
    await asDesktop(
      desktop,
      `rm -f mic.raw; timeout ${seconds} parec --raw --format=s16le --rate=16000 --channels=1 --latency-msec=20 > mic.raw; true`,
      pulseEnv(),
    );
    return analyse(fs.readFileSync(path.join(desktop.home, 'mic.raw')), 16_000);
  }

  beforeAll(async () => {
    fs.writeFileSync(wav, toneWav(TONE_HZ, 2000));
    await rig.start([
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${wav}`,
    ]);
    const pool = await rig.pool('mic', {});
    const ctx = await rig.context();
    let sessionId: string;
    ({ page, sessionId } = await rig.viewer(ctx, pool));
    desktop = rig.desktopOf(sessionId);
    // the desktop's PulseAudio is up, with the browser's microphone as its default source
    await until(
      () =>
        asDesktop(desktop, 'pactl info', pulseEnv()).then(
          (s) => /Default Source: mic\b/.test(s),
          () => false,
        ),
      20_000,
      "the desktop's PulseAudio with the microphone as default source",
    );
  });

  afterAll(async () => {
    await rig.stop();
    fs.rmSync(path.dirname(wav), { recursive: true, force: true });
  });

  it('records the tone the browser microphone hears once Microphone is on', async () => {
    const before = await record(1.5);
    // the toolbar fades while the desktop is used: the pointer at the top edge brings it back
    await page.mouse.move(640, 2);
    await page.getByRole('button', { name: 'Sound' }).click();
    await page.getByRole('complementary', { name: 'Sound' }).getByLabel('Microphone').check();
    await page.waitForFunction(
      () => {
        const m = (window as unknown as MicWindow).__vdiMic;
        return m?.state === 'on' && m.chunks > 25;
      },
      null,
      { timeout: 20_000 },
    );
    const on = await record(2);
    console.log(
      `microphone: off ${before.rms.toFixed(4)} RMS over ${before.seconds.toFixed(2)} s; ` +
        `on ${on.rms.toFixed(4)} RMS, ${on.hz.toFixed(0)} Hz over ${on.seconds.toFixed(2)} s`,
    );
    expect(before.rms, 'nothing of the tone before the microphone is on').toBeLessThan(0.01);
    expect(on.seconds, 'the recording got sound').toBeGreaterThan(0.5);
    expect(on.rms, 'the tone is loud in the desktop').toBeGreaterThan(0.05);
    expect(Math.abs(on.hz - TONE_HZ), `${on.hz} Hz`).toBeLessThan(TONE_HZ * 0.1);
  });

  it('hears nothing of it once Microphone is off again', async () => {
    await page.getByRole('complementary', { name: 'Sound' }).getByLabel('Microphone').uncheck();
    await page.waitForFunction(() => (window as unknown as MicWindow).__vdiMic?.state === 'off');
    // what was already in the pipe drains first
    await until(
      async () => (await record(1)).rms < 0.01,
      15_000,
      'the desktop to hear no more of the microphone',
    );
  });
});
