// wasmgate player page: lists the live streams (/streams.json) and plays one with mpegts.js
// (HTTP-FLV, WebSocket-FLV) or hls.js (LL-HLS), all served by the gateway itself. Plain script,
// no build step. `window.wasmgatePlayer` exposes the state for the console and the tests.
//
// Clock strip: a stream whose top row carries the publisher's wall clock as 40 black/white
// blocks (see README "Browsers: the player page"; tests/web_player.rs publishes one with
// ffmpeg) gets a glass-to-glass latency figure: each displayed frame is drawn to a canvas, the
// blocks are read back and compared with this machine's clock. Streams without the strip show
// only the player-side figures.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const state = {
    // The entry from /streams.json being played, its transport and URL.
    current: null,
    // The mpegts.js or hls.js instance.
    player: null,
    // Glass-to-glass latency (ms) of recent displayed frames with a readable clock strip.
    samples: [],
    // Frames decoded from the clock strip since the stream started, and frames looked at.
    clockFrames: 0,
    framesSeen: 0,
    error: "",
    streams: [],
  };
  window.wasmgatePlayer = state;

  // ---- stream list ---------------------------------------------------------------------

  const keyOf = (s) => `${s.app}/${s.instance}/${s.name}`;
  let listed = "";

  async function refresh() {
    try {
      const r = await fetch("/streams.json", { cache: "no-store" });
      if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
      const { streams } = await r.json();
      state.streams = streams;
      $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      const text = JSON.stringify(streams);
      if (text !== listed) {
        listed = text;
        render(streams);
      }
    } catch (e) {
      $("updated").textContent = `list failed: ${e.message}`;
    }
  }

  function render(streams) {
    const body = $("streams").tBodies[0];
    body.replaceChildren();
    for (const s of streams) {
      const tr = document.createElement("tr");
      tr.dataset.stream = keyOf(s);
      const name = document.createElement("td");
      name.textContent = keyOf(s);
      const codecs = document.createElement("td");
      codecs.className = "codecs";
      codecs.textContent = [s.video, s.audio].filter(Boolean).join(" + ") || "no codec yet";
      const td = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.play = "";
      button.textContent = "Play";
      button.addEventListener("click", () => play(s));
      td.append(button);
      tr.append(name, codecs, td);
      if (state.current && keyOf(state.current.entry) === keyOf(s)) tr.className = "playing";
      body.append(tr);
    }
    $("empty").hidden = streams.length > 0;
  }

  // ---- playback ------------------------------------------------------------------------

  // The page's own scheme decides: http -> ws, https -> wss.
  function urlFor(entry, transport) {
    const l = window.location;
    const q = $("query").value.trim().replace(/^\?/, "");
    const suffix = q ? `?${q}` : "";
    if (transport === "ws-flv") {
      return `${l.protocol === "https:" ? "wss:" : "ws:"}//${l.host}${entry.ws_flv}${suffix}`;
    }
    const path = transport === "ll-hls" ? entry.ll_hls : entry.http_flv;
    return `${l.protocol}//${l.host}${path}${suffix}`;
  }

  function showError(msg) {
    state.error = msg;
    $("error").textContent = msg;
  }

  function stop() {
    const p = state.player;
    state.player = null;
    if (p) {
      if (p.destroy) p.destroy();
    }
    video.removeAttribute("src");
    video.load();
    state.current = null;
    $("stop").disabled = true;
    for (const tr of $("streams").tBodies[0].rows) tr.className = "";
  }

  function play(entry) {
    stop();
    showError("");
    const transport = $("transport").value;
    const url = urlFor(entry, transport);
    state.current = { entry, transport, url };
    state.samples = [];
    state.clockFrames = 0;
    state.framesSeen = 0;
    const ok = transport === "ll-hls" ? playHls(url) : playFlv(entry, url);
    if (!ok) return;
    $("stop").disabled = false;
    for (const tr of $("streams").tBodies[0].rows) {
      tr.className = tr.dataset.stream === keyOf(entry) ? "playing" : "";
    }
    const link = new URLSearchParams({ stream: keyOf(entry), transport });
    history.replaceState(null, "", `?${link}`);
    video.play().catch((e) => showError(`video.play(): ${e.message}`));
    watchFrames();
  }

  function playFlv(entry, url) {
    if (!window.mpegts || !mpegts.isSupported()) {
      showError("This browser has no Media Source Extensions: mpegts.js cannot play FLV here.");
      return false;
    }
    const p = mpegts.createPlayer(
      {
        type: "flv",
        isLive: true,
        url,
        // The gateway knows the codecs once their sequence headers arrived; without one
        // mpegts.js would wait for a track that never comes.
        hasVideo: entry.video ? true : undefined,
        hasAudio: entry.audio ? true : entry.video ? false : undefined,
      },
      {
        enableWorker: false,
        enableStashBuffer: false,
        lazyLoad: false,
        autoCleanupSourceBuffer: true,
        // Stay near the live edge: play a little faster when behind, jump when far behind.
        // A late joiner starts on the last keyframe, up to a GOP behind the live edge.
        liveSync: true,
        liveSyncTargetLatency: 0.3,
        liveSyncMaxLatency: 0.5,
        liveSyncPlaybackRate: 1.3,
        liveBufferLatencyChasing: true,
        liveBufferLatencyMaxLatency: 2.0,
        liveBufferLatencyMinRemain: 0.3,
      },
    );
    p.on(mpegts.Events.ERROR, (type, detail, info) => {
      showError(`mpegts.js ${type}: ${detail}${info && info.msg ? ` (${info.msg})` : ""}`);
    });
    p.attachMediaElement(video);
    p.load();
    state.player = p;
    return true;
  }

  function playHls(url) {
    if (window.Hls && Hls.isSupported()) {
      // Catch up to the live edge by playing faster when behind, as for FLV.
      const h = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.3, backBufferLength: 30 });
      h.on(Hls.Events.ERROR, (_, data) => {
        if (data.fatal) showError(`hls.js ${data.type}: ${data.details}`);
      });
      h.loadSource(url);
      h.attachMedia(video);
      state.player = h;
      return true;
    }
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      // Safari plays HLS itself.
      video.src = url;
      state.player = { destroy() {} };
      return true;
    }
    showError("This browser has neither Media Source Extensions nor native HLS.");
    return false;
  }

  // ---- clock strip ---------------------------------------------------------------------

  // Layout (white = 1): 40 square blocks across the top of the picture, each width/40 wide:
  // blocks 0-3 are 1010 (sync), 4-35 the publisher's Unix time in ms mod 2^32 (most
  // significant bit first), 36-39 the sum of that value's eight 4-bit nibbles mod 16.
  const BLOCKS = 40;
  const CELL = 4;
  const canvas = document.createElement("canvas");
  canvas.width = BLOCKS * CELL;
  canvas.height = CELL;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const MAX_SAMPLES = 600;

  // The publisher's clock (Unix ms) in the frame on screen, or null without a clean strip.
  function readClock() {
    const w = video.videoWidth;
    if (!w) return null;
    ctx.drawImage(video, 0, 0, w, w / BLOCKS, 0, 0, canvas.width, canvas.height);
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const bits = [];
    for (let b = 0; b < BLOCKS; b++) {
      let sum = 0;
      // The middle 2x2 pixels of each cell: clear of the blur at block edges.
      for (const [x, y] of [[1, 1], [2, 1], [1, 2], [2, 2]]) {
        const o = (y * canvas.width + b * CELL + x) * 4;
        sum += 0.299 * px[o] + 0.587 * px[o + 1] + 0.114 * px[o + 2];
      }
      const luma = sum / 4;
      if (luma > 72 && luma < 184) return null;
      bits.push(luma >= 128 ? 1 : 0);
    }
    if (bits[0] !== 1 || bits[1] !== 0 || bits[2] !== 1 || bits[3] !== 0) return null;
    const value = bits.slice(4, 36).reduce((v, bit) => v * 2 + bit, 0);
    const check = bits.slice(36, 40).reduce((v, bit) => v * 2 + bit, 0);
    let nibbles = 0;
    for (let i = 0; i < 8; i++) nibbles += Math.floor(value / 16 ** i) % 16;
    if (nibbles % 16 !== check) return null;
    // Unwrap mod 2^32 to the Unix time nearest to ours.
    const now = Date.now();
    const wrap = 2 ** 32;
    let t = now - (now % wrap) + value;
    if (t - now > wrap / 2) t -= wrap;
    if (now - t > wrap / 2) t += wrap;
    return Math.abs(now - t) < 600000 ? t : null;
  }

  let watching = false;
  function watchFrames() {
    if (watching || !("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
    watching = true;
    const onFrame = () => {
      if (state.player) {
        state.framesSeen += 1;
        const t = readClock();
        if (t !== null) {
          state.clockFrames += 1;
          state.samples.push(Date.now() - t);
          if (state.samples.length > MAX_SAMPLES) state.samples.shift();
        }
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  function median(xs) {
    if (!xs.length) return NaN;
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)];
  }

  // ---- status line ---------------------------------------------------------------------

  function status() {
    const c = state.current;
    if (!c) {
      $("status").textContent = "Pick a stream.";
      return;
    }
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const b = video.buffered;
    const ahead = b.length ? b.end(b.length - 1) - video.currentTime : 0;
    const lines = [
      `${keyOf(c.entry)} over ${c.transport}: ${c.url}`,
      [
        `time ${video.currentTime.toFixed(1)} s`,
        `buffered ahead ${ahead.toFixed(2)} s`,
        q ? `frames ${q.totalVideoFrames} decoded, ${q.droppedVideoFrames} dropped` : null,
        video.videoWidth ? `${video.videoWidth}x${video.videoHeight}` : null,
        video.paused ? "paused" : null,
      ]
        .filter(Boolean)
        .join(" · "),
    ];
    const lat = [];
    if (state.samples.length) {
      const recent = state.samples.slice(-25);
      lat.push(`glass-to-glass ${Math.round(median(recent))} ms (clock strip, median of ${recent.length} frames)`);
    }
    const p = state.player;
    if (window.Hls && p instanceof Hls && Number.isFinite(p.latency) && p.latency > 0) {
      lat.push(`hls.js latency ${p.latency.toFixed(2)} s`);
    }
    if (!lat.length) lat.push(`latency ≥ ${ahead.toFixed(2)} s (buffer only; no clock strip in this stream)`);
    lines.push(lat.join(" · "));
    $("status").textContent = lines.join("\n");
  }

  // ---- wiring --------------------------------------------------------------------------

  $("refresh").addEventListener("click", refresh);
  $("stop").addEventListener("click", stop);
  setInterval(refresh, 3000);
  setInterval(status, 500);

  // `?stream=app/instance/name&transport=ws-flv` plays that stream once it is listed.
  const wanted = new URLSearchParams(window.location.search);
  if (wanted.get("transport")) $("transport").value = wanted.get("transport");
  refresh().then(() => {
    const s = state.streams.find((e) => keyOf(e) === wanted.get("stream"));
    if (s) play(s);
  });
})();
