// A WebSocket that reconnects by itself with exponential backoff, and tells the page why it closed.

const FATAL_CODES = new Set([1008, 4000]); // policy (forbidden / not_found), replaced by another tab
// An `error` with one of these codes means retrying can never help, whatever close code follows.
const FATAL_ERRORS = new Set(["not_found", "forbidden"]);

export function wsUrl(path) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${path}`;
}

export class LiveSocket {
  /**
   * @param {() => string} url  called before every (re)connect
   * @param {{onMessage:(msg:object)=>void, onStatus?:(state:string, info:object)=>void, onOpen?:()=>void}} handlers
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.lastError = null;
    this.onOnline = () => {
      if (!this.ws && !this.stopped) this.reconnectNow();
    };
    window.addEventListener("online", this.onOnline);
  }

  get open() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  get bufferedAmount() {
    return this.ws?.bufferedAmount ?? 0;
  }

  status(state, info = {}) {
    this.handlers.onStatus?.(state, info);
  }

  connect() {
    this.stopped = false;
    clearTimeout(this.timer);
    this.lastError = null;
    this.fatal = false;
    this.status(this.attempt ? "retrying" : "connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (err) {
      this.status("failed", { reason: String(err) });
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.status("open");
      this.handlers.onOpen?.();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg.type === "error") this.lastError = msg;
      if (msg.type === "error" && FATAL_ERRORS.has(msg.code)) this.fatal = true;
      this.handlers.onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      // A draining server refuses new sockets with `shutting_down` (1008): another one will answer.
      if ((FATAL_CODES.has(ev.code) && this.lastError?.code !== "shutting_down") || this.fatal) {
        this.status("failed", { code: ev.code, reason: ev.reason, error: this.lastError });
        return;
      }
      this.scheduleRetry(ev);
    };
  }

  scheduleRetry(ev) {
    this.attempt += 1;
    const base = Math.min(10000, 500 * 2 ** (this.attempt - 1));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.status("retrying", { attempt: this.attempt, delay, code: ev?.code, reason: ev?.reason });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    clearTimeout(this.timer);
    this.connect();
  }

  send(obj) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  sendBinary(buffer) {
    if (!this.open) return false;
    this.ws.send(buffer);
    return true;
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener("online", this.onOnline);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, "bye");
    this.status("closed");
  }
}
