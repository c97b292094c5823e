// Consent boxes change only by a person's own click on this page (issue #26, clickjacking): a click a
// script made (`element.click()`, `dispatchEvent`: `isTrusted` false) or any click while the page is
// framed by another page is cancelled before the box changes, and a synthetic `change` never
// reaches the box's handler. The server's X-Frame-Options / CSP frame-ancestors stop framing first;
// this is for browsers that do not honour them. `stored()` is the consent as last given (to undo a
// script's direct `checked = ...` that came with a synthetic change).
export const genuine = (event) => event.isTrusted && window.top === window.self;

export function guardConsent(box, stored) {
  box.addEventListener("click", (e) => {
    if (!genuine(e)) e.preventDefault(); // the box keeps its state; no change event follows
  }, true);
  box.addEventListener("change", (e) => {
    if (genuine(e)) return;
    e.stopImmediatePropagation();
    box.checked = stored();
  }, true);
}
