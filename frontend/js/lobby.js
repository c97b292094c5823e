// The lobby: live public sessions from GET /api/sessions, refreshed every few seconds.
import { api, showBanner } from "./api.js";

const REFRESH_MS = 3000;
const $ = (id) => document.getElementById(id);
let lastCount = null;

function ago(createdAt) {
  // created_at: Unix seconds, or an ISO 8601 string.
  const t = typeof createdAt === "number" ? createdAt * 1000 : Date.parse(createdAt);
  const seconds = Math.max(0, (Date.now() - t) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 60) return "just started";
  if (seconds < 3600) return `started ${Math.floor(seconds / 60)} min ago`;
  return `started ${Math.floor(seconds / 3600)} h ago`;
}

function card(s) {
  const li = document.createElement("li");
  li.className = "session-card";
  li.dataset.sessionId = s.session_id;
  const title = document.createElement("h3");
  title.textContent = s.name || s.session_id;
  const sid = document.createElement("span");
  sid.className = "sid";
  sid.textContent = s.session_id;
  const row1 = document.createElement("div");
  row1.className = "row";
  const player = document.createElement("span");
  player.className = "pill";
  player.dataset.on = String(!!s.player_connected);
  player.textContent = s.player_connected ? "● playing" : "○ player away";
  const watchers = document.createElement("span");
  watchers.className = "meta";
  watchers.textContent = `${s.spectators} watching`;
  row1.append(player, watchers);
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent =
    `Level ${s.level} · ${s.width}×${s.height} · ${s.moves} move${s.moves === 1 ? "" : "s"} · ${s.scheme}` +
    `${s.status === "won" ? " · solved!" : ""} · ${ago(s.created_at)}`;
  const link = document.createElement("a");
  link.className = "btn btn-small btn-primary";
  link.href = `/watch.html?session=${encodeURIComponent(s.session_id)}`;
  link.textContent = "Watch";
  link.setAttribute("aria-label", `Watch ${s.name || `game ${s.session_id}`}, level ${s.level}`);
  li.append(title, sid, row1, meta, link);
  return li;
}

async function refresh() {
  try {
    const { sessions } = await api.listSessions();
    const conn = $("conn");
    conn.dataset.state = "open";
    conn.textContent = "Live";
    showBanner($("banner"), null);
    // Live games (player online) first, then games whose player is away; the server orders them the same way.
    const ordered = [...sessions].sort((a, b) => Number(!a.player_connected) - Number(!b.player_connected));
    $("sessions").replaceChildren(...ordered.map(card));
    $("empty").hidden = sessions.length > 0;
    if (sessions.length !== lastCount) {
      $("summary").textContent = `${sessions.length} live game${sessions.length === 1 ? "" : "s"}.`;
      lastCount = sessions.length;
    }
  } catch (err) {
    const conn = $("conn");
    conn.dataset.state = "retrying";
    conn.textContent = "Offline";
    showBanner($("banner"), {
      kind: "error",
      code: "unreachable",
      title: err.status === 0 ? "Can't reach the game server." : "The game list is unavailable.",
      text: "Check your connection or that the server is running; this page keeps trying by itself.",
      actions: [{ label: "Retry now", primary: true, onClick: refresh }],
    });
  }
}

refresh();
setInterval(() => {
  if (!document.hidden) refresh();
}, REFRESH_MS);
document.addEventListener("visibilitychange", () => !document.hidden && refresh());
