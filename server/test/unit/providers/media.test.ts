/**
 * The parts of issue 13's media that take bytes or names from outside: the Ogg pages ffmpeg
 * writes (split anywhere, even byte by byte, they give the same packets), file names for
 * transfers, and the shell quoting of a published application's command.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { appSessionCommand, shellQuote } from '../../../src/providers/xvnc/app.js';
import { OggPacketReader } from '../../../src/providers/xvnc/audio.js';
import { checkFileName } from '../../../src/providers/xvnc/files.js';

/** One Ogg page holding `packets` (lacing values per RFC 3533). */
function oggPage(packets: Buffer[]): Buffer {
  const lacing: number[] = [];
  for (const p of packets) {
    let n = p.length;
    while (n >= 255) {
      lacing.push(255);
      n -= 255;
    }
    lacing.push(n);
  }
  const header = Buffer.alloc(27);
  header.write('OggS', 0, 'latin1');
  header[26] = lacing.length;
  return Buffer.concat([header, Buffer.from(lacing), ...packets]);
}

describe('OggPacketReader', () => {
  const head = Buffer.from('OpusHead........');
  const tags = Buffer.from('OpusTags........');
  const a = Buffer.alloc(300, 0xaa); // spans two segments
  const b = Buffer.alloc(255, 0xbb); // exactly one full segment, then a 0 lacing
  const c = Buffer.from([1, 2, 3]);
  const stream = Buffer.concat([oggPage([head]), oggPage([tags]), oggPage([a, b]), oggPage([c])]);

  it('gives the audio packets, skipping OpusHead and OpusTags', () => {
    const got: Buffer[] = [];
    new OggPacketReader((p) => got.push(Buffer.from(p))).push(stream);
    expect(got).toEqual([a, b, c]);
  });

  it('gives the same packets when the stream arrives byte by byte', () => {
    const got: Buffer[] = [];
    const r = new OggPacketReader((p) => got.push(Buffer.from(p)));
    for (let i = 0; i < stream.length; i++) r.push(stream.subarray(i, i + 1));
    expect(got).toEqual([a, b, c]);
  });

  it('refuses what is not an Ogg stream', () => {
    const r = new OggPacketReader(() => undefined);
    expect(() => r.push(Buffer.from('RIFF....WAVEfmt ....................'))).toThrow(/not an Ogg/);
  });
});

describe('checkFileName', () => {
  it('takes a plain name, Unicode and spaces included', () => {
    expect(checkFileName('q3 results.bin')).toBe('q3 results.bin');
    expect(checkFileName('Zoë’s notes.txt')).toBe('Zoë’s notes.txt');
  });

  it.each(['', '.', '..', '../x', 'a/b', 'x\u0000y', 'line\nbreak', 'é'.repeat(128)])(
    'refuses %j',
    (name) => {
      expect(() => checkFileName(name)).toThrow(/one path component/);
    },
  );
});

describe('a published application', () => {
  it('quotes any command as one shell word', () => {
    for (const s of [`it's`, `a "b" $c \`d\``, `''`, `\\`]) {
      expect(execFileSync('/bin/sh', ['-c', `printf %s ${shellQuote(s)}`]).toString()).toBe(s);
    }
  });

  it('runs the command under Openbox and exits Openbox after it', () => {
    const cmd = appSessionCommand({ name: 'X', command: `xterm -e sh -c 'read x'` });
    expect(cmd).toMatch(
      /^exec openbox --config-file "\$HOME\/\.config\/openbox\/vdi-app\.xml" --startup /,
    );
    // the --startup word, as sh sees it: the program, then openbox --exit
    const startup = execFileSync('/bin/sh', [
      '-c',
      `set -- ${cmd.replace(/^exec openbox --config-file "[^"]+" --startup /, '')}; printf %s "$1"`,
    ]).toString();
    expect(startup).toBe(`/bin/sh -c 'xterm -e sh -c '\\''read x'\\''; exec openbox --exit'`);
  });
});
