// Drives the wasmgate admin dashboard in headless Debian chromium through playwright-core.
// Usage: node dashboard.mjs ADMIN_URL STREAM_PATH SCREENSHOT.png [TOKEN [SO_PATH]]
// Checks that the page shows the live stream (with a bitrate) and a bandwidth figure, and, with
// SO_PATH (app/instance/name), that shared object's row and slots; keeps a screenshot, then uses
// the reload, reload-config, kick (on a player) and stop buttons. Prints one JSON line; exit 0 = pass.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, streamPath, shot, token, soPath] = process.argv.slice(2);
if (!url || !streamPath || !shot) {
  console.error("usage: node dashboard.mjs ADMIN_URL STREAM_PATH SCREENSHOT.png [TOKEN [SO_PATH]]");
  process.exit(2);
}

const profile = mkdtempSync(join(tmpdir(), "wasmgate-chromium-"));
const result = { ok: false, steps: [] };
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: 60000,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(20000);
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  await page.goto(url, { waitUntil: "load" });
  result.steps.push("loaded");

  if (token) {
    // Without the token the page asks for it.
    await page.locator("#auth").waitFor({ state: "visible" });
    await page.fill("#token", token);
    await page.click("#auth button");
    result.steps.push("token entered");
  }

  const row = page.locator(`tr[data-stream="${streamPath}"]`);
  await row.waitFor({ state: "visible" });
  // Live figures: the stream's bitrate and the header's input bandwidth become non-zero.
  await page.waitForFunction(
    (p) => {
      const r = document.querySelector(`tr[data-stream="${p}"] td.bitrate`);
      const bw = document.getElementById("bw-in");
      const out = document.getElementById("bw-out");
      return r && !r.textContent.startsWith("0 ") && /[1-9]/.test(bw.textContent) && /[1-9]/.test(out.textContent);
    },
    streamPath,
  );
  result.stream_row = (await row.innerText()).replace(/\s+/g, " ").trim();
  result.bandwidth_in = await page.locator("#bw-in").innerText();
  result.bandwidth_out = await page.locator("#bw-out").innerText();
  result.clients = await page.locator("#clients tbody tr[data-client]").count();
  result.apps = await page.locator("#apps tbody tr[data-app]").count();
  // The shared object's row (name, persistence, version, slots, subscribers) and its slots.
  let soSubscribers = [];
  if (soPath) {
    const so = page.locator(`#sos tr[data-so="${soPath}"]`);
    await so.waitFor({ state: "visible" });
    result.so_cells = (await so.locator("td").allInnerTexts()).map((t) => t.replace(/\s+/g, " ").trim());
    soSubscribers = (await so.getAttribute("data-subscribers")).split(",").filter(Boolean);
    await so.locator("button[data-so-name]").click();
    await page.locator("#so-data").waitFor({ state: "visible" });
    result.so_data = await page.locator("#so-data").innerText();
    result.steps.push("shared object shown");
  }
  // Let the graph gather a few samples before the picture is taken.
  await page.waitForTimeout(2500);
  await page.screenshot({ path: shot, fullPage: true });
  result.steps.push("screenshot");

  // Reload button: the built-in app answers with its 501 message, shown in the status bar.
  const app = streamPath.split("/")[0];
  await page.click(`tr[data-app="${app}"] button[data-reload]`);
  await page.waitForFunction(() => /built-in|Reloaded/.test(document.getElementById("status").textContent));
  result.reload_status = await page.locator("#status").innerText();
  result.steps.push("reload clicked");

  // Reload-config button: this gateway runs without a config file, and the page says so.
  await page.click("button[data-config-reload]");
  await page.waitForFunction(() => /config file/.test(document.getElementById("status").textContent));
  result.config_reload_status = await page.locator("#status").innerText();
  result.steps.push("config reload clicked");

  // Kick button: the player (a client that is neither the publisher nor using the shared
  // object) leaves the table.
  const publisher = await row.getAttribute("data-publisher");
  const others = [publisher, ...soSubscribers].map((id) => `:not([data-client="${id}"])`).join("");
  const player = page.locator(`#clients tr[data-client]${others}`).first();
  const playerId = await player.getAttribute("data-client");
  await player.locator("button[data-kick]").click();
  await page.locator(`#clients tr[data-client="${playerId}"]`).waitFor({ state: "detached" });
  result.kicked = Number(playerId);
  result.steps.push("player kicked");

  // Stop button: the publisher is kicked and the stream leaves the table.
  await page.click(`tr[data-stream="${streamPath}"] button[data-stop]`);
  await row.waitFor({ state: "detached" });
  result.steps.push("stream stopped");

  result.page_errors = consoleErrors;
  result.ok = consoleErrors.length === 0;
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
