// The spectator view: the maze, the player's position and current gesture, how many are watching.
import { announcer, formatTime, showBanner } from "./api.js";
import { LiveSocket, wsUrl } from "./connection.js";
import { gestureIcon } from "./gestures.js";
import { MazeView, publishState } from "./maze-view.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const sessionId = params.get("session");
const watchToken = params.get("token");
const announce = announcer($("announcer"));
const mazeCanvas = $("maze");
const mazeView = new MazeView(mazeCanvas);
let maze = null;
let state = null;
let stateAt = 0;
let gestureTimer = null;

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
  $("f-scheme").textContent = msg.scheme;
  const pill = $("player-pill");
  pill.dataset.on = String(!!msg.player_connected);
  pill.textContent = msg.player_connected ? "● player online" : "○ player away";
  if (msg.status === "playing") $("win-card").hidden = true;
  if (msg.last_move?.ok) announce(`Player moved ${msg.last_move.direction}.`);
  else if (levelChanged) announce(`Level ${msg.level} started.`);
  tick();
}

function onGesture(msg) {
  const gesture = msg.hand ? msg.gesture : null;
  const name = $("gesture-name");
  name.dataset.gesture = gesture ?? "";
  name.textContent = !msg.hand ? "No hand" : gesture ?? "Not sure";
  $("gesture-icon").innerHTML = gestureIcon(gesture);
  $("gesture-confidence").textContent = msg.hand
    ? `${Math.round((msg.confidence ?? 0) * 100)}% sure`
    : "the player's hand is out of view";
  // Gestures stop arriving when the player's camera stops: fade back to "waiting".
  clearTimeout(gestureTimer);
  gestureTimer = setTimeout(() => {
    name.dataset.gesture = "";
    name.textContent = "—";
    $("gesture-icon").textContent = "·";
    $("gesture-confidence").textContent = "no camera frames from the player right now";
  }, 4000);
}

function onWon(msg) {
  $("win-title").textContent = `Level ${msg.level} solved!`;
  $("win-text").textContent = `${msg.moves} moves in ${formatTime(msg.elapsed_s)}. Next level coming up…`;
  $("win-card").hidden = false;
  announce(`The player solved level ${msg.level} in ${msg.moves} moves.`);
}

function tick() {
  if (!state) return;
  const running = state.status === "playing" && state.player_connected;
  $("f-time").textContent = formatTime(state.elapsed_s + (running ? (performance.now() - stateAt) / 1000 : 0));
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

if (!sessionId) {
  gone("No game chosen.", "Open a spectator link from a player, or pick a game in the lobby.");
} else {
  $("session-label").textContent = sessionId;
  document.title = `Gesture Maze — watching ${sessionId}`;
  const path = `/ws/watch/${encodeURIComponent(sessionId)}${watchToken ? `?token=${encodeURIComponent(watchToken)}` : ""}`;
  const socket = new LiveSocket(() => wsUrl(path), {
    onMessage(msg) {
      if (msg.type === "state") onState(msg);
      else if (msg.type === "gesture") onGesture(msg);
      else if (msg.type === "won") onWon(msg);
    },
    onStatus(status, info) {
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
        setConn("failed", "Ended");
        if (info.error?.code === "forbidden") gone("This game is private.", "Ask the player for their spectator link.");
        else gone("This game has ended.", "The player left and the server closed it. Find another game to watch.");
      }
    },
  });
  socket.connect();
  setInterval(tick, 250);
}
