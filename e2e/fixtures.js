// Every spec imports `test` from here: it fails a test on any console error or
// uncaught exception in any page or worker of any context (the default `context` fixture
// and every `browser.newContext()`, in a test or a hook), so a page that logs an error on
// load cannot pass. A test that provokes an error on purpose says so with
// `allowConsoleErrors(/what it expects/)`.
import { test as base, expect } from "@playwright/test";

let allowed = [];
const watched = new WeakSet();

/** Let console errors matching `pattern` pass in the current test (for errors a test causes on purpose). */
export function allowConsoleErrors(pattern) {
  allowed.push(pattern);
}

function watch(context, errors) {
  if (watched.has(context)) return;
  watched.add(context);
  const where = (msg) => {
    const loc = msg.location?.();
    return loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : "";
  };
  context.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console.error: ${msg.text()}${where(msg)}`);
  });
  context.on("weberror", (err) => errors.push(`uncaught: ${err.error()}`));
}

// Errors not yet charged to a test: a context made in a beforeAll (the swarm spec's) logs into
// this too, and the next test to finish fails on what it holds.
const pending = [];

export const test = base.extend({
  watchNewContexts: [
    async ({ browser }, use) => {
      const newContext = browser.newContext;
      browser.newContext = async function (...args) {
        const context = await newContext.apply(this, args);
        watch(context, pending);
        return context;
      };
      await use();
      browser.newContext = newContext;
    },
    { scope: "worker", auto: true },
  ],
  consoleErrors: [
    async ({}, use) => {
      allowed = [];
      await use(pending);
      const unexpected = pending.splice(0).filter((e) => !allowed.some((p) => p.test(e)));
      expect(unexpected, "console errors and uncaught exceptions in the test's pages").toEqual([]);
    },
    { auto: true },
  ],
  context: async ({ context, consoleErrors }, use) => {
    watch(context, consoleErrors);
    await use(context);
  },
});

export { expect };
