// REST calls, the saved session (sessionStorage) and small page helpers shared by all pages.

const SESSION_KEY = "gesture-maze.session";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { headers: { "content-type": "application/json" }, ...options });
  } catch {
    throw new ApiError(0, "unreachable", "The server could not be reached.");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const err = body?.error ?? {};
    throw new ApiError(response.status, err.code ?? `http_${response.status}`, err.message ?? response.statusText);
  }
  return body;
}

export const api = {
  createSession: (options) => request("/api/sessions", { method: "POST", body: JSON.stringify(options) }),
  listSessions: () => request("/api/sessions"),
  getSession: (id) => request(`/api/sessions/${encodeURIComponent(id)}`),
};

/** Session id + token from the URL (?session=&token= or #session=&token=), if any. */
export function sessionFromUrl() {
  const sources = [new URLSearchParams(location.search), new URLSearchParams(location.hash.slice(1))];
  for (const params of sources) {
    const id = params.get("session");
    const token = params.get("token");
    if (id && token) return { session_id: id, player_token: token };
  }
  return null;
}

export function savedSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

export function saveSession(session) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function forgetSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

/** One-line plain words for the screen-reader live region. */
export function announcer(element) {
  let last = "";
  return (text) => {
    // Re-announce identical text (e.g. two "moved right") by toggling a trailing space.
    last = text === last.trim() ? `${text} ` : text;
    element.textContent = last;
  };
}

export function formatTime(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "0:00";
  const s = Math.floor(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** Show/hide the page's banner: {kind, title, text, actions:[{label, onClick, primary}]}. */
export function showBanner(el, banner) {
  if (!banner) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  el.dataset.kind = banner.kind ?? "error";
  el.dataset.code = banner.code ?? "";
  const text = document.createElement("div");
  text.className = "banner-text";
  const title = document.createElement("strong");
  title.textContent = banner.title;
  const body = document.createElement("span");
  body.textContent = banner.text ?? "";
  text.append(title, body);
  const actions = document.createElement("div");
  actions.className = "banner-actions";
  for (const action of banner.actions ?? []) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = `btn btn-small${action.primary ? " btn-primary" : ""}`;
    b.textContent = action.label;
    b.addEventListener("click", action.onClick);
    actions.append(b);
  }
  el.replaceChildren(text, actions);
  el.hidden = false;
}
