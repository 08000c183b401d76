// Playwright runs the e2e suite in the system Chromium (Playwright cannot
// download its own browsers here), against the built app in dist/ served on
// loopback. The JSON report lets .ci/run count passed/failed.
import { defineConfig } from "@playwright/test";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
// Without the background-networking flags Chromium keeps trying hosts it cannot reach.
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
];
const PORT = Number(process.env.E2E_PORT || 4173);
// The native relay serves dist/ as it does in production; E2E_SERVER=vite uses Vite's preview server instead.
const RELAY = new URL("./.venv/bin/edge-relay", import.meta.url).pathname;
const SERVER =
  process.env.E2E_SERVER === "vite"
    ? `npx --no-install vite preview --host 127.0.0.1 --port ${PORT} --strictPort`
    : `${RELAY} --listen 127.0.0.1:${PORT} --web dist --memory-only`;

export default defineConfig({
  testDir: "e2e",
  timeout: 60_000,
  expect: { timeout: 20_000 },
  globalTimeout: 15 * 60_000,
  fullyParallel: false,
  workers: 1,
  retries: 0,
  forbidOnly: !!process.env.CI,
  // Not test-results/ itself: Playwright empties its outputDir, and pytest's report lives there.
  outputDir: "test-results/e2e-artifacts",
  reporter: [["list"], ["json", { outputFile: "test-results/e2e.json" }]],
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    browserName: "chromium",
    headless: true,
    launchOptions: { executablePath: CHROMIUM, args: CHROMIUM_ARGS },
    trace: "off",
  },
  webServer: {
    command: SERVER,
    url: `http://127.0.0.1:${PORT}/`,
    reuseExistingServer: false,
    timeout: 30_000,
    stdout: "ignore",
    stderr: "pipe",
  },
});
