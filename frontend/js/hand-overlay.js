import { fitToDisplay } from "./canvas.js";

// Draws the server's 21 hand landmarks over the mirrored selfie preview.
// Landmarks arrive in unmirrored, normalised image coordinates; the preview is mirrored, so x -> 1 - x.

const BONES = [
  [0, 1], [1, 2], [2, 3], [3, 4], // thumb
  [0, 5], [5, 6], [6, 7], [7, 8], // index
  [5, 9], [9, 10], [10, 11], [11, 12], // middle
  [9, 13], [13, 14], [14, 15], [15, 16], // ring
  [13, 17], [0, 17], [17, 18], [18, 19], [19, 20], // pinky and palm
];
const TIPS = new Set([4, 8, 12, 16, 20]);

export class HandOverlay {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.enabled = true;
  }

  clear() {
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  draw(landmarks, active) {
    const [w, h] = fitToDisplay(this.canvas);
    this.clear();
    if (!this.enabled || !Array.isArray(landmarks) || landmarks.length !== 21) return;
    const ctx = this.ctx;
    const pts = landmarks.map(([x, y]) => [(1 - x) * w, y * h]);
    const color = active ? "#3ddc97" : "#7c9cff";
    ctx.lineWidth = Math.max(2, w / 160);
    ctx.lineCap = "round";
    ctx.strokeStyle = color;
    ctx.globalAlpha = 0.9;
    ctx.beginPath();
    for (const [a, b] of BONES) {
      ctx.moveTo(pts[a][0], pts[a][1]);
      ctx.lineTo(pts[b][0], pts[b][1]);
    }
    ctx.stroke();
    ctx.globalAlpha = 1;
    pts.forEach(([x, y], i) => {
      ctx.fillStyle = TIPS.has(i) ? "#ffffff" : color;
      ctx.beginPath();
      ctx.arc(x, y, Math.max(2.5, w / (TIPS.has(i) ? 90 : 130)), 0, Math.PI * 2);
      ctx.fill();
    });
  }
}
