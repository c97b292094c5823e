// Per-player calibration: an optional ~20 s guided step. The player shows each control gesture, then a
// relaxed hand; the server keeps the landmarks of those frames with the session (never images) and
// adapts recognition to this player's hand. Protocol: {"type":"calibrate","gesture":name|null},
// {"type":"calibration_reset"}, {"type":"donate","donate":bool}; each is answered by a
// {"type":"calibration", recording, samples, donate} message (docs/protocol.md).
import { guardConsent } from "./consent-guard.js";
import { gestureIcon, gestureLabel } from "./gestures.js";

export const PROMPTS = [
  { gesture: "one", text: "Index finger up" },
  { gesture: "peace", text: "Two fingers (V)" },
  { gesture: "three", text: "Three fingers" },
  { gesture: "four", text: "Four fingers, thumb folded" },
  { gesture: "like", text: "Thumb up" },
  { gesture: "dislike", text: "Thumb down" },
  { gesture: "relaxed", text: "A relaxed hand, no gesture" },
];

// ?calibration_ms=N shortens each prompt (tests); the default gives ~20 s in all.
function stepMs() {
  const raw = Number(new URLSearchParams(location.search).get("calibration_ms"));
  return Number.isFinite(raw) && raw >= 100 ? raw : 2400;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Calibration {
  /** @param {{slot: HTMLElement, send: (msg: object) => boolean|void, ready: () => boolean}} options */
  constructor({ slot, send, ready }) {
    this.send = send;
    this.ready = ready;
    this.running = false;
    this.samples = {};
    slot.innerHTML = `
      <div class="calibration" id="calibration" data-state="idle" data-samples="0">
        <button type="button" class="btn" id="calibrate-start">Calibrate my hand (20 s)</button>
        <div class="calibration-step" id="calibration-step" hidden aria-live="polite">
          <span class="g-icon" id="calibration-icon" aria-hidden="true"></span>
          <span id="calibration-text"></span>
          <span class="confbar" aria-hidden="true"><span id="calibration-progress"></span></span>
        </div>
        <p class="calibration-verdict" id="calibration-verdict" role="status" hidden></p>
        <p class="calibration-summary" id="calibration-summary" hidden></p>
        <label class="calibration-donate" hidden id="calibration-donate-label">
          <input type="checkbox" id="calibration-donate"> Donate these hand landmarks (no images) to improve the model
        </label>
        <button type="button" class="btn btn-link" id="calibration-reset" hidden>Forget my calibration</button>
      </div>`;
    this.root = slot.querySelector("#calibration");
    this.$ = (id) => slot.querySelector(`#${id}`);
    this.$("calibrate-start").addEventListener("click", () => this.run());
    this.$("calibration-reset").addEventListener("click", () => this.send({ type: "calibration_reset" }));
    guardConsent(this.$("calibration-donate"), () => this.root.dataset.donate === "true"); // before the handler
    this.$("calibration-donate").addEventListener("change", (e) => this.send({ type: "donate", donate: e.target.checked }));
  }

  /** A {"type":"calibration"} message from the server. */
  onMessage(msg) {
    this.showVerdict(msg.step);
    this.samples = msg.samples || {};
    const total = Object.values(this.samples).reduce((a, b) => a + b, 0);
    this.root.dataset.samples = String(total);
    this.root.dataset.donate = String(!!msg.donate);
    this.$("calibration-donate").checked = !!msg.donate;
    if (!this.running) this.showSummary();
  }

  /**
   * The server checks each step against its prompt when it ends (`step`: {gesture, frames, matched, seen,
   * accepted}): "got it", or what it saw instead (a refused step's samples were dropped).
   */
  showVerdict(step) {
    const el = this.$("calibration-verdict");
    if (!step || typeof step !== "object") return;
    el.hidden = false;
    el.dataset.ok = String(!!step.accepted);
    const asked = gestureLabel(step.gesture);
    const saw = step.frames > 0 && step.seen ? gestureLabel(step.seen) : "no hand";
    el.textContent = step.accepted ? `${asked}: got it.` : `${asked}: that looked like ${saw}. Try that step again.`;
  }

  showSummary() {
    const entries = Object.entries(this.samples);
    const summary = this.$("calibration-summary");
    const calibrated = entries.length > 0;
    summary.hidden = false;
    summary.textContent = calibrated
      ? `Calibrated for your hand: ${entries.map(([g, n]) => `${g} ${n}`).join(" · ")}`
      : "Not calibrated: the standard model is used.";
    this.$("calibration-donate-label").hidden = !calibrated;
    this.$("calibration-reset").hidden = !calibrated;
    this.root.dataset.state = calibrated ? "done" : "idle";
  }

  async run() {
    if (this.running) return;
    if (!this.ready()) {
      this.$("calibration-summary").hidden = false;
      this.$("calibration-summary").textContent = "Turn on the camera and start a game first.";
      return;
    }
    this.running = true;
    const ms = stepMs();
    const step = this.$("calibration-step");
    this.$("calibrate-start").disabled = true;
    this.$("calibration-summary").hidden = true;
    step.hidden = false;
    this.root.dataset.state = "running";
    this.send({ type: "calibration_reset" });
    try {
      for (const [i, prompt] of PROMPTS.entries()) {
        if (!this.ready()) throw new Error("camera or connection lost");
        this.root.dataset.step = prompt.gesture;
        this.$("calibration-icon").innerHTML = gestureIcon(prompt.gesture); // our own SVG markup
        this.$("calibration-text").textContent = `${i + 1}/${PROMPTS.length}: ${prompt.text}`;
        this.$("calibration-progress").style.width = "0%";
        await sleep(ms / 3); // get into position before frames count
        this.send({ type: "calibrate", gesture: prompt.gesture });
        const started = performance.now();
        while (performance.now() - started < ms) {
          this.$("calibration-progress").style.width = `${Math.min(100, (100 * (performance.now() - started)) / ms)}%`;
          await sleep(50);
        }
        this.send({ type: "calibrate", gesture: null });
      }
    } catch (err) {
      this.send({ type: "calibrate", gesture: null });
      this.$("calibration-summary").textContent = `Calibration stopped: ${err.message}.`;
    } finally {
      this.running = false;
      step.hidden = true;
      delete this.root.dataset.step;
      this.$("calibrate-start").disabled = false;
      this.showSummary();
    }
  }
}
