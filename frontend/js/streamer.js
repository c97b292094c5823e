// Sends webcam frames with flow control: at most `maxInFlight` frames without a `frame` reply, paced to
// the target fps. A slow network or server therefore lowers the frame rate instead of building latency.
// What a "frame" is comes from the page: a JPEG (binary message) or, in edge mode, a `landmarks` message.

const STALL_MS = 2000; // no reply for this long: assume the in-flight frames were lost and carry on
const FPS_WINDOW_MS = 2000; // fps sent is measured over the frames of the last 2 s ...
const FPS_MIN_SPAN_MS = 1000; // ... once they span at least 1 s (a rate from two frames 2 ms apart is noise)

export class FrameStreamer {
  /**
   * @param {{grab:()=>Promise<Blob|null>, socket:import('./connection.js').LiveSocket, onStats:(s:object)=>void}} deps
   * @param {{fps:number, maxInFlight:number}} settings
   */
  constructor({ grab, socket, onStats }, settings) {
    this.useSource(grab);
    this.socket = socket;
    this.onStats = onStats;
    this.settings = settings;
    this.running = false;
    this.timer = null;
    this.busy = false;
    this.sendTimes = [];
    this.due = 0; // when the next frame may go (performance.now() time)
    this.stats = { fps: null, processingMs: null, rttMs: null, dropped: 0, lost: 0, replies: 0, sent: 0 };
    this.resetConnection();
  }

  /** Sequence numbers restart at 1 on every connection (the server numbers frames per socket). */
  resetConnection() {
    this.sent = 0;
    this.acked = 0;
    this.pending = new Map(); // seq -> send time
    this.lastProgress = performance.now();
    this.serverDropped = 0;
  }

  /**
   * Where frames come from: `grab()` resolves to a JPEG Blob (sent binary) or a message object (sent as
   * JSON), or null when there is no picture yet.
   */
  useSource(grab) {
    this.grab = grab;
  }

  async transmit(payload) {
    if (payload instanceof Blob) return this.socket.sendBinary(await payload.arrayBuffer());
    return this.socket.send(payload);
  }

  setFps(fps) {
    this.settings.fps = fps;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.sendTimes = []; // a pause is not part of the rate: measure afresh when frames flow again
    this.stats.fps = null;
    this.onStats(this.stats);
  }

  schedule(delay) {
    clearTimeout(this.timer);
    if (this.running) this.timer = setTimeout(() => this.tick(), Math.max(0, delay));
  }

  get inFlight() {
    return this.sent - this.acked;
  }

  async tick() {
    if (!this.running) return;
    const interval = 1000 / Math.max(1, this.settings.fps);
    const now = performance.now();
    if (now < this.due - 1) return this.schedule(this.due - now);
    if (!this.socket.open || this.busy) return this.schedule(interval);
    if (this.inFlight >= this.settings.maxInFlight) {
      if (now - this.lastProgress < STALL_MS) return this.schedule(interval); // a reply will wake us sooner
      this.stats.lost += this.inFlight;
      this.acked = this.sent;
      this.pending.clear();
    }
    // Do not pile bytes into the socket's own buffer either.
    if (this.socket.bufferedAmount > 256 * 1024) return this.schedule(interval);
    this.busy = true;
    let sentOne = false;
    try {
      const payload = await this.grab();
      if (payload && this.socket.open && this.running) {
        if (await this.transmit(payload)) {
          sentOne = true;
          // Fixed time slots: a late timer is made up on the next frame, a long stall is not (no burst).
          this.due = Math.max(this.due + interval, performance.now() - interval / 2);
          this.sent += 1;
          this.stats.sent += 1;
          const t = performance.now();
          this.pending.set(this.sent, t);
          if (this.inFlight === 1) this.lastProgress = t;
          this.sendTimes.push(t);
          while (this.sendTimes.length && t - this.sendTimes[0] > FPS_WINDOW_MS) this.sendTimes.shift();
        }
      }
    } finally {
      this.busy = false;
    }
    this.publish();
    // No camera picture yet (or the socket just closed): look again in one frame's time, not in a spin.
    this.schedule(sentOne ? this.due - performance.now() : interval);
  }

  /** A `frame` reply: everything up to its seq is settled (older ones were replaced server-side). */
  onFrame(msg) {
    const now = performance.now();
    const sentAt = this.pending.get(msg.seq);
    for (const seq of this.pending.keys()) if (seq <= msg.seq) this.pending.delete(seq);
    if (msg.seq > this.acked) this.acked = Math.min(msg.seq, this.sent);
    this.lastProgress = now;
    this.stats.replies += 1;
    if (sentAt !== undefined) this.stats.rttMs = ema(this.stats.rttMs, now - sentAt);
    if (typeof msg.processing_ms === "number") this.stats.processingMs = ema(this.stats.processingMs, msg.processing_ms);
    if (typeof msg.dropped === "number") this.serverDropped = msg.dropped;
    this.stats.dropped = this.serverDropped + this.stats.lost;
    this.publish();
    this.schedule(0);
  }

  /** fps over the last FPS_WINDOW_MS; null (shown as "—") until the frames sent span FPS_MIN_SPAN_MS. */
  publish() {
    const now = performance.now();
    while (this.sendTimes.length && now - this.sendTimes[0] > FPS_WINDOW_MS) this.sendTimes.shift();
    const n = this.sendTimes.length;
    const span = n ? this.sendTimes[n - 1] - this.sendTimes[0] : 0;
    if (n >= 2 && span >= FPS_MIN_SPAN_MS) this.stats.fps = ((n - 1) * 1000) / span; // never above the real rate
    else if (!this.running) this.stats.fps = null;
    else if (n === 0 && this.stats.fps !== null) this.stats.fps = 0; // streaming, but nothing went out lately
    this.onStats(this.stats);
  }
}

function ema(previous, value) {
  return previous === null ? value : previous * 0.8 + value * 0.2;
}
