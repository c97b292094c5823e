/** Size a canvas's backing store to its displayed size in device pixels (sharp on HiDPI screens);
 * returns [width, height] in device pixels. Only resizes when needed: resizing clears the canvas. */
export function fitToDisplay(canvas) {
  const rect = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(rect.width * dpr));
  const h = Math.max(1, Math.round(rect.height * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  return [w, h];
}
