// Edge mode: MediaPipe Hands runs in this page, so the camera picture never leaves the device. Only the
// 21 landmarks of each frame go to the server (a `landmarks` message), which recognises them with the same
// classifier and smoothing as a JPEG frame. The runtime is served by the game server itself
// (/vendor/mediapipe-hands/, installed by `gesture-maze edge-assets`): nothing comes from a CDN.

const RUNTIME = "/vendor/mediapipe-hands/";
const SLOW_MS = 1000; // slower than this per frame (after warm-up) is no game: fall back to JPEG frames
const WARMUP_FRAMES = 5;
const clampTo = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

export class EdgeUnavailable extends Error {}

/** Why this browser cannot run edge mode, or null when it can try. */
export function edgeBlocker() {
  if (typeof WebAssembly !== "object") return "this browser cannot run WebAssembly";
  try {
    if (!document.createElement("canvas").getContext("webgl2")) return "this browser has no WebGL 2";
  } catch {
    return "this browser has no WebGL 2";
  }
  return null;
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new EdgeUnavailable("edge mode is not installed on this server"));
    document.head.append(script);
  });
}

export class EdgeLandmarker {
  /** Load the runtime and its models once; throws EdgeUnavailable with a plain reason. */
  static async load() {
    const blocker = edgeBlocker();
    if (blocker) throw new EdgeUnavailable(blocker);
    if (!window.Hands) await loadScript(RUNTIME + "hands.js");
    const hands = new window.Hands({ locateFile: (file) => RUNTIME + file });
    // The server's defaults (GM_MODEL_COMPLEXITY=0, the lite landmark model; the same thresholds).
    hands.setOptions({
      maxNumHands: 1, modelComplexity: 0, minDetectionConfidence: 0.5, minTrackingConfidence: 0.5, selfieMode: false,
    });
    const landmarker = new EdgeLandmarker(hands);
    try {
      await hands.initialize();
    } catch (err) {
      throw new EdgeUnavailable(`the hand model could not start here (${err?.message ?? err})`);
    }
    return landmarker;
  }

  constructor(hands) {
    this.hands = hands;
    this.latest = null;
    this.frames = 0;
    this.ms = null; // moving average of the time one frame takes here
    hands.onResults((results) => { this.latest = results; });
  }

  /** True once warmed up and still too slow to play with. */
  get tooSlow() {
    return this.frames > WARMUP_FRAMES && this.ms !== null && this.ms > SLOW_MS;
  }

  /** The `landmarks` message for the current picture of `source` (a <video> or <img>), unmirrored. */
  async read(source) {
    const width = source.videoWidth || source.naturalWidth || source.width;
    const height = source.videoHeight || source.naturalHeight || source.height;
    if (!width || !height) return null;
    const started = performance.now();
    this.latest = null;
    await this.hands.send({ image: source });
    const took = performance.now() - started;
    this.frames += 1;
    if (this.frames > 1) this.ms = this.ms === null ? took : this.ms * 0.8 + took * 0.2; // the first builds the graph
    return landmarksMessage(this.latest, width, height);
  }

  /** One unrelated picture, not a video frame: the hand tracked so far is forgotten first (tracking
   * would look for it where the last picture had it). */
  async readStill(source) {
    await this.hands.reset();
    return this.read(source);
  }

  close() {
    this.hands?.close?.();
    this.hands = null;
  }
}

/** MediaPipe's results as the protocol's `landmarks` message (docs/protocol.md, "Edge mode"). */
export function landmarksMessage(results, width, height) {
  const points = results?.multiHandLandmarks?.[0];
  const label = results?.multiHandedness?.[0];
  const size = { width: Math.round(clampTo(width, 16, 8192)), height: Math.round(clampTo(height, 16, 8192)) };
  if (!points || points.length !== 21 || !label) return { type: "landmarks", ...size, hand: null };
  return {
    type: "landmarks",
    ...size,
    hand: {
      // Rounded (the server keeps 4 decimals too) and kept inside the protocol's ranges.
      points: points.map((p) => [
        round(clampTo(p.x, -0.5, 1.5)), round(clampTo(p.y, -0.5, 1.5)), round(clampTo(p.z, -1, 1)),
      ]),
      // MediaPipe names hands as if the picture were a mirror; the frame is the raw camera image, so the
      // label is swapped to name the person's real hand (as the server's own tracker does).
      handedness: label.label === "Left" ? "Right" : "Left",
      score: round(clampTo(label.score ?? 0, 0, 1)),
    },
  };
}

const round = (v) => Math.round(v * 1e5) / 1e5;
