// The spectator view: the maze, the player's position and current gesture, how many are watching.
import { announcer, api, formatTime, showBanner } from "./api.js";
import { LiveSocket, wsUrl } from "./connection.js";
import { gestureIcon, gestureLabel, keepWhole } from "./gestures.js";
import { HandOverlay } from "./hand-overlay.js";
import { MazeView, publishState } from "./maze-view.js";

const $ = (id) => document.getElementById(id);
/**
 * An id or token as pasted from a chat: surrounding whitespace, quotes and brackets, and trailing
 * slashes, dots, commas and the like are not part of it (ids and tokens are URL-safe base64: A-Z a-z 0-9 _ -).
 */
export function cleanId(raw) {
  if (raw === null) return null;
  const match = /[A-Za-z0-9_-]+/.exec(raw.trim());
  return match ? match[0] : "";
}
const params = new URLSearchParams(location.search);
const sessionId = cleanId(params.get("session"));
const watchToken = cleanId(params.get("token"));
if (sessionId && sessionId !== params.get("session")) {
  // Show the cleaned link in the address bar, so a copy of it works everywhere.
  params.set("session", sessionId);
  if (watchToken) params.set("token", watchToken);
  history.replaceState(null, "", `${location.pathname}?${params}`);
}
const announce = announcer($("announcer"));
keepWhole($("gesture-name"));
const mazeCanvas = $("maze");
const mazeView = new MazeView(mazeCanvas);
let maze = null;
let state = null;
let stateAt = 0;
let gestureTimer = null;
let ended = false;
let live = false; // our own socket is up (during an outage the clock shown must not run on)
const hand = new HandOverlay($("hand-canvas"));

/** The player's real state: online, away (socket gone, game kept) or ended (game closed). */
function setPlayerPill(kind) {
  const pill = $("player-pill");
  pill.dataset.on = { online: "true", away: "false", ended: "ended" }[kind];
  pill.dataset.state = kind;
  pill.textContent = { online: "● player online", away: "○ player away", ended: "■ game ended" }[kind];
}

function drawHand(landmarks) {
  const points = Array.isArray(landmarks) ? landmarks.length : 0;
  $("hand-canvas").dataset.points = String(points);
  if (points) hand.draw(landmarks, false);
  else hand.clear();
}

function setConn(name, text) {
  $("conn").dataset.state = name;
  $("conn").textContent = text;
}

function onState(msg) {
  if (msg.maze) {
    maze = msg.maze;
    mazeView.setMaze(maze);
  }
  const levelChanged = state && state.level !== msg.level;
  state = msg;
  stateAt = performance.now();
  mazeView.setState(msg);
  publishState(mazeCanvas, msg, maze);
  $("f-level").textContent = msg.level;
  $("f-moves").textContent = msg.moves;
  $("f-watchers").textContent = msg.spectators;
  $("f-size").textContent = maze ? `${maze.width}×${maze.height}` : "–";
  $("f-scheme").textContent = msg.scheme === "pointing" ? "Pointing" : msg.scheme === "counting" ? "Counting" : msg.scheme;
  if (!ended) setPlayerPill(msg.player_connected ? "online" : "away");
  $("game-name").textContent = msg.name ?? "";
  if (msg.name) document.title = `Gesture Maze — watching ${msg.name}`;
  $("hand-view").hidden = !msg.share_hand;
  if (!msg.share_hand) drawHand(null);
  if (msg.status === "playing") $("win-card").hidden = true;
  if (msg.last_move?.ok) announce(`Player moved ${msg.last_move.direction}.`);
  else if (levelChanged) announce(`Level ${msg.level} started.`);
  tick();
}

function onGesture(msg) {
  const gesture = msg.hand ? msg.gesture : null;
  const name = $("gesture-name");
  name.dataset.gesture = gesture ?? "";
  name.textContent = !msg.hand ? "No hand" : gesture ? gestureLabel(gesture) : "Not sure";
  $("gesture-icon").innerHTML = gestureIcon(gesture === "no_gesture" ? "palm" : gesture);
  $("gesture-confidence").textContent = !msg.hand ? "the player's hand is out of view"
    : gesture === "no_gesture" ? "not steering" : `${Math.round((msg.confidence ?? 0) * 100)}% sure`;
  if ("landmarks" in msg) drawHand(msg.landmarks);
  // Gestures stop arriving when the player's camera stops: fade back to "waiting".
  clearTimeout(gestureTimer);
  gestureTimer = setTimeout(() => {
    name.dataset.gesture = "";
    name.textContent = "—";
    $("gesture-icon").textContent = "·";
    $("gesture-confidence").textContent = "no camera frames from the player right now";
    drawHand(null);
  }, 4000);
}

function onWon(msg) {
  $("win-title").textContent = `Level ${msg.level} solved!`;
  $("win-text").textContent = `${msg.moves} moves in ${formatTime(msg.elapsed_s)}. The next level starts when the player is ready.`;
  $("win-card").hidden = false;
  announce(`The player solved level ${msg.level} in ${msg.moves} moves.`);
}

function shownElapsed() {
  // The server's clock runs from the first move while the player is there and the game goes on.
  const running = state.status === "playing" && state.player_connected && state.moves > 0 && !ended && live;
  return state.elapsed_s + (running ? (performance.now() - stateAt) / 1000 : 0);
}

function tick() {
  if (!state) return;
  $("f-time").textContent = formatTime(shownElapsed());
}

function offline() {
  // Cut off from the server (e.g. it restarts): stop the clock where it is, and don't claim the player is online.
  if (!state || !state.player_connected) return;
  const ran = state.status === "playing" ? (performance.now() - stateAt) / 1000 : 0;
  state = { ...state, player_connected: false, elapsed_s: state.elapsed_s + ran };
  stateAt = performance.now();
  $("player-pill").dataset.on = "false";
  $("player-pill").textContent = "○ connection lost";
}

function gone(title, text) {
  showBanner($("banner"), {
    code: "session_gone", title, text,
    actions: [{ label: "See live games", primary: true, onClick: () => (location.href = "/lobby.html") }],
  });
}

/** A link to no game: say so once, plainly, and stop (no retries, no "waiting for the player"). */
function badLink(socket) {
  socket?.close();
  document.body.classList.add("no-game", "bad-link");
  $("player-pill").hidden = true;
  setConn("failed", "No game");
  $("gesture-confidence").textContent = "";
  showBanner($("banner"), {
    code: "bad_link", title: "This watch link doesn't lead to a game.",
    text: `There is no game "${sessionId}" on this server: the link may be mistyped or cut off, or the game ended long ago.`,
    actions: [{ label: "See live games", primary: true, onClick: () => (location.href = "/lobby.html") }],
  });
}

/** The socket never opened: a refused handshake looks like a network error, so ask the REST API. */
async function neverOpened(socket) {
  try {
    await api.getSession(sessionId);
  } catch (err) {
    if (err.status === 404) badLink(socket);
  }
}

if (!sessionId) {
  document.body.classList.add("no-game", "bad-link");
  $("player-pill").hidden = true;
  $("gesture-confidence").textContent = "";
  gone("No game chosen.", "Open a spectator link from a player, or pick a game in the lobby.");
} else {
  $("session-label").textContent = sessionId;
  document.title = `Gesture Maze — watching ${sessionId}`;
  const path = `/ws/watch/${encodeURIComponent(sessionId)}${watchToken ? `?token=${encodeURIComponent(watchToken)}` : ""}`;
  let everOpen = false;
  const socket = new LiveSocket(() => wsUrl(path), {
    onMessage(msg) {
      if (msg.type === "state") onState(msg);
      else if (msg.type === "gesture") onGesture(msg);
      else if (msg.type === "won") onWon(msg);
    },
    onStatus(status, info) {
      if (live && status !== "open" && state) {
        state = { ...state, elapsed_s: shownElapsed() }; // freeze the clock where it is
        stateAt = performance.now();
      }
      live = status === "open";
      if (status === "open") everOpen = true;
      if (status === "closed") return;
      if (status === "retrying" && !everOpen && info.delay !== undefined) neverOpened(socket);
      if (status === "open") {
        setConn("open", "Live");
        showBanner($("banner"), null);
      } else if (status === "connecting") setConn("connecting", "Connecting…");
      else if (status === "retrying") {
        setConn("retrying", "Reconnecting…");
        offline();
        if (info.delay !== undefined) {
          showBanner($("banner"), {
            kind: "warn", code: "reconnecting", title: "Connection lost — reconnecting.",
            text: `Trying again in ${Math.max(1, Math.round(info.delay / 1000))} s.`,
            actions: [{ label: "Retry now", primary: true, onClick: () => socket.reconnectNow() }],
          });
        }
      } else if (status === "failed") {
        if (info.error?.code === "forbidden") {
          setConn("failed", "Not allowed");
          document.body.classList.add("no-game", "bad-link");
          $("player-pill").hidden = true;
          $("gesture-confidence").textContent = "";
          gone("This game is private.", "Ask the player for their spectator link.");
        } else if (!state) {
          // Never saw this game: the id is wrong (mistyped, cut off) or the game is long gone.
          badLink(null);
        } else {
          setConn("failed", "Ended");
          ended = true;
          setPlayerPill("ended");
          tick();
          drawHand(null);
          gone("This game has ended.", "The player left and the server closed it. Find another game to watch.");
        }
      }
    },
  });
  socket.connect();
  setInterval(tick, 250);
}
