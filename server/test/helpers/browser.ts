import {
  chromium,
  type Browser,
  type Locator,
  type Page,
  type Request,
  type Response,
} from 'playwright-core';

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

/** Signs in on the page at `url` through the sign-in form. */
export async function signIn(
  page: Page,
  url: string,
  user: { username: string; password: string },
): Promise<void> {
  await page.goto(url);
  await page.getByLabel('Username').fill(user.username);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/**
 * Clicks a desktop card's Connect (or Resume) `button` and waits for the viewer's address.
 * When the viewer does not open, the error says what the page showed (the card's error line)
 * and what became of the connect request, so a failure explains itself.
 */
export async function openDesktop(page: Page, button: Locator, timeoutMs = 30_000): Promise<void> {
  const requests: string[] = [];
  const t0 = Date.now();
  const seen = (what: string) => requests.push(`${what} after ${Date.now() - t0} ms`);
  const onResponse = (r: Response) => {
    if (r.url().endsWith('/connect')) seen(`connect answered ${r.status()}`);
  };
  const onFailed = (r: Request) => {
    if (r.url().endsWith('/connect')) seen(`connect failed (${r.failure()?.errorText ?? '?'})`);
  };
  page.on('response', onResponse);
  page.on('requestfailed', onFailed);
  try {
    await button.click({ timeout: timeoutMs });
    seen('clicked');
    await page.waitForURL(/\/desktop\//, {
      timeout: Math.max(1000, timeoutMs - (Date.now() - t0)),
    });
  } catch (err) {
    const said = await page
      .locator('[role=alert]:visible')
      .allTextContents()
      .catch(() => []);
    throw new Error(
      `Connect did not open the viewer (${requests.join(', ') || 'not clicked'}; page at ` +
        `${page.url()}): ${said.join(' ').trim() || (err as Error).message}`,
      { cause: err },
    );
  } finally {
    page.off('response', onResponse);
    page.off('requestfailed', onFailed);
  }
}
