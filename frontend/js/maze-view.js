import { fitToDisplay } from "./canvas.js";

// Draws the server's maze state on a canvas: walls from the cells bitmask, goal, player, a short trail.
// The canvas only renders; the authoritative position is whatever the last `state` said.

const NORTH = 1;
const EAST = 2;
const SOUTH = 4;
const WEST = 8;
const MOVE_MS = 140;
const BUMP_MS = 450; // the wall cue: shake towards the wall and flash that side red
const CUE_MS = 700;
const TRAIL_LENGTH = 10;

const DELTAS = { up: [0, -1], down: [0, 1], left: [-1, 0], right: [1, 0] };

function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

const easeOut = (t) => 1 - (1 - t) ** 3;

export class MazeView {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.maze = null;
    this.player = null;
    this.goal = null;
    this.shown = null; // the animated (drawn) player position, in cells
    this.anim = null;
    this.bump = null;
    this.trail = [];
    this.won = false;
    this.frameRequested = false;
    this.colors = {
      wall: cssVar("--wall", "#c7cffc"),
      accent: cssVar("--accent", "#7c9cff"),
      goal: cssVar("--goal", "#3ddc97"),
      danger: cssVar("--danger", "#ff6b6b"),
      floor: "#0a0d1b",
      grid: "rgba(124,156,255,0.06)",
    };
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  resize() {
    fitToDisplay(this.canvas);
    this.requestDraw();
  }

  /** A new maze (first state, new level, restart): forget the trail and jump, do not animate. */
  setMaze(maze) {
    this.maze = maze;
    this.canvas.style.aspectRatio = `${maze.width} / ${maze.height}`;
    this.trail = [];
    this.shown = null;
    this.anim = null;
    this.resize();
  }

  /** Apply a `state` message (player, goal, status, last_move). */
  setState(state) {
    const next = { x: state.player.x, y: state.player.y };
    this.goal = state.goal;
    this.won = state.status === "won";
    const moved = this.player && (this.player.x !== next.x || this.player.y !== next.y);
    if (moved && this.shown) {
      this.trail.push({ ...this.player });
      if (this.trail.length > TRAIL_LENGTH) this.trail.shift();
      this.anim = { from: { ...this.shown }, to: next, start: performance.now() };
    } else if (!this.shown) {
      this.shown = { ...next };
    }
    if (state.last_move && !state.last_move.ok && DELTAS[state.last_move.direction]) {
      this.bump = { dir: DELTAS[state.last_move.direction], start: performance.now() };
    }
    if (state.last_move) this.cue(state.last_move.ok ? "move" : "wall");
    this.player = next;
    this.requestDraw();
  }

  /** Expose the last move's result on the canvas (data-cue="move"|"wall") for a moment: CSS and tests read it. */
  cue(kind) {
    this.canvas.dataset.cue = kind;
    clearTimeout(this.cueTimer);
    this.cueTimer = setTimeout(() => (this.canvas.dataset.cue = ""), CUE_MS);
  }

  requestDraw() {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame((t) => {
      this.frameRequested = false;
      this.draw(t);
    });
  }

  geometry() {
    const { width, height } = this.canvas;
    const pad = Math.round(Math.min(width, height) * 0.03);
    const cell = Math.min((width - 2 * pad) / this.maze.width, (height - 2 * pad) / this.maze.height);
    const ox = (width - cell * this.maze.width) / 2;
    const oy = (height - cell * this.maze.height) / 2;
    return { cell, ox, oy };
  }

  draw(now) {
    const ctx = this.ctx;
    const { width, height } = this.canvas;
    ctx.clearRect(0, 0, width, height);
    if (!this.maze) return;
    const { cell, ox, oy } = this.geometry();
    const center = (p) => [ox + (p.x + 0.5) * cell, oy + (p.y + 0.5) * cell];
    let animating = false;

    // Faint floor grid so the cells read as cells.
    ctx.strokeStyle = this.colors.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let x = 1; x < this.maze.width; x++) {
      ctx.moveTo(ox + x * cell, oy);
      ctx.lineTo(ox + x * cell, oy + this.maze.height * cell);
    }
    for (let y = 1; y < this.maze.height; y++) {
      ctx.moveTo(ox, oy + y * cell);
      ctx.lineTo(ox + this.maze.width * cell, oy + y * cell);
    }
    ctx.stroke();

    // Goal: a glowing rounded square.
    if (this.goal) {
      const [gx, gy] = center(this.goal);
      const s = cell * 0.56;
      ctx.save();
      ctx.shadowColor = this.colors.goal;
      ctx.shadowBlur = cell * 0.5;
      ctx.fillStyle = this.colors.goal;
      roundRect(ctx, gx - s / 2, gy - s / 2, s, s, s * 0.25);
      ctx.fill();
      ctx.restore();
      ctx.fillStyle = "#0a0d1b";
      ctx.font = `${Math.round(cell * 0.34)}px system-ui, sans-serif`;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("★", gx, gy + cell * 0.02);
    }

    // Walls: one path, stroked once.
    ctx.strokeStyle = this.colors.wall;
    ctx.lineWidth = Math.max(2, cell * 0.08);
    ctx.lineCap = "round";
    ctx.beginPath();
    for (let y = 0; y < this.maze.height; y++) {
      for (let x = 0; x < this.maze.width; x++) {
        const walls = this.maze.cells[y][x];
        const x0 = ox + x * cell;
        const y0 = oy + y * cell;
        if (walls & NORTH) { ctx.moveTo(x0, y0); ctx.lineTo(x0 + cell, y0); }
        if (walls & WEST) { ctx.moveTo(x0, y0); ctx.lineTo(x0, y0 + cell); }
        if (walls & SOUTH) { ctx.moveTo(x0, y0 + cell); ctx.lineTo(x0 + cell, y0 + cell); }
        if (walls & EAST) { ctx.moveTo(x0 + cell, y0); ctx.lineTo(x0 + cell, y0 + cell); }
      }
    }
    ctx.stroke();

    if (!this.player) return;

    // Animated position.
    if (this.anim) {
      const t = Math.min(1, (now - this.anim.start) / MOVE_MS);
      const e = easeOut(t);
      this.shown = {
        x: this.anim.from.x + (this.anim.to.x - this.anim.from.x) * e,
        y: this.anim.from.y + (this.anim.to.y - this.anim.from.y) * e,
      };
      if (t >= 1) this.anim = null;
      else animating = true;
    } else {
      this.shown = { ...this.player };
    }

    // Trail: fading dots where the player has been.
    this.trail.forEach((p, i) => {
      const [tx, ty] = center(p);
      const alpha = ((i + 1) / (this.trail.length + 1)) * 0.45;
      ctx.fillStyle = `rgba(124,156,255,${alpha.toFixed(3)})`;
      ctx.beginPath();
      ctx.arc(tx, ty, cell * (0.08 + 0.08 * ((i + 1) / this.trail.length)), 0, Math.PI * 2);
      ctx.fill();
    });

    // Bump: a shake towards the wall that stopped the move, and that wall flashes red.
    let bx = 0;
    let by = 0;
    let hit = 0;
    if (this.bump) {
      const age = now - this.bump.start;
      if (age >= CUE_MS) this.bump = null;
      else {
        hit = Math.min(1, 1.6 * (1 - age / CUE_MS)); // the red side stays solid, then fades
        const t = Math.min(1, age / BUMP_MS);
        const amount = Math.sin(t * Math.PI * 3) * (1 - t) * cell * 0.14;
        bx = this.bump.dir[0] * amount;
        by = this.bump.dir[1] * amount;
        animating = true;
        const [cx, cy] = center(this.player);
        const [dx, dy] = this.bump.dir;
        const h = cell / 2;
        ctx.save();
        ctx.globalAlpha = hit;
        ctx.strokeStyle = this.colors.danger;
        ctx.shadowColor = this.colors.danger;
        ctx.shadowBlur = cell * 0.4;
        ctx.lineWidth = Math.max(3, cell * 0.16);
        ctx.beginPath();
        ctx.moveTo(cx + dx * h - dy * h, cy + dy * h - dx * h);
        ctx.lineTo(cx + dx * h + dy * h, cy + dy * h + dx * h);
        ctx.stroke();
        ctx.restore();
      }
    }

    const [px, py] = center(this.shown);
    ctx.save();
    ctx.shadowColor = this.won ? this.colors.goal : this.colors.accent;
    ctx.shadowBlur = cell * 0.6;
    const grad = ctx.createRadialGradient(px + bx - cell * 0.1, py + by - cell * 0.1, cell * 0.05, px + bx, py + by, cell * 0.32);
    grad.addColorStop(0, "#ffffff");
    grad.addColorStop(0.35, this.won ? this.colors.goal : hit > 0.3 ? this.colors.danger : this.colors.accent);
    grad.addColorStop(1, this.won ? "#1f9e6a" : "#5a4fd6");
    ctx.fillStyle = grad;
    ctx.beginPath();
    ctx.arc(px + bx, py + by, cell * 0.3, 0, Math.PI * 2);
    ctx.fill();
    ctx.restore();

    if (animating) this.requestDraw();
  }
}

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}

/** Plain-words description of the position, for the canvas's accessible label. */
export function describePosition(state, maze) {
  if (!state || !maze) return "Maze not loaded yet.";
  const open = Object.entries({ up: NORTH, right: EAST, down: SOUTH, left: WEST })
    .filter(([, bit]) => !(maze.cells[state.player.y][state.player.x] & bit))
    .map(([name]) => name);
  return (
    `Level ${state.level} maze, ${maze.width} by ${maze.height}. You are at column ${state.player.x + 1}, ` +
    `row ${state.player.y + 1}; the goal is at column ${state.goal.x + 1}, row ${state.goal.y + 1}. ` +
    `Open: ${open.join(", ") || "none"}.`
  );
}

/** Mirror the server's state onto the canvas: data attributes (tests, tools) and a spoken summary. */
export function publishState(canvas, state, maze) {
  const d = canvas.dataset;
  d.playerX = state.player.x;
  d.playerY = state.player.y;
  d.level = state.level;
  d.moves = state.moves;
  d.status = state.status;
  d.version = state.version;
  d.scheme = state.scheme;
  canvas.setAttribute("aria-label", describePosition(state, maze));
}
