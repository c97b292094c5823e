// Gesture icons (emoji where Unicode has one, a tiny inline SVG hand where it does not) and the legend.

// Unicode has no "three" or "four" hand, and many Linux desktops have no colour emoji font, so every
// gesture is a small inline SVG hand drawn the same way.
const SKIN = 'fill="#f3c6a0" stroke="#b67f57" stroke-width="1.6" stroke-linejoin="round"';

/** A hand, palm to the viewer, with fingers [thumb, index, middle, ring, pinky] raised or folded. */
function handSvg(raised, label, rotate = 0) {
  const fingers = [
    [19, 8.5, 9], // index: x, width, top when raised
    [28.5, 8.5, 4],
    [38, 8.5, 8],
    [47.5, 7.5, 16],
  ];
  const parts = fingers.map(([x, w, up], i) => {
    const top = raised[i + 1] ? up : 29; // folded: only the knuckle shows above the palm
    return `<rect x="${x}" y="${top}" width="${w}" height="${46 - top}" rx="${w / 2}"/>`;
  });
  const thumb = raised[0]
    ? '<rect x="5" y="30" width="8.5" height="26" rx="4.25" transform="rotate(-35 12 56)"/>'
    : '<rect x="11" y="40" width="8.5" height="17" rx="4.25" transform="rotate(-60 16 54)"/>';
  return (
    `<svg viewBox="-6 0 76 76" role="img" aria-label="${label}"><g ${SKIN} transform="rotate(${rotate} 32 40)">` +
    `${thumb}${parts.join("")}<rect x="16" y="34" width="41" height="34" rx="11"/></g></svg>`
  );
}

/** A fist seen from the side with the thumb up (like) or, turned over, down (dislike). */
function thumbSvg(up, label) {
  const knuckles = [0, 1, 2, 3].map((i) => `<rect x="34" y="${26 + i * 9}" width="16" height="10" rx="5"/>`).join("");
  return (
    `<svg viewBox="-6 0 76 76" role="img" aria-label="${label}"><g ${SKIN}${up ? "" : ' transform="rotate(180 32 36)"'}>` +
    `<rect x="20" y="4" width="10" height="30" rx="5"/><rect x="14" y="24" width="34" height="42" rx="10"/>${knuckles}` +
    `</g></svg>`
  );
}

const HANDS = {
  one: [false, true, false, false, false],
  peace: [false, true, true, false, false],
  three: [false, true, true, true, false],
  four: [false, true, true, true, true],
  palm: [true, true, true, true, true],
  stop: [true, true, true, true, true],
  fist: [false, false, false, false, false],
};

/** HTML for a gesture's icon. Labels come from the server's model, so they are escaped. */
export function gestureIcon(name) {
  if (!name) return '<span aria-hidden="true">·</span>';
  if (name === "like") return thumbSvg(true, "thumb up");
  if (name === "dislike") return thumbSvg(false, "thumb down");
  return handSvg(HANDS[name] ?? HANDS.palm, escapeHtml(name));
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** An index finger pointing in a direction (pointing scheme). */
export function pointIcon(direction) {
  const angle = { up: 0, right: 90, down: 180, left: -90 }[direction];
  return handSvg(HANDS.one, `point ${direction}`, angle);
}

export const ARROWS = { up: "↑", down: "↓", left: "←", right: "→" };

// What the readout calls each of the model's classes (the wire keeps the raw names).
const LABELS = {
  no_gesture: "Resting hand", relaxed: "Resting hand", one: "One finger", peace: "Peace", three: "Three",
  four: "Four", like: "Thumb up", dislike: "Thumb down", palm: "Open palm", stop: "Stop", fist: "Fist",
  ok: "OK", call: "Call", rock: "Rock", mute: "Mute",
};

/** A gesture's name for people: "Resting hand" for no_gesture, "Peace" for peace, "Two up" for two_up. */
export function gestureLabel(name) {
  if (!name) return "";
  if (LABELS[name]) return LABELS[name];
  const words = String(name).replace(/[_-]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

const DIRECTIONS = ["up", "right", "down", "left"];

// The default GM_COUNTING_MAP; the server is the authority, this is only the picture of it.
const COUNTING = {
  up: [["one", "one finger"], ["like", "thumb up"]],
  right: [["peace", "two fingers"]],
  down: [["three", "three fingers"], ["dislike", "thumb down"]],
  left: [["four", "four fingers"]],
};

/** Fill a <ul> with one row per direction for the chosen scheme. */
export function renderLegend(list, scheme) {
  list.replaceChildren();
  for (const dir of DIRECTIONS) {
    const li = document.createElement("li");
    li.dataset.direction = dir;
    const how =
      scheme === "pointing"
        ? `<span class="g"><span class="icon">${pointIcon(dir)}</span>` +
          `<small>point ${dir}</small></span>`
        : COUNTING[dir]
            .map(([g, words]) => `<span class="g"><span class="icon">${gestureIcon(g)}</span><small>${words}</small></span>`)
            .join("");
    li.innerHTML = `<span class="dir" aria-label="${dir}">${ARROWS[dir]}</span><span class="how">${how}</span>`;
    list.append(li);
  }
}

/** The compact help next to the readout: one icon per direction (the first gesture of each). */
export function renderMiniLegend(list, scheme) {
  list.replaceChildren();
  list.dataset.scheme = scheme;
  for (const dir of DIRECTIONS) {
    const li = document.createElement("li");
    li.dataset.direction = dir;
    const [gesture, words] = scheme === "pointing" ? [null, `point ${dir}`] : COUNTING[dir][0];
    const icon = gesture ? gestureIcon(gesture) : pointIcon(dir);
    li.innerHTML = `<span class="icon" aria-hidden="true">${icon}</span><span class="arrow" aria-hidden="true">${ARROWS[dir]}</span>`;
    li.setAttribute("aria-label", `${words}: ${dir}`);
    li.setAttribute("role", "listitem");
    list.append(li);
  }
}

/** Highlight the legend row of the command that just fired (or none). */
export function highlightLegend(list, direction) {
  for (const li of list.children) li.dataset.active = String(li.dataset.direction === direction);
}

/** Mark each legend row open or walled from the current cell, so nobody tries a direction that cannot move. */
export function markOpenDirections(list, open) {
  for (const li of list.children) {
    const isOpen = open.includes(li.dataset.direction);
    li.dataset.open = String(isOpen);
    li.title = isOpen ? "open from here" : "wall from here";
  }
}

/** Plain words for the gesture(s) that steer `direction` in `scheme`, e.g. "two fingers". */
export function gestureWords(scheme, direction) {
  if (scheme === "pointing") return `point ${direction}`;
  return (COUNTING[direction] ?? []).map(([, words]) => words).join(" or ");
}

/**
 * Keep a one-line name whole: whenever its text changes, step the font down (to at least `minPx`) until
 * it fits its box, instead of cutting it to "No Ha…". The box keeps its size, so nothing around it moves.
 */
export function keepWhole(element, minPx = 12) {
  const fit = () => {
    element.style.fontSize = "";
    let size = parseFloat(getComputedStyle(element).fontSize);
    while (element.scrollWidth > element.clientWidth + 1 && size > minPx) {
      size -= 1;
      element.style.fontSize = `${size}px`;
    }
  };
  new MutationObserver(fit).observe(element, { childList: true, characterData: true, subtree: true });
  window.addEventListener("resize", fit);
  fit();
}
