// Game feel for the player page: move/wall sounds, the 3-2-1 start, swipes on the maze, open directions.
// Rules and reasons: docs/decisions/0013-game-feel.md.

const WALL_BITS = { up: 1, right: 2, down: 4, left: 8 };
const SWIPE_MIN_PX = 24;

/** Directions the player can move from its current cell (the maze's wall bits say which sides are closed). */
export function openDirections(state, maze) {
  if (!state || !maze) return [];
  const walls = maze.cells[state.player.y]?.[state.player.x] ?? 15;
  return Object.keys(WALL_BITS).filter((d) => !(walls & WALL_BITS[d]));
}

/** Short synthesized cues: a bright blip for a move, a low buzz for a wall, a chord for a win. */
export class Sounds {
  constructor() {
    this.enabled = true;
    this.ctx = null;
    // Browsers only allow audio after a user gesture: create the context on the first one.
    const unlock = () => {
      this.ensure();
      window.removeEventListener("pointerdown", unlock);
      window.removeEventListener("keydown", unlock);
    };
    window.addEventListener("pointerdown", unlock);
    window.addEventListener("keydown", unlock);
  }

  ensure() {
    if (!this.ctx && window.AudioContext) {
      try {
        this.ctx = new AudioContext();
      } catch {
        this.ctx = null;
      }
    }
    return this.ctx;
  }

  play(kind) {
    if (!this.enabled || !this.ctx || this.ctx.state !== "running") return;
    const tones = {
      move: [[660, 0, 0.07, "triangle", 0.12]],
      wall: [[110, 0, 0.16, "square", 0.09], [82, 0.05, 0.16, "square", 0.07]],
      win: [[523, 0, 0.18, "triangle", 0.12], [659, 0.1, 0.18, "triangle", 0.12], [784, 0.2, 0.3, "triangle", 0.12]],
      tick: [[880, 0, 0.05, "sine", 0.08]],
    }[kind];
    const t0 = this.ctx.currentTime;
    for (const [freq, at, dur, type, gain] of tones ?? []) {
      const osc = this.ctx.createOscillator();
      const amp = this.ctx.createGain();
      osc.type = type;
      osc.frequency.value = freq;
      amp.gain.setValueAtTime(gain, t0 + at);
      amp.gain.exponentialRampToValueAtTime(0.0001, t0 + at + dur);
      osc.connect(amp).connect(this.ctx.destination);
      osc.start(t0 + at);
      osc.stop(t0 + at + dur + 0.02);
    }
  }
}

/** The 3-2-1 start shown over the maze once the camera is live; `done` runs after "Go!" (or on skip). */
export class Countdown {
  constructor(element, numberElement, { seconds = 3, onTick = () => {} } = {}) {
    this.el = element;
    this.num = numberElement;
    this.seconds = seconds;
    this.onTick = onTick;
    this.timer = null;
    this.done = null;
  }

  get running() {
    return this.timer !== null;
  }

  start(done) {
    this.stop();
    this.done = done;
    let left = this.seconds;
    const step = () => {
      if (left > 0) {
        this.num.textContent = String(left);
        this.el.dataset.count = String(left);
        this.onTick(left);
        left -= 1;
        this.timer = setTimeout(step, 1000);
      } else {
        this.finish();
      }
    };
    this.el.hidden = false;
    step();
  }

  /** End now (after "Go!", or because the player already moved by key/touch). */
  finish() {
    const done = this.done;
    this.stop();
    this.el.dataset.count = "0";
    this.num.textContent = "Go!";
    this.el.hidden = false;
    setTimeout(() => { if (!this.running) this.el.hidden = true; }, 450);
    done?.();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    this.done = null;
    this.el.hidden = true;
  }
}

/** Swipes (touch, pen or a mouse drag) on `element` call `onSwipe(direction)`; the page does not scroll. */
export function bindSwipe(element, onSwipe) {
  let start = null;
  element.addEventListener("pointerdown", (e) => {
    start = { x: e.clientX, y: e.clientY, id: e.pointerId };
  });
  const end = (e) => {
    if (!start || e.pointerId !== start.id) return;
    const dx = e.clientX - start.x;
    const dy = e.clientY - start.y;
    start = null;
    if (Math.max(Math.abs(dx), Math.abs(dy)) < SWIPE_MIN_PX) return;
    if (Math.abs(dx) > Math.abs(dy)) onSwipe(dx > 0 ? "right" : "left");
    else onSwipe(dy > 0 ? "down" : "up");
  };
  element.addEventListener("pointerup", end);
  element.addEventListener("pointercancel", () => { start = null; });
}
