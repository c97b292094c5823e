// "Undo — that was wrong": right after a gesture move, the player can take it back (button, or the
// Backspace / U key) and optionally say which gesture they meant. With the player's consent (a
// checkbox, remembered in this browser), the server stores the hand landmarks of that move - never
// images - to retrain the model. The server decides what may be undone (only the last gesture move,
// within a few seconds); this module only offers it while it is likely to be accepted.
//
// Wiring (player.js): `const feedback = new Feedback(container, send)`, then
// `if (feedback.onMessage(msg)) return;` at the top of the message handler.

import { guardConsent } from "./consent-guard.js";
import { gestureLabel } from "./gestures.js";

const CONSENT_KEY = "gm.feedbackConsent";
const OFFER_MS = 4000; // the server's default GM_UNDO_WINDOW_S; it stays the judge
const LABELS = ["", "one", "peace", "three", "four", "palm", "fist", "like", "dislike", "ok", "call", "rock",
  "stop", "mute", "no_gesture"];

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

export class Feedback {
  constructor(container, send) {
    this.send = send;
    this.offerTimer = null;
    this.root = el("div", { class: "feedback", id: "feedback" });
    container = container ?? document.body; // the page layout may move; the control must not vanish
    this.undo = el("button", { type: "button", class: "btn btn-small", id: "undo", hidden: "" }, "↶ Undo");
    this.undo.append(el("span", { class: "undo-long" }, " — that was wrong"));
    this.undo.title = "Take back the last gesture move (Backspace or U)";
    const pick = el("label", { class: "feedback-label" });
    pick.append("I meant: ");
    this.label = el("select", { id: "undo-label", "aria-label": "The gesture you meant (optional)" });
    for (const name of LABELS) this.label.append(new Option(name ? gestureLabel(name) : "—", name));
    pick.append(this.label);
    this.pickWrap = pick;
    pick.hidden = true;
    const consent = el("label", { class: "feedback-consent" });
    this.consent = el("input", { type: "checkbox", id: "feedback-consent" });
    this.consent.checked = localStorage.getItem(CONSENT_KEY) === "1";
    consent.append(this.consent, " Let my corrections (hand landmarks only, no images) improve the model");
    this.note = el("span", { class: "muted", id: "undo-note", role: "status" });
    // The undo row keeps its height whether or not Undo is offered, so nothing below it jumps.
    const row = el("div", { class: "undo-row", id: "undo-row" });
    row.append(this.undo, pick, this.note);
    this.root.append(row, consent);
    container.append(this.root);

    this.undo.addEventListener("click", () => this.requestUndo());
    guardConsent(this.consent, () => localStorage.getItem(CONSENT_KEY) === "1"); // before the handler
    this.consent.addEventListener("change", () => {
      localStorage.setItem(CONSENT_KEY, this.consent.checked ? "1" : "0");
      this.send({ type: "consent", feedback: this.consent.checked });
    });
    document.addEventListener("keydown", (e) => {
      if (e.altKey || e.ctrlKey || e.metaKey || this.undo.hidden) return;
      const tag = e.target?.tagName;
      if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
      if (e.key === "Backspace" || e.key === "u" || e.key === "U") {
        e.preventDefault();
        this.requestUndo();
      }
    });
  }

  requestUndo() {
    this.send({ type: "undo", label: this.label.value || null });
    this.hideOffer();
  }

  offer() {
    clearTimeout(this.offerTimer);
    this.undo.hidden = false;
    this.pickWrap.hidden = false;
    this.note.textContent = "";
    this.offerTimer = setTimeout(() => this.hideOffer(), OFFER_MS);
  }

  hideOffer() {
    clearTimeout(this.offerTimer);
    this.undo.hidden = true;
    this.pickWrap.hidden = true;
    this.label.value = "";
  }

  // Returns true when the message was fully handled here (the caller skips its own handling).
  onMessage(msg) {
    if (msg.type === "welcome") {
      if (this.consent.checked) this.send({ type: "consent", feedback: true });
    } else if (msg.type === "state") {
      const source = msg.last_move?.source;
      if (source === "gesture") this.offer();
      else if (source && source !== "undo") this.hideOffer();
    } else if (msg.type === "undone") {
      this.note.textContent = undoneText(msg);
      this.root.dataset.undone = String(Number(this.root.dataset.undone || 0) + 1);
      return true;
    } else if (msg.type === "error" && msg.code === "nothing_to_undo") {
      this.hideOffer();
      this.note.textContent = msg.message ? `Nothing to undo: ${msg.message}` : "Nothing to undo.";
      return true;
    }
    return false;
  }
}

/**
 * Plain words for an `undone` message: the server takes back every move of the held gesture (`steps`:
 * cells gone back, `moves`: attempts incl. wall bumps) and says when gesture moves wait for the hand to
 * change (`paused`).
 */
export function undoneText(msg) {
  const count = Number.isInteger(msg.steps) ? msg.steps : Number.isInteger(msg.moves) ? msg.moves : null;
  let text = "Undone.";
  if (count === 0 || (count === null && msg.direction === null)) text = "Undone (the last try hit a wall; nothing moved).";
  else if (count > 1) text = `Undone: ${count} moves taken back.`;
  if (msg.stored) text = text.replace(/\.$/, " — thanks, noted for the model.");
  if (msg.paused) text += " Change your hand to steer again.";
  return text;
}
