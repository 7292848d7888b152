import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'

/** Debian's Chromium (playwright-core cannot download a browser here; .ci/run installs it). */
export const CHROMIUM = '/usr/bin/chromium'

/** Why the browser tests cannot run here (they are skipped, loudly), or undefined. */
export const chromiumMissing = existsSync(CHROMIUM)
  ? undefined
  : `SKIPPED: ${CHROMIUM} is missing (apt-get install chromium)`

/**
 * Headless Chromium with the flags this machine needs (no sandbox, no GPU, no traffic of its own),
 * and `extraArgs` (test/tls: --ignore-certificate-errors, for the test's self-signed certificate).
 */
export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--disable-background-networking',
      ...extraArgs,
    ],
  })
}
