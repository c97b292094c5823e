// The player page: start or resume a game, stream the webcam, draw the maze, keyboard fallback.
import { api, announcer, forgetSession, formatTime, savedSession, saveSession, sessionFromUrl, showBanner } from "./api.js";
import { Camera, describeCameraError } from "./camera.js";
import { LiveSocket, wsUrl } from "./connection.js";
import { ARROWS, gestureIcon, highlightLegend, renderLegend } from "./gestures.js";
import { HandOverlay } from "./hand-overlay.js";
import { MazeView, publishState } from "./maze-view.js";
import { FrameStreamer } from "./streamer.js";

const $ = (id) => document.getElementById(id);
const SETTINGS_KEY = "gesture-maze.settings";
const KEYS = {
  ArrowUp: "up", ArrowDown: "down", ArrowLeft: "left", ArrowRight: "right",
  w: "up", s: "down", a: "left", d: "right", W: "up", S: "down", A: "left", D: "right",
};

// ---- settings: defaults < saved < URL (?size=320x240&quality=0.7&fps=15&inflight=2) -----------------------
function loadSettings() {
  const settings = { size: "320x240", quality: 0.7, fps: 15, maxInFlight: 2, landmarks: true };
  try {
    Object.assign(settings, JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}"));
  } catch { /* ignore a corrupt entry */ }
  const q = new URLSearchParams(location.search);
  if (/^\d+x\d+$/.test(q.get("size") ?? "")) settings.size = q.get("size");
  if (q.has("quality")) settings.quality = clamp(Number(q.get("quality")), 0.1, 1, settings.quality);
  if (q.has("fps")) settings.fps = clamp(Number(q.get("fps")), 1, 60, settings.fps);
  if (q.has("inflight")) settings.maxInFlight = clamp(Number(q.get("inflight")), 1, 4, settings.maxInFlight);
  return settings;
}
const clamp = (v, lo, hi, fallback) => (Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback);
const settings = loadSettings();
const saveSettings = () => localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
const frameBox = () => settings.size.split("x").map(Number);

// ---- page state ---------------------------------------------------------------------------------
const announce = announcer($("announcer"));
const mazeCanvas = $("maze");
const mazeView = new MazeView(mazeCanvas);
const overlay = new HandOverlay($("overlay"));
const camera = new Camera($("video"));
let session = null;
let socket = null;
let maze = null;
let state = null;
let stateAt = 0;
let wonLevel = null;
let serverMaxFps = Infinity;
let bannerSource = null; // which concern owns the banner right now: "connection" | "camera" | "server" | ...
let pingSentAt = null;
let lastCommand = null;
const COMMAND_SHOW_MS = 700;

const streamer = new FrameStreamer(
  {
    grab: () => camera.grab(...frameBox(), settings.quality),
    socket: { get open() { return !!socket?.open; }, get bufferedAmount() { return socket?.bufferedAmount ?? 0; },
      sendBinary: (b) => socket?.sendBinary(b) ?? false },
    onStats: renderStats,
  },
  { fps: settings.fps, maxInFlight: settings.maxInFlight },
);

function banner(source, value) {
  if (!value && bannerSource !== source) return; // do not clear someone else's message
  bannerSource = value ? source : null;
  showBanner($("banner"), value);
}

// ---- starting, resuming, leaving -----------------------------------------------------------------
function boot() {
  renderLegend($("legend"), currentScheme());
  bindControls();
  const fromUrl = sessionFromUrl();
  if (fromUrl) {
    saveSession(fromUrl);
    // Keep the token out of the address bar (and out of screenshots / shared links); sessionStorage has it.
    const q = new URLSearchParams(location.search);
    q.delete("session");
    q.delete("token");
    history.replaceState(null, "", location.pathname + (q.toString() ? `?${q}` : ""));
  }
  const resume = fromUrl ?? savedSession();
  if (resume) join(resume);
  else showStart();
  autoStartCamera();
  setInterval(tickClock, 250);
  setInterval(() => {
    if (socket?.open) {
      pingSentAt = performance.now();
      socket.send({ type: "ping", t: Date.now() });
    }
  }, 15000);
}

function showStart(note = "") {
  document.body.classList.add("no-game");
  $("start-card").hidden = false;
  $("win-card").hidden = true;
  $("start-note").textContent = note;
  $("restart").disabled = true;
  $("new-game").disabled = true;
  $("share-copy").disabled = true;
  $("share-link").value = "";
  $("status-pill").textContent = "no game";
  setConn("idle", "Not connected");
}

async function startGame(event) {
  event.preventDefault();
  const button = $("start-button");
  button.disabled = true;
  $("start-note").textContent = "Creating your maze…";
  const size = Number($("start-size").value);
  const body = { width: size, height: size, scheme: $("start-scheme").value, private: $("start-private").checked };
  const seed = new URLSearchParams(location.search).get("seed");
  if (seed !== null && /^\d+$/.test(seed)) body.seed = Number(seed);
  try {
    const created = await api.createSession(body);
    saveSession(created);
    banner("create", null);
    join(created);
  } catch (err) {
    $("start-note").textContent = "";
    banner("create", createErrorBanner(err));
  } finally {
    button.disabled = false;
  }
}

function createErrorBanner(err) {
  const retry = [{ label: "Try again", primary: true, onClick: () => $("start-form").requestSubmit() }];
  if (err.status === 0) {
    return { code: "unreachable", title: "Can't reach the game server.",
      text: "Check your internet connection, or that the Gesture Maze server is running, then try again.", actions: retry };
  }
  if (err.status === 429) {
    return { code: err.code, kind: "warn", title: "Too many new games from here.",
      text: "Wait a minute, then start again.", actions: retry };
  }
  if (err.status === 503) {
    return { code: err.code, kind: "warn", title: "The server is full right now.",
      text: "Try again in a few minutes, or watch someone else's game meanwhile.",
      actions: [...retry, { label: "Watch games", onClick: () => (location.href = "/lobby.html") }] };
  }
  return { code: err.code, title: "The game could not start.", text: `The server said: ${err.message}`, actions: retry };
}

function join(s) {
  session = s;
  document.body.classList.remove("no-game");
  $("start-card").hidden = true;
  $("restart").disabled = false;
  $("new-game").disabled = false;
  const share = new URL("/watch.html", location.origin);
  share.searchParams.set("session", s.session_id);
  if (s.watch_token) share.searchParams.set("token", s.watch_token);
  $("share-link").value = share.href;
  $("share-copy").disabled = false;
  socket?.close();
  socket = new LiveSocket(
    () => wsUrl(`/ws/play/${encodeURIComponent(s.session_id)}?token=${encodeURIComponent(s.player_token)}`),
    { onMessage, onStatus, onOpen: () => streamer.resetConnection() },
  );
  socket.connect();
  if (camera.active) streamer.start();
  mazeCanvas.focus({ preventScroll: true });
}

function leave(note) {
  streamer.stop();
  socket?.close();
  socket = null;
  session = null;
  state = null;
  forgetSession();
  showStart(note);
}

// ---- connection status ---------------------------------------------------------------------------
function setConn(stateName, text) {
  const el = $("conn");
  el.dataset.state = stateName;
  el.textContent = text;
}

async function onStatus(status, info) {
  if (status === "open") {
    setConn("open", "Connected");
    banner("connection", null);
  } else if (status === "connecting") {
    setConn("connecting", "Connecting…");
  } else if (status === "retrying") {
    setConn("retrying", "Reconnecting…");
    if (info.delay === undefined) return;
    const seconds = Math.max(1, Math.round(info.delay / 1000));
    banner("connection", {
      kind: "warn", code: "reconnecting", title: "Connection lost — reconnecting.",
      text: `Trying again in ${seconds} s (attempt ${info.attempt}). Your game is kept on the server; you'll be back where you were.`,
      actions: [{ label: "Retry now", primary: true, onClick: () => socket?.reconnectNow() }],
    });
    if (info.attempt >= 2) checkSessionStillThere();
  } else if (status === "failed") {
    setConn("failed", "Disconnected");
    streamer.stop();
    if (info.code === 4000) {
      banner("connection", {
        kind: "warn", code: "replaced", title: "This game is open in another tab or window.",
        text: "Only one window can steer a game. Play here instead, or close this tab.",
        actions: [{ label: "Play here", primary: true, onClick: () => { socket?.reconnectNow(); if (camera.active) streamer.start(); } }],
      });
    } else if (info.error?.code === "forbidden") {
      sessionGone("This link is not allowed to steer that game.", "forbidden");
    } else {
      sessionGone("That game has ended (the server closes games nobody has played for a while).", "session_gone");
    }
  }
}

async function checkSessionStillThere() {
  if (!session) return;
  try {
    await api.getSession(session.session_id);
  } catch (err) {
    if (err.status === 404) sessionGone("That game has ended (the server closes games nobody has played for a while).", "session_gone");
    else if (err.status === 0) {
      banner("connection", {
        kind: "error", code: "unreachable", title: "Can't reach the game server.",
        text: "Check your internet connection or that the server is running. We keep retrying and will resume your game.",
        actions: [{ label: "Retry now", primary: true, onClick: () => socket?.reconnectNow() }],
      });
    }
  }
}

function sessionGone(text, code) {
  leave("");
  banner("connection", {
    code, title: "Your game is gone.", text: `${text} Start a new one — it takes a second.`,
    actions: [{ label: "New game", primary: true, onClick: () => { banner("connection", null); $("start-button").focus(); } }],
  });
}

// ---- server messages -----------------------------------------------------------------------------
function onMessage(msg) {
  switch (msg.type) {
    case "welcome":
      serverMaxFps = msg.limits?.max_fps ?? Infinity;
      streamer.setFps(Math.min(settings.fps, serverMaxFps));
      if (msg.scheme) setScheme(msg.scheme);
      if (msg.resumed) { // the server kept the game (across a restart or another server): say so
        setConn("open", "Connected — game resumed");
        announce("Game resumed where you left off.");
      }
      break;
    case "state":
      onState(msg);
      break;
    case "won":
      onWon(msg);
      break;
    case "frame":
      streamer.onFrame(msg);
      onFrame(msg);
      break;
    case "pong":
      if (pingSentAt !== null && streamer.stats.rttMs === null) $("stat-rtt").textContent = Math.round(performance.now() - pingSentAt);
      pingSentAt = null;
      break;
    case "error":
      if (msg.code === "forbidden" || msg.code === "not_found") return; // the close that follows handles it
      if (msg.code === "not_playing" || msg.code === "not_won") return; // the win card already says so
      banner("server", { kind: "warn", code: msg.code, title: "The server said:", text: msg.message });
      setTimeout(() => banner("server", null), 5000);
      break;
    default:
      break;
  }
}

function onState(msg) {
  const previous = state;
  if (msg.maze) {
    maze = msg.maze;
    mazeView.setMaze(maze);
  }
  state = msg;
  stateAt = performance.now();
  mazeView.setState(msg);
  publishState(mazeCanvas, msg, maze);
  $("hud-level").textContent = msg.level;
  $("hud-moves").textContent = msg.moves;
  $("hud-watchers").textContent = msg.spectators ?? 0;
  $("status-pill").textContent = msg.status === "won" ? "solved!" : "playing";
  if (msg.scheme) setScheme(msg.scheme);
  tickClock();
  if (msg.last_move) {
    const how = msg.last_move.source === "gesture" ? " (gesture)" : "";
    announce(msg.last_move.ok ? `Moved ${msg.last_move.direction}${how}.` : `Wall — can't go ${msg.last_move.direction}.`);
  } else if (previous && previous.level !== msg.level) {
    announce(`Level ${msg.level}: a ${maze.width} by ${maze.height} maze. Reach the green star.`);
  }
  if (msg.status === "won" && wonLevel === null) onWon({ level: msg.level, moves: msg.moves, elapsed_s: msg.elapsed_s });
  if (msg.status === "playing" && wonLevel !== null) {
    wonLevel = null;
    $("win-card").hidden = true;
  }
}

function onWon(msg) {
  wonLevel = msg.level;
  $("win-title").textContent = `Level ${msg.level} solved!`;
  $("win-text").textContent = `${msg.moves} moves in ${formatTime(msg.elapsed_s)}.`;
  $("win-card").hidden = false;
  announce(`Level ${msg.level} solved in ${msg.moves} moves. The next level starts in a moment.`);
}

function onFrame(msg) {
  const name = $("gesture-name");
  const gesture = msg.hand ? msg.gesture : null;
  name.dataset.gesture = gesture ?? "";
  name.textContent = !msg.hand ? "No hand" : gesture ?? "Not sure";
  $("gesture-icon").innerHTML = gestureIcon(gesture);
  const pct = Math.round((msg.confidence ?? 0) * 100);
  $("gesture-confidence").textContent = msg.hand ? `${pct}% sure` : "Show your hand to the camera";
  $("confidence-bar").style.width = `${msg.hand ? pct : 0}%`;
  // A command fires on one frame only; keep it on screen a moment so people can see what happened.
  const now = performance.now();
  if (msg.command) lastCommand = { direction: msg.command, at: now };
  const shown = lastCommand && now - lastCommand.at < COMMAND_SHOW_MS ? lastCommand.direction : null;
  const cmd = $("command");
  cmd.dataset.active = String(!!shown);
  cmd.dataset.command = shown ?? "";
  cmd.textContent = shown ? ARROWS[shown] : "·";
  cmd.setAttribute("aria-label", shown ? `Command ${shown}` : "No command");
  highlightLegend($("legend"), shown);
  overlay.draw(msg.landmarks, !!shown);
}

function renderStats(s) {
  $("stat-fps").textContent = s.fps.toFixed(1);
  $("stat-proc").textContent = s.processingMs === null ? "—" : Math.round(s.processingMs);
  if (s.rttMs !== null) $("stat-rtt").textContent = Math.round(s.rttMs);
  $("stat-dropped").textContent = s.dropped;
  $("stats").dataset.replies = s.replies;
  $("stats").dataset.sent = s.sent;
}

function tickClock() {
  if (!state) return;
  const running = state.status === "playing" && state.player_connected !== false;
  const seconds = state.elapsed_s + (running ? (performance.now() - stateAt) / 1000 : 0);
  $("hud-time").textContent = formatTime(seconds);
}

// ---- camera ----------------------------------------------------------------------------------------
async function startCamera(deviceId) {
  const button = $("camera-start");
  button.disabled = true;
  try {
    await camera.start(deviceId);
    banner("camera", null);
    $("camera-intro").hidden = true;
    $("preview").dataset.camera = "on";
    const pill = $("camera-state");
    pill.dataset.on = "true";
    pill.textContent = "camera on";
    const v = $("video");
    if (v.videoWidth) $("preview").style.aspectRatio = `${v.videoWidth} / ${v.videoHeight}`;
    localStorage.setItem("gesture-maze.camera", camera.deviceId);
    await fillCameraList();
    if (session) streamer.start();
    announce("Camera on. Show your hand.");
  } catch (err) {
    const info = describeCameraError(err);
    banner("camera", { ...info, actions: [{ label: "Turn on camera", primary: true, onClick: () => startCamera() }] });
    button.textContent = "Try again";
  } finally {
    button.disabled = false;
  }
}

async function fillCameraList() {
  const select = $("camera-select");
  const devices = await camera.listDevices();
  select.replaceChildren(
    // Labels may be file paths (fake devices) on some systems: the last part is the readable one.
    ...devices.map((d, i) => {
      const label = (d.label || `Camera ${i + 1}`).split("/").pop();
      return new Option(label, d.deviceId, false, d.deviceId === camera.deviceId);
    }),
  );
  select.disabled = devices.length < 2 && camera.active;
  if (!devices.length) select.append(new Option("No camera found", ""));
}

async function autoStartCamera() {
  // Only skip the explanation when the browser already has the user's permission.
  let granted = new URLSearchParams(location.search).get("camera") === "1";
  try {
    granted ||= (await navigator.permissions?.query({ name: "camera" }))?.state === "granted";
  } catch { /* Firefox may not know the "camera" permission name */ }
  if (granted) startCamera(localStorage.getItem("gesture-maze.camera") || undefined);
}

// ---- controls --------------------------------------------------------------------------------------
function currentScheme() {
  return document.querySelector('input[name="scheme"]:checked')?.value ?? "counting";
}

function setScheme(scheme) {
  const radio = document.querySelector(`input[name="scheme"][value="${scheme}"]`);
  if (radio && !radio.checked) radio.checked = true;
  $("start-scheme").value = scheme;
  if ($("legend").dataset.scheme !== scheme) {
    $("legend").dataset.scheme = scheme;
    renderLegend($("legend"), scheme);
  }
}

function move(direction) {
  if (!socket?.open || !state) return;
  socket.send({ type: "move", direction });
}

function bindControls() {
  $("start-form").addEventListener("submit", startGame);
  $("camera-start").addEventListener("click", () => startCamera());
  $("camera-select").addEventListener("change", (e) => startCamera(e.target.value || undefined));
  navigator.mediaDevices?.addEventListener?.("devicechange", () => camera.active && fillCameraList());
  $("video").addEventListener("loadedmetadata", (e) => {
    $("preview").style.aspectRatio = `${e.target.videoWidth} / ${e.target.videoHeight}`;
  });
  for (const radio of document.querySelectorAll('input[name="scheme"]')) {
    radio.addEventListener("change", () => {
      setScheme(radio.value);
      socket?.send({ type: "scheme", scheme: radio.value });
    });
  }
  $("start-scheme").addEventListener("change", (e) => setScheme(e.target.value));
  $("restart").addEventListener("click", () => socket?.send({ type: "restart" }));
  $("new-game").addEventListener("click", () => leave("Pick a size and start."));
  $("next-level").addEventListener("click", () => socket?.send({ type: "next_level" }));
  $("share-copy").addEventListener("click", async () => {
    const input = $("share-link");
    try {
      await navigator.clipboard.writeText(input.value);
      announce("Spectator link copied.");
      $("share-copy").textContent = "Copied ✓";
      setTimeout(() => ($("share-copy").textContent = "Copy link"), 1500);
    } catch {
      input.select();
    }
  });

  const size = $("set-size");
  if (![...size.options].some((o) => o.value === settings.size)) size.append(new Option(settings.size, settings.size));
  size.value = settings.size;
  size.addEventListener("change", () => { settings.size = size.value; saveSettings(); });
  const quality = $("set-quality");
  quality.value = settings.quality;
  $("out-quality").textContent = settings.quality;
  quality.addEventListener("input", () => {
    settings.quality = Number(quality.value);
    $("out-quality").textContent = settings.quality;
    saveSettings();
  });
  const fps = $("set-fps");
  fps.value = settings.fps;
  $("out-fps").textContent = settings.fps;
  fps.addEventListener("input", () => {
    settings.fps = Number(fps.value);
    $("out-fps").textContent = settings.fps;
    streamer.setFps(Math.min(settings.fps, serverMaxFps));
    saveSettings();
  });
  const lm = $("set-landmarks");
  lm.checked = settings.landmarks;
  overlay.enabled = settings.landmarks;
  lm.addEventListener("change", () => {
    settings.landmarks = overlay.enabled = lm.checked;
    if (!lm.checked) overlay.clear();
    saveSettings();
  });

  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const tag = e.target?.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    const direction = KEYS[e.key];
    if (direction) {
      e.preventDefault();
      move(direction);
    } else if ((e.key === "r" || e.key === "R") && state) {
      socket?.send({ type: "restart" });
    } else if ((e.key === "n" || e.key === "N") && wonLevel !== null) {
      socket?.send({ type: "next_level" });
    }
  });
}

boot();
