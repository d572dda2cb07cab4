// Drives the gateway's player page in headless Debian chromium through playwright-core
// (tests/web_player.rs). Usage: node player.mjs PAGE_URL STREAM_KEY TRANSPORT SCREENSHOT.png [SECONDS]
// Opens the page, waits for STREAM_KEY (app/instance/name) in the list, picks TRANSPORT
// (http-flv, ws-flv or ll-hls), presses Play, and once the video plays lets the player settle at
// the live edge for SETTLE seconds (default 4), then watches it for SECONDS (default 8): currentTime and decoded frames at the start and end, and the page's
// glass-to-glass samples from the stream's clock strip. Keeps a screenshot and prints one JSON
// line; exit 0 = the page played without a page error (the Rust test judges the figures).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, streamKey, transport, shot, secondsArg, settleArg] = process.argv.slice(2);
if (!url || !streamKey || !transport || !shot) {
  console.error("usage: node player.mjs PAGE_URL STREAM_KEY TRANSPORT SCREENSHOT.png [SECONDS [SETTLE]]");
  process.exit(2);
}
const seconds = Number(secondsArg || 8);
const settle = Number(settleArg || 4);

const profile = mkdtempSync(join(tmpdir(), "wasmgate-chromium-"));
const result = { ok: false, transport, steps: [] };
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
    ],
    timeout: 60000,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(30000);
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  const consoleErrors = [];
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });

  await page.goto(url, { waitUntil: "load" });
  result.steps.push("loaded");
  result.mse_h264 = await page.evaluate(
    () => !!window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="avc1.4d401e,mp4a.40.2"'),
  );

  const play = page.locator(`tr[data-stream="${streamKey}"] button[data-play]`);
  await play.waitFor({ state: "visible" });
  await page.selectOption("#transport", transport);
  await play.click();
  result.steps.push("play clicked");

  const sample = () =>
    page.evaluate(() => {
      const v = document.getElementById("video");
      const q = v.getVideoPlaybackQuality();
      return {
        at: Date.now(),
        current_time: v.currentTime,
        frames: q.totalVideoFrames,
        dropped: q.droppedVideoFrames,
        width: v.videoWidth,
        height: v.videoHeight,
        paused: v.paused,
      };
    });
  try {
    await page.waitForFunction(() => document.getElementById("video").currentTime > 0.5, null, {
      timeout: 30000,
    });
  } catch (e) {
    result.status = await page.locator("#status").innerText();
    result.page_error_line = await page.locator("#error").innerText();
    throw e;
  }
  result.steps.push("playing");
  // A late joiner starts on the last keyframe; the player then catches up with the live edge.
  await page.waitForTimeout(settle * 1000);
  result.start = await sample();
  // The samples of the watched interval only, not those of the start-up.
  await page.evaluate(() => {
    window.wasmgatePlayer.samples = [];
  });
  await page.waitForTimeout(seconds * 1000);
  result.end = await sample();
  const g2g = await page.evaluate(() => ({
    samples: [...window.wasmgatePlayer.samples],
    clock_frames: window.wasmgatePlayer.clockFrames,
    frames_seen: window.wasmgatePlayer.framesSeen,
  }));
  const sorted = [...g2g.samples].sort((a, b) => a - b);
  const pick = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : null);
  result.latency_ms = {
    count: sorted.length,
    min: sorted.length ? sorted[0] : null,
    p50: pick(0.5),
    p90: pick(0.9),
    max: sorted.length ? sorted[sorted.length - 1] : null,
  };
  result.clock_frames = g2g.clock_frames;
  result.frames_seen = g2g.frames_seen;
  result.status = await page.locator("#status").innerText();
  result.page_error_line = await page.locator("#error").innerText();
  result.page_url = page.url();
  await page.screenshot({ path: shot, fullPage: true });
  result.steps.push("screenshot");

  result.page_errors = pageErrors;
  result.console_errors = consoleErrors;
  result.ok = pageErrors.length === 0 && result.page_error_line === "";
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
