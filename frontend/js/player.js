// The player page: start or resume a game, stream the webcam, draw the maze, keyboard fallback.
import { api, announcer, forgetSession, formatTime, savedSession, saveSession, sessionFromUrl, showBanner } from "./api.js";
import { Camera, describeCameraError } from "./camera.js";
import { Feedback } from "./feedback.js";
import { LiveSocket, wsUrl } from "./connection.js";
import { Countdown, Sounds, bindSwipe, openDirections } from "./game-feel.js";
import {
  ARROWS, gestureIcon, gestureLabel, gestureWords, highlightLegend, keepWhole, markOpenDirections, renderLegend, renderMiniLegend,
} from "./gestures.js";
import { HandOverlay } from "./hand-overlay.js";
import { MazeView, publishState } from "./maze-view.js";
import { FrameStreamer } from "./streamer.js";
import { EdgeLandmarker, EdgeUnavailable } from "./edge.js";
import { Calibration } from "./calibration.js";

const $ = (id) => document.getElementById(id);
const SETTINGS_KEY = "gesture-maze.settings";
const KEYS = {
  ArrowUp: "up", ArrowDown: "down", ArrowLeft: "left", ArrowRight: "right",
  w: "up", s: "down", a: "left", d: "right", W: "up", S: "down", A: "left", D: "right",
};

// ---- settings: defaults < saved < URL (?size=320x240&quality=0.7&fps=15&inflight=2) -----------------------
function loadSettings() {
  const settings = {
    size: "320x240", quality: 0.7, fps: 15, maxInFlight: 2, landmarks: true, sound: true, countdown: 3, edge: false,
  };
  try {
    Object.assign(settings, JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}"));
  } catch { /* ignore a corrupt entry */ }
  const q = new URLSearchParams(location.search);
  if (/^\d+x\d+$/.test(q.get("size") ?? "")) settings.size = q.get("size");
  if (q.has("quality")) settings.quality = clamp(Number(q.get("quality")), 0.1, 1, settings.quality);
  if (q.has("fps")) settings.fps = clamp(Number(q.get("fps")), 1, 60, settings.fps);
  if (q.has("inflight")) settings.maxInFlight = clamp(Number(q.get("inflight")), 1, 4, settings.maxInFlight);
  if (q.has("countdown")) settings.countdown = clamp(Number(q.get("countdown")), 0, 5, settings.countdown);
  if (q.has("edge")) settings.edge = q.get("edge") === "1"; // links and tests: ?edge=1 (on) or ?edge=0
  return settings;
}
const clamp = (v, lo, hi, fallback) => (Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback);
const settings = loadSettings();
const saveSettings = () => localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
const frameBox = () => settings.size.split("x").map(Number);

// ---- page state ---------------------------------------------------------------------------------
const announce = announcer($("announcer"));
keepWhole($("gesture-name"));
const mazeCanvas = $("maze");
const mazeView = new MazeView(mazeCanvas);
const overlay = new HandOverlay($("overlay"));
const camera = new Camera($("video"), { onStopped: cameraStopped });
const calibration = new Calibration({
  slot: $("calibration-slot"), send: (msg) => socket?.send(msg), ready: () => camera.active && !!socket?.open,
});
let session = null;
let socket = null;
const feedback = new Feedback($("feedback-slot"), (m) => socket?.send(m) ?? false); // undo + consent
let maze = null;
let state = null;
let stateAt = 0;
let wonLevel = null;
let serverMaxFps = Infinity;
let bannerSource = null; // which concern owns the banner right now: "connection" | "camera" | "server" | ...
let pingSentAt = null;
let lastCommand = null;
let lastGesture = null; // the steering gesture of the latest frame (the one a gesture move came from)
const COMMAND_SHOW_MS = 700; // a move/wall badge next to the gesture shows this long, or until the hand changes
let commandTimer = null;
const CAMERA_STOPPED = "Camera stopped — turn it on again";
// Hints for the input the player has: touch (swipe, tap) or keys (a mouse and a keyboard).
const TOUCH = matchMedia("(pointer: coarse)").matches || matchMedia("(hover: none)").matches;
const RESUMED_SHOW_MS = 4000;
const LOST_AFTER_OUTAGE = "The connection dropped and the server no longer has this game (it restarted, or the game expired while you were away).";
const sounds = new Sounds();
const PHONE_LAYOUT = matchMedia("(max-width: 720px), (max-height: 500px) and (orientation: landscape)");
let paused = false; // the socket dropped: recognition and clock are frozen until it is back
let everOpen = false;
let resumedTimer = null;
let countdownFor = null; // the session the 3-2-1 already ran for
const countdown = new Countdown($("countdown"), $("countdown-num"), { seconds: settings.countdown, onTick: () => sounds.play("tick") });

const grabJpeg = () => camera.grab(...frameBox(), settings.quality);
const streamer = new FrameStreamer(
  {
    grab: settings.edge ? noFrameYet : grabJpeg,
    socket: { get open() { return !!socket?.open; }, get bufferedAmount() { return socket?.bufferedAmount ?? 0; },
      sendBinary: (b) => socket?.sendBinary(b) ?? false, send: (m) => socket?.send(m) ?? false },
    onStats: renderStats,
  },
  { fps: settings.fps, maxInFlight: settings.maxInFlight },
);

function banner(source, value) {
  if (!value && bannerSource !== source) return; // do not clear someone else's message
  bannerSource = value ? source : null;
  showBanner($("banner"), value);
}

// ---- edge mode: the hand is found on this device, only landmarks are sent ---------------------------
const EDGE_TEXT = {
  off: "Off: small camera frames go to the game server.",
  armed: "On: when the camera starts, its picture stays on this device.",
  loading: "Starting the hand finder on this device…",
  on: "On: your camera picture never leaves this device. Only 21 hand points per frame go to the server.",
};
const PRIVACY_TEXT = {
  jpeg: "Gesture Maze needs your camera to see your hand. Small, low-resolution frames go to this game server only " +
    "to recognise the gesture; nothing is recorded or kept.",
  edge: "Gesture Maze needs your camera to see your hand. The picture stays on this device: this page finds your " +
    "hand itself and sends only 21 points per frame.",
};
let landmarker = null;
let edgeLoading = null;
let sentPoints = null; // edge mode: the hand points of the latest landmarks message

function showEdge(state, text = EDGE_TEXT[state]) {
  const status = $("edge-status");
  status.dataset.state = state;
  status.textContent = text;
  $("intro-privacy").textContent = ["armed", "loading", "on"].includes(state) ? PRIVACY_TEXT.edge : PRIVACY_TEXT.jpeg;
}

function fallBackToJpeg(reason) {
  streamer.useSource(grabJpeg);
  landmarker?.close();
  landmarker = null;
  showEdge("fallback", `Not available here: ${reason}. Small camera frames go to the game server instead.`);
  announce(`Keeping the camera on this device is not available: ${reason}.`);
}

/** Edge mode chosen but its runtime not ready yet: send nothing (the picture stays here meanwhile). */
async function noFrameYet() {
  return null;
}

async function grabLandmarks() {
  if (!camera.active || !landmarker) return null;
  const message = await landmarker.read(camera.video);
  sentPoints = message?.hand?.points ?? null; // the server does not echo them: the overlay draws these
  if (landmarker?.tooSlow) {
    fallBackToJpeg(`finding the hand takes ${Math.round(landmarker.ms)} ms a frame in this browser`);
    return null;
  }
  return message;
}

/** Frames or landmarks, as the switch says; loads the runtime once (falls back to JPEG, saying why). */
async function chooseSource() {
  if (!settings.edge) {
    streamer.useSource(grabJpeg);
    landmarker?.close();
    landmarker = null;
    showEdge("off");
    return;
  }
  if (landmarker) return;
  streamer.useSource(noFrameYet); // a game joined while loading must not start JPEG frames
  showEdge("loading");
  edgeLoading ??= EdgeLandmarker.load().finally(() => { edgeLoading = null; });
  try {
    const loaded = await edgeLoading;
    if (!settings.edge) return loaded.close(); // switched off while loading
    landmarker = loaded;
    streamer.useSource(grabLandmarks);
    showEdge("on");
  } catch (err) {
    fallBackToJpeg(err instanceof EdgeUnavailable ? err.message : `it could not start (${err?.message ?? err})`);
  }
}

// ---- starting, resuming, leaving -----------------------------------------------------------------
function boot() {
  document.body.classList.toggle("touch", TOUCH);
  document.body.classList.toggle("keys", !TOUCH);
  renderLegend($("legend"), currentScheme());
  renderHelp(currentScheme());
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
  const name = $("start-name").value.trim();
  if (name) body.name = name;
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
  everOpen = false;
  countdownFor = null;
  socket.connect();
  $("share-hand").disabled = false;
  mazeCanvas.focus({ preventScroll: true });
}

/** Frames flow once the camera is live, a game is joined and any 3-2-1 start is over. */
function maybeStream() {
  if (!camera.active || !session || !state) return;
  if (countdown.running) return;
  const fresh = state.status === "playing" && state.moves === 0;
  if (fresh && settings.countdown > 0 && countdownFor !== session.session_id) {
    countdownFor = session.session_id;
    streamer.stop();
    // A first gesture that works: name one whose direction is open from the start.
    const open = openDirections(state, maze);
    const first = ["right", "down", "left", "up"].find((d) => open.includes(d));
    $("countdown-hint").textContent = first
      ? `Get ready: show ${gestureWords(state.scheme ?? currentScheme(), first)} to go ${ARROWS[first]}. The clock starts at your first move.`
      : "Get ready: show your hand. The clock starts at your first move.";
    countdown.start(() => streamer.start());
    return;
  }
  streamer.start();
}

function leave(note) {
  streamer.stop();
  countdown.stop();
  setPaused(false);
  $("share-hand").disabled = true;
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
    everOpen = true;
  } else if (status === "connecting") {
    setConn("connecting", "Connecting…");
  } else if (status === "retrying") {
    setConn("retrying", "Reconnecting…");
    if (everOpen) setPaused(true);
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
    const afterOutage = paused;
    setPaused(false);
    if (info.code === 4000) {
      banner("connection", {
        kind: "warn", code: "replaced", title: "This game is open in another tab or window.",
        text: "Only one window can steer a game. Play here instead, or close this tab.",
        actions: [{ label: "Play here", primary: true, onClick: () => { socket?.reconnectNow(); if (camera.active) streamer.start(); } }],
      });
    } else if (info.error?.code === "forbidden") {
      sessionGone("This link is not allowed to steer that game.", "forbidden");
    } else if (afterOutage) {
      sessionGone(LOST_AFTER_OUTAGE, "session_gone");
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
    if (err.status === 404) {
      sessionGone(paused ? LOST_AFTER_OUTAGE : "That game has ended (the server closes games nobody has played for a while).", "session_gone");
    }
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
  if (feedback.onMessage(msg)) return;
  switch (msg.type) {
    case "welcome":
      shareHandWanted = null; // a new connection: what the server says from here on is the truth
      // Back after an outage: the server kept the game (durable sessions also say resumed:true).
      if (paused || msg.resumed) showResumed();
      serverMaxFps = msg.limits?.max_fps ?? Infinity;
      streamer.setFps(Math.min(settings.fps, serverMaxFps));
      if (msg.scheme) setScheme(msg.scheme);
      if (msg.calibration) calibration.onMessage(msg.calibration); // a server that says what it kept
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
    case "calibration":
      calibration.onMessage(msg);
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

/** Outage: freeze the recognition panel and the clock visibly instead of showing stale results. */
function setPaused(on) {
  if (on && !paused && state) {
    state = { ...state, elapsed_s: shownElapsed() }; // freeze where the clock is, do not jump back
    stateAt = performance.now();
  }
  paused = on;
  const note = $("pause-note");
  $("readout").dataset.paused = String(on);
  document.querySelector(".hud").dataset.paused = String(on);
  if (on) {
    clearTimeout(resumedTimer);
    streamer.stop();
    note.dataset.state = "paused";
    note.textContent = "Paused — reconnecting…";
    note.hidden = false;
    clearCommand();
    overlay.clear();
    $("gesture-name").dataset.gesture = "";
    $("gesture-name").textContent = "Paused";
    $("gesture-icon").textContent = "‖";
    $("gesture-confidence").textContent = "reconnecting to the game server";
    $("confidence-bar").style.width = "0%";
    tickClock();
  } else if (note.dataset.state === "paused") {
    note.hidden = true;
    note.dataset.state = "";
  }
}

function showResumed() {
  setPaused(false);
  const note = $("pause-note");
  note.dataset.state = "resumed";
  note.textContent = "Resumed — right where you were";
  note.hidden = false;
  $("gesture-name").textContent = "—";
  $("gesture-icon").textContent = "·";
  $("gesture-confidence").textContent = camera.active ? "Show your hand" : "Camera off";
  announce("Connection back. Your game resumed where it was.");
  maybeStream();
  clearTimeout(resumedTimer);
  resumedTimer = setTimeout(() => {
    if (note.dataset.state === "resumed") {
      note.hidden = true;
      note.dataset.state = "";
    }
  }, RESUMED_SHOW_MS);
}

/**
 * The readout's command: what the server did with the last GESTURE move (state.last_move with source
 * "gesture"): a green arrow when it moved, a red "Wall ↑" when blocked. Keyboard, touch and undo moves
 * are not paired with the gesture. The badge goes after COMMAND_SHOW_MS, or at once when the hand
 * leaves or shows another gesture, so it never outlives what caused it.
 */
function renderCommand() {
  const now = performance.now();
  const shown = lastCommand && now - lastCommand.at < COMMAND_SHOW_MS ? lastCommand : null;
  const cmd = $("command");
  cmd.dataset.active = String(!!shown);
  cmd.dataset.command = shown?.direction ?? "";
  cmd.dataset.result = shown ? (shown.ok ? "move" : "wall") : "";
  if (!shown) cmd.textContent = "·";
  else if (shown.ok) cmd.textContent = ARROWS[shown.direction];
  else cmd.innerHTML = `<span class="wall-word">Wall</span><span class="wall-arrow">${ARROWS[shown.direction]}</span>`;
  cmd.setAttribute("aria-label", shown ? (shown.ok ? `Moved ${shown.direction}` : `Wall: can't go ${shown.direction}`) : "No command");
  highlightLegend($("legend"), shown?.ok ? shown.direction : null);
  highlightLegend($("mini-legend"), shown?.ok ? shown.direction : null);
  clearTimeout(commandTimer);
  if (shown) commandTimer = setTimeout(renderCommand, shown.at + COMMAND_SHOW_MS - now + 10);
  return shown;
}

function clearCommand() {
  lastCommand = null;
  renderCommand();
}

// The player's own share-hand choice until a state confirms it: a state already on its way (a
// spectator joined) carries the old value and must not undo the click.
let shareHandWanted = null;

function showShareHand(serverValue) {
  if (shareHandWanted !== null && shareHandWanted !== serverValue) return;
  shareHandWanted = null;
  $("share-hand").checked = serverValue;
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
  $("status-pill").textContent = msg.status === "won" ? "solved!" : msg.calibrating ? "calibrating" : "playing";
  $("game-name").textContent = msg.name ?? "";
  if (typeof msg.share_hand === "boolean") showShareHand(msg.share_hand);
  if (msg.scheme) setScheme(msg.scheme);
  markOpenDirections($("legend"), openDirections(msg, maze));
  markOpenDirections($("mini-legend"), openDirections(msg, maze));
  tickClock();
  if (msg.last_move) {
    if (msg.last_move.source === "gesture" && lastGesture) {
      lastCommand = { direction: msg.last_move.direction, ok: msg.last_move.ok, at: performance.now(), gesture: lastGesture };
      renderCommand();
    } else {
      // A key, a tap or an undo; or a gesture move confirmed after the hand has left (a state is
      // stored before it is sent, a frame's reply is not, so the next reply can arrive first).
      clearCommand();
    }
    if (msg.status !== "won") sounds.play(msg.last_move.ok ? "move" : "wall");
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
  if (!previous) maybeStream();
  if (msg.last_move || msg.status === "won") keepMazeInView();
  document.dispatchEvent(new CustomEvent("gm:state", { detail: msg }));
}

/** Phone layout: a move while the page is scrolled away (e.g. to tick a setting) brings the game back. */
function keepMazeInView() {
  if (!PHONE_LAYOUT.matches) return;
  const rect = mazeCanvas.getBoundingClientRect();
  if (rect.top < 0 || rect.bottom > window.innerHeight) window.scrollTo({ top: 0, behavior: "smooth" });
}

function onWon(msg) {
  wonLevel = msg.level;
  $("win-title").textContent = `Level ${msg.level} solved!`;
  $("win-text").textContent = `${msg.moves} moves in ${formatTime(msg.elapsed_s)}.`;
  $("win-card").hidden = false;
  sounds.play("win");
  const how = TOUCH ? "Lower your hand or tap Next level" : "Lower your hand, press N or choose Next level";
  announce(`Level ${msg.level} solved in ${msg.moves} moves. ${how} for the next maze.`);
}

function onFrame(msg) {
  if (paused || !camera.active) return; // a late reply after the camera stopped must not bring a hand back
  const name = $("gesture-name");
  const gesture = msg.hand ? msg.gesture : null;
  name.dataset.gesture = gesture ?? "";
  name.textContent = !msg.hand ? "No hand" : gesture ? gestureLabel(gesture) : "Not sure";
  $("gesture-icon").innerHTML = gestureIcon(gesture === "no_gesture" ? "palm" : gesture);
  const pct = Math.round((msg.confidence ?? 0) * 100);
  // For no_gesture the server's number is how unusual the hand is, not a certainty: say what it means.
  const steering = msg.hand && gesture && gesture !== "no_gesture";
  $("gesture-confidence").textContent = !msg.hand ? "Show your hand"
    : gesture === "no_gesture" ? "not steering" : `${pct}% sure`;
  $("confidence-bar").style.width = `${steering ? pct : 0}%`;
  // The badge belongs to the gesture that made the move: gone when the hand leaves or changes.
  if (lastCommand && (!steering || (lastCommand.gesture && lastCommand.gesture !== gesture))) lastCommand = null;
  lastGesture = steering ? gesture : null;
  const shown = renderCommand();
  // A reply to landmarks found on this device carries none back: draw the newest ones sent.
  overlay.draw(msg.landmarks ?? (msg.hand && landmarker ? sentPoints : null), !!shown?.ok);
  document.dispatchEvent(new CustomEvent("gm:frame", { detail: msg }));
}

function renderStats(s) {
  $("stat-fps").textContent = s.fps === null ? "—" : s.fps.toFixed(1);
  $("stat-proc").textContent = s.processingMs === null ? "—" : Math.round(s.processingMs);
  if (s.rttMs !== null) $("stat-rtt").textContent = Math.round(s.rttMs);
  $("stat-dropped").textContent = s.dropped;
  $("stats").dataset.replies = s.replies;
  $("stats").dataset.sent = s.sent;
}

function shownElapsed() {
  // The server's clock starts at the first move; an outage freezes the shown clock.
  // A server that freezes the game during calibration says so with state.calibrating: the clock stands still.
  const running = state.status === "playing" && state.player_connected !== false && state.moves > 0 && !paused
    && !state.calibrating;
  return state.elapsed_s + (running ? (performance.now() - stateAt) / 1000 : 0);
}

function tickClock() {
  if (state) $("hud-time").textContent = formatTime(shownElapsed());
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
    pill.dataset.state = "on";
    pill.textContent = "camera on";
    button.textContent = "Turn on camera";
    const note = $("pause-note");
    if (note.dataset.state === "camera") {
      note.hidden = true;
      note.dataset.state = "";
    }
    const v = $("video");
    if (v.videoWidth) $("preview").style.aspectRatio = `${v.videoWidth} / ${v.videoHeight}`;
    localStorage.setItem("gesture-maze.camera", camera.deviceId);
    await fillCameraList();
    if (!paused) $("gesture-confidence").textContent = "Show your hand";
    await chooseSource();
    maybeStream();
    announce("Camera on. Show your hand.");
  } catch (err) {
    const info = describeCameraError(err, TOUCH);
    banner("camera", { ...info, actions: [{ label: "Turn on camera", primary: true, onClick: () => startCamera() }] });
    button.textContent = "Try again";
  } finally {
    button.disabled = false;
  }
}

/** The camera went away (track ended or stopped, permission withdrawn): say so, send nothing more. */
function cameraStopped(reason) {
  streamer.stop();
  overlay.clear();
  lastGesture = null;
  clearCommand();
  const pill = $("camera-state");
  pill.dataset.on = "false";
  pill.dataset.state = "stopped";
  pill.textContent = "camera stopped";
  $("preview").dataset.camera = "stopped";
  $("camera-intro").hidden = false;
  $("camera-start").textContent = "Turn on camera";
  $("gesture-name").dataset.gesture = "";
  $("gesture-name").textContent = "—";
  $("gesture-icon").textContent = "·";
  $("gesture-confidence").textContent = "Camera off";
  $("confidence-bar").style.width = "0%";
  if (!paused) {
    const note = $("pause-note");
    note.dataset.state = "camera";
    note.textContent = CAMERA_STOPPED;
    note.hidden = false;
  }
  // Said in place (the readout and the preview, with its button), not in a banner that would push the
  // game down; the pause note is a status region, so screen readers hear it too.
  $("preview").dataset.reason = reason;
  if (bannerSource === "camera") banner("camera", null);
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
    renderHelp(scheme);
    if (state && maze) {
      markOpenDirections($("legend"), openDirections(state, maze));
      markOpenDirections($("mini-legend"), openDirections(state, maze));
    }
  }
}

/** The compact gesture help: on the start card and next to the readout. */
function renderHelp(scheme) {
  renderMiniLegend($("mini-legend"), scheme);
  renderMiniLegend($("start-help"), scheme);
}

function move(direction) {
  if (!socket?.open || !state) return;
  if (countdown.running) countdown.finish(); // a key or touch means "ready": skip the rest of the 3-2-1
  socket.send({ type: "move", direction });
}

function nextLevel() {
  if (wonLevel !== null) socket?.send({ type: "next_level" });
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
  $("next-level").addEventListener("click", (e) => { e.stopPropagation(); nextLevel(); });
  $("win-card").addEventListener("click", nextLevel); // a tap anywhere on the card
  bindSwipe(mazeCanvas, move);
  for (const button of document.querySelectorAll("#touchpad [data-dir]")) {
    button.addEventListener("click", () => move(button.dataset.dir));
  }
  $("share-hand").addEventListener("change", (e) => {
    shareHandWanted = e.target.checked;
    socket?.send({ type: "share_hand", enabled: e.target.checked });
  });
  document.addEventListener("gm:send", (e) => socket?.send(e.detail)); // for add-on modules
  const sound = $("set-sound");
  sound.checked = settings.sound;
  sounds.enabled = settings.sound;
  sound.addEventListener("change", () => { settings.sound = sounds.enabled = sound.checked; saveSettings(); });
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
  const edgeSwitch = $("set-edge");
  edgeSwitch.checked = settings.edge;
  showEdge(settings.edge ? "armed" : "off");
  edgeSwitch.addEventListener("change", () => {
    settings.edge = edgeSwitch.checked;
    saveSettings();
    if (camera.active || !settings.edge) chooseSource();
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
    // Text fields, selects and radio groups use the arrow keys themselves; a checkbox or button does not.
    const ownsArrows = tag === "SELECT" || tag === "TEXTAREA" || (tag === "INPUT" && e.target.type !== "checkbox");
    if (ownsArrows) return;
    const direction = KEYS[e.key];
    if (direction) {
      e.preventDefault();
      move(direction);
    } else if ((e.key === "r" || e.key === "R") && state) {
      socket?.send({ type: "restart" });
    } else if (["n", "N", "Enter", " "].includes(e.key) && wonLevel !== null) {
      e.preventDefault();
      nextLevel();
    }
  });
}

boot();
