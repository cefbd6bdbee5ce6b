import { chromium, type Browser } from 'playwright-core';

/**
 * Debian's Chromium (browsers cannot be downloaded here), with the flags this machine needs.
 * `extraArgs`: more command-line switches (e.g. an autoplay policy for the sound test).
 */
export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  });
}
