/**
 * Issue 13, sound, end to end: real Chromium (autoplay allowed, as after a click), the real
 * server process, a sandboxed Xvnc desktop with its own PulseAudio. A 1 kHz tone played in
 * the desktop (`paplay`, as the desktop's account) is detected in the page by an
 * AnalyserNode after the viewer's jitter buffer; the time from starting it to hearing it is
 * measured (Opus through WebCodecs, and the raw PCM fallback when AudioDecoder is missing).
 * Mute silences it; a shadowing administrator gets no sound.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserContext, Page } from 'playwright-core';
import type { Pool } from '@vdi/shared';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { asDesktop, MediaRig, screenshot } from '../helpers/media.js';
import { until } from '../helpers/server.js';

/** A 16-bit stereo 48 kHz WAV of a sine tone. */
function toneWav(hz: number, ms: number, amplitude = 0.5): Buffer {
  const rate = 48_000;
  const frames = Math.round((rate * ms) / 1000);
  const data = Buffer.alloc(frames * 4);
  for (let i = 0; i < frames; i++) {
    const v = Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * amplitude * 32767);
    data.writeInt16LE(v, i * 4);
    data.writeInt16LE(v, i * 4 + 2);
  }
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(2, 22);
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 4, 28);
  h.writeUInt16LE(4, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}

/** tones played per codec (the latency figures are their times) */
const TRIALS = 5;

interface ToneWindow {
  __vdiAudio?: {
    codec: string;
    state: string;
    packets: number;
    analyser?: AnalyserNode;
  };
  /** the tone's onset and pitch (the median of `peaks`, the spectrum peaks read) */
  __tone?: { at: number; peakHz: number; peaks: number[] } | null;
  /** when the watcher last found the analyser's level above silence (Date.now()) */
  __lastSound?: number;
  __toneWatch?: number;
}

/** loud analyser windows whose spectrum peaks are read for a tone's pitch (their median) */
const PITCH_READS = 5;

/**
 * Starts watching the page's analyser: the first moment its level passes the threshold is
 * when the tone was heard. Its pitch is the median of the spectrum's peaks in PITCH_READS
 * analyser windows that are loud and do not overlap, the first a whole window after the
 * onset (read at the first loud sample, the window is mostly the silence before). One window
 * alone is not enough: on a loaded machine the jitter buffer can run dry for a moment inside
 * the tone, and a silent window's spectrum is all -Infinity, its "peak" the first bin.
 */
const watchForTone = (page: Page) =>
  page.evaluate((reads) => {
    const w = window as unknown as ToneWindow;
    const an = w.__vdiAudio!.analyser!;
    const wave = new Float32Array(an.fftSize);
    const spectrum = new Float32Array(an.frequencyBinCount);
    const windowMs = (an.fftSize / an.context.sampleRate) * 1000;
    let onset: number | undefined;
    let lastRead = 0;
    const peaks: number[] = [];
    w.__tone = null;
    if (w.__toneWatch) clearInterval(w.__toneWatch);
    w.__toneWatch = window.setInterval(() => {
      an.getFloatTimeDomainData(wave);
      let peak = 0;
      for (const v of wave) peak = Math.max(peak, Math.abs(v));
      const now = Date.now();
      if (peak >= 0.01) w.__lastSound = now;
      if (peak > 0.05 && onset === undefined) onset = now;
      if (onset === undefined || w.__tone || peak <= 0.05) return;
      if (now - onset < windowMs || now - lastRead < windowMs) return;
      an.getFloatFrequencyData(spectrum);
      let best = 1;
      for (let i = 2; i < spectrum.length; i++) if (spectrum[i]! > spectrum[best]!) best = i;
      if (!(spectrum[best]! > -Infinity)) return;
      lastRead = now;
      peaks.push((best * an.context.sampleRate) / an.fftSize);
      if (peaks.length < reads) return;
      const sorted = [...peaks].sort((a, b) => a - b);
      w.__tone = { at: onset, peakHz: sorted[sorted.length >> 1]!, peaks };
    }, 2);
  }, PITCH_READS);

/** silence for this long after a tone: it has played out (a gap inside one is far shorter) */
const QUIET_MS = 250;

/** Resolves once the page's analyser has been silent for QUIET_MS (the tone has played out). */
const quiet = (page: Page) =>
  until(
    () =>
      page.evaluate(
        (ms) => Date.now() - ((window as unknown as ToneWindow).__lastSound ?? 0) >= ms,
        QUIET_MS,
      ),
    5000,
    'the page to go quiet',
  );

const toneHeard = (page: Page) =>
  page.evaluate(() => (window as unknown as ToneWindow).__tone ?? null);

describe('sound: a tone played in the desktop is heard in the page', () => {
  const rig = new MediaRig();
  let pool: Pool;
  let ctx: BrowserContext;
  let page: Page;
  let sessionId = '';
  let desktop: XvncHandle;
  const latencies: Record<string, number[]> = { opus: [], pcm: [] };

  /** PULSE_SERVER as the desktop's programs have it */
  const pulseEnv = () => ({
    PULSE_SERVER: `unix:${path.dirname(desktop.xEnv!.XAUTHORITY)}/pulse/native`,
  });

  /** Plays the tone and measures start → heard in `p`, ms; undefined when not heard. */
  async function measure(
    p: Page,
  ): Promise<{ ms: number; peakHz: number; peaks: number[] } | undefined> {
    await watchForTone(p);
    const t0 = Date.now();
    const played = asDesktop(desktop, 'paplay tone.wav', pulseEnv());
    let heard: NonNullable<ToneWindow['__tone']> | null = null;
    await until(
      async () => (heard = await toneHeard(p)) ?? undefined,
      5000,
      'the tone in the page',
    ).catch(() => undefined);
    await played;
    const h = heard as NonNullable<ToneWindow['__tone']> | null;
    return h ? { ms: h.at - t0, peakHz: h.peakHz, peaks: h.peaks } : undefined;
  }

  async function soundReady(p: Page, codec: string) {
    await p.waitForFunction(
      (c) => {
        const a = (window as unknown as ToneWindow).__vdiAudio;
        return a?.codec === c && a.state === 'running' && a.packets > 10;
      },
      codec,
      { timeout: 30_000 },
    );
  }

  beforeAll(async () => {
    await rig.start(['--autoplay-policy=no-user-gesture-required']);
    pool = await rig.pool('sound', {});
    ctx = await rig.context();
    ({ page, sessionId } = await rig.viewer(ctx, pool));
    desktop = rig.desktopOf(sessionId);
    fs.writeFileSync(path.join(desktop.home, 'tone.wav'), toneWav(1000, 400));
    fs.chownSync(path.join(desktop.home, 'tone.wav'), desktop.account!.uid, desktop.account!.gid);
    // the desktop's PulseAudio is up (it starts beside the session)
    await until(
      () =>
        asDesktop(desktop, 'pactl info', pulseEnv()).then(
          (s) => /Default Sink: vdi/.test(s),
          () => false,
        ),
      20_000,
      "the desktop's PulseAudio",
    );
  });

  afterAll(async () => {
    for (const [codec, ms] of Object.entries(latencies))
      if (ms.length)
        console.log(
          `sound latency (${codec}), tone started in the desktop → detected in the page: ${ms.join(', ')} ms (median ${[...ms].sort((a, b) => a - b)[Math.floor(ms.length / 2)]} ms)`,
        );
    await rig.stop();
  });

  it('plays the desktop tone through Opus and WebCodecs', async () => {
    await soundReady(page, 'opus');
    // silence while the desktop plays nothing
    await watchForTone(page);
    await new Promise((r) => setTimeout(r, 300));
    expect(await toneHeard(page)).toBeNull();
    for (let i = 0; i < TRIALS; i++) {
      const m = await measure(page);
      expect(m, 'the tone was heard').toBeDefined();
      expect(Math.abs(m!.peakHz - 1000), `pitch of ${m!.peaks.join(', ')} Hz`).toBeLessThan(200);
      latencies.opus!.push(m!.ms);
      await quiet(page); // the tone's end
    }
    // generous: the figure is the measurement above; this only catches a broken pipeline
    expect(Math.min(...latencies.opus!)).toBeLessThan(1000);
  });

  it('mute silences it', async () => {
    // the toolbar fades while the desktop is used: the pointer at the top edge brings it back
    await page.mouse.move(640, 2);
    await page.getByRole('button', { name: 'Sound' }).click();
    const panel = page.getByRole('complementary', { name: 'Sound' });
    await screenshot(page, 'viewer-sound.png');
    await panel.getByLabel('Mute').check();
    expect(await measure(page)).toBeUndefined();
    await panel.getByLabel('Mute').uncheck();
    expect(await measure(page)).toBeDefined();
  });

  it('falls back to raw PCM when the browser has no AudioDecoder', async () => {
    await page.close();
    const pcmCtx = await rig.context();
    await pcmCtx.addInitScript(() => {
      delete (window as unknown as { AudioDecoder?: unknown }).AudioDecoder;
    });
    const p = await pcmCtx.newPage();
    await p.goto(`${rig.server.url}/desktop/${sessionId}`);
    await soundReady(p, 'pcm');
    for (let i = 0; i < TRIALS; i++) {
      const m = await measure(p);
      expect(m, 'the tone was heard').toBeDefined();
      latencies.pcm!.push(m!.ms);
      await quiet(p);
    }
    page = p;
  });

  it('gives a shadowing administrator no sound', async () => {
    const shadowCtx = await rig.context();
    const s = await shadowCtx.newPage();
    await s.goto(`${rig.server.url}/desktop/${sessionId}?shadow=1`);
    await s.waitForFunction(() => document.body.dataset.viewer === 'connected', null, {
      timeout: 30_000,
    });
    expect(await s.getByRole('button', { name: 'Sound' }).count()).toBe(0);
    expect(await s.evaluate(() => (window as unknown as ToneWindow).__vdiAudio)).toBeUndefined();
    await shadowCtx.close();
  });
});
