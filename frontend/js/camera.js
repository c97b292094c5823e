// The webcam: permission, device choice, and grabbing small JPEG frames from the live video.

export class Camera {
  constructor(video) {
    this.video = video;
    this.stream = null;
    this.canvas = document.createElement("canvas");
    this.ctx = this.canvas.getContext("2d", { alpha: false });
  }

  get active() {
    return !!this.stream && this.video.readyState >= 2 && this.video.videoWidth > 0;
  }

  get deviceId() {
    return this.stream?.getVideoTracks()[0]?.getSettings().deviceId ?? "";
  }

  /** Start the camera; with no device id, the user-facing (selfie) camera. Throws getUserMedia errors. */
  async start(deviceId) {
    if (!navigator.mediaDevices?.getUserMedia) {
      const err = new Error("getUserMedia unavailable");
      err.name = window.isSecureContext ? "NotSupportedError" : "InsecureContextError";
      throw err;
    }
    this.stop();
    const size = { width: { ideal: 640 }, height: { ideal: 480 } };
    const video = deviceId ? { deviceId: { exact: deviceId }, ...size } : { facingMode: "user", ...size };
    this.stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    this.video.srcObject = this.stream;
    await this.video.play().catch(() => {});
    if (this.video.readyState < 1) {
      await new Promise((resolve) => this.video.addEventListener("loadedmetadata", resolve, { once: true }));
    }
    return this.stream;
  }

  stop() {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.video.srcObject = null;
  }

  async listDevices() {
    if (!navigator.mediaDevices?.enumerateDevices) return [];
    const all = await navigator.mediaDevices.enumerateDevices();
    return all.filter((d) => d.kind === "videoinput");
  }

  /**
   * The current video frame as a JPEG Blob that fits in maxWidth x maxHeight, keeping the camera's aspect
   * (so the server's normalised landmarks map straight back onto the preview). Unmirrored, as the camera sees.
   */
  async grab(maxWidth, maxHeight, quality) {
    if (!this.active) return null;
    const vw = this.video.videoWidth;
    const vh = this.video.videoHeight;
    const scale = Math.min(1, maxWidth / vw, maxHeight / vh);
    const w = Math.max(16, Math.round(vw * scale));
    const h = Math.max(16, Math.round(vh * scale));
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.ctx.drawImage(this.video, 0, 0, w, h);
    return new Promise((resolve) => this.canvas.toBlob(resolve, "image/jpeg", quality));
  }
}

/** getUserMedia failures in plain words, with what to do next. */
export function describeCameraError(err) {
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return {
        code: "camera_denied",
        title: "The camera is blocked.",
        text:
          "Your browser was told not to share the camera with this page. Click the camera icon in the address bar " +
          "(or the site settings), choose Allow, then press “Turn on camera” again. Meanwhile you can play with the arrow keys.",
      };
    case "NotFoundError":
    case "OverconstrainedError":
    case "DevicesNotFoundError":
      return {
        code: "no_camera",
        title: "No camera found.",
        text:
          "Plug in a webcam (or open this page on a phone or laptop with one) and press “Turn on camera”. " +
          "You can still play with the arrow keys.",
      };
    case "NotReadableError":
    case "TrackStartError":
      return {
        code: "camera_busy",
        title: "The camera is busy.",
        text: "Another app or tab (a video call?) is using it. Close that, then press “Turn on camera” again.",
      };
    case "InsecureContextError":
      return {
        code: "insecure",
        title: "The camera needs a secure page.",
        text: "Browsers only share cameras with https:// pages or http://localhost. Open the game over https or on localhost.",
      };
    default:
      return {
        code: "camera_error",
        title: "The camera could not start.",
        text: `Your browser said: ${err?.message || err}. Try another camera from the list, or reload the page.`,
      };
  }
}
