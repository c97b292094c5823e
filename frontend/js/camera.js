// The webcam: permission, device choice, and grabbing small JPEG frames from the live video.

const WATCH_MS = 400; // how often the track's readyState is looked at (track.stop() fires no "ended")
const MUTED_STOP_MS = 1200; // a track muted this long (camera covered by the OS, device gone) counts as stopped

export class Camera {
  /** @param {HTMLVideoElement} video  @param {{onStopped?: (reason: string) => void}} [hooks] */
  constructor(video, { onStopped } = {}) {
    this.video = video;
    this.onStopped = onStopped ?? (() => {});
    this.stream = null;
    this.watchTimer = null;
    this.mutedTimer = null;
    this.permission = null;
    this.canvas = document.createElement("canvas");
    this.ctx = this.canvas.getContext("2d", { alpha: false });
  }

  /** Live frames to send: a stream whose video track is live and not muted, and a decoded picture. */
  get active() {
    const track = this.stream?.getVideoTracks()[0];
    return !!track && track.readyState === "live" && !track.muted && this.video.readyState >= 2 && this.video.videoWidth > 0;
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
    this.watch(this.stream);
    await this.video.play().catch(() => {});
    if (this.video.readyState < 1) {
      await new Promise((resolve) => this.video.addEventListener("loadedmetadata", resolve, { once: true }));
    }
    return this.stream;
  }

  /**
   * Notice the camera going away: the track ends (unplugged, permission withdrawn: "ended"), is stopped
   * (track.stop() fires no event, so its readyState is polled and the stream's "inactive" heard), stays
   * muted, or the camera permission turns to denied. Then the stream is released and onStopped runs once.
   */
  watch(stream) {
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    const gone = (reason) => {
      if (this.stream !== stream) return;
      this.release();
      this.onStopped(reason);
    };
    track.addEventListener("ended", () => gone("ended"));
    stream.addEventListener("inactive", () => gone("ended"));
    track.addEventListener("mute", () => {
      clearTimeout(this.mutedTimer);
      this.mutedTimer = setTimeout(() => track.muted && gone("muted"), MUTED_STOP_MS);
    });
    track.addEventListener("unmute", () => clearTimeout(this.mutedTimer));
    this.watchTimer = setInterval(() => track.readyState === "ended" && gone("ended"), WATCH_MS);
    navigator.permissions?.query({ name: "camera" }).then((status) => {
      if (this.stream !== stream) return;
      this.permission = status;
      status.onchange = () => status.state === "denied" && gone("denied");
    }).catch(() => { /* Firefox may not know the "camera" permission name */ });
  }

  release() {
    clearInterval(this.watchTimer);
    clearTimeout(this.mutedTimer);
    if (this.permission) this.permission.onchange = null;
    this.permission = null;
    const stream = this.stream;
    this.stream = null;
    for (const track of stream?.getTracks() ?? []) track.stop();
    this.video.srcObject = null;
  }

  stop() {
    this.release();
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
export function describeCameraError(err, touch = false) {
  const keys = touch ? "the arrow buttons under the maze" : "the arrow keys";
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return {
        code: "camera_denied",
        title: "The camera is blocked.",
        text:
          "Your browser was told not to share the camera with this page. Click the camera icon in the address bar " +
          "(or the site settings), choose Allow, then press “Turn on camera” again. Meanwhile you can play with " + keys + ".",
      };
    case "NotFoundError":
    case "OverconstrainedError":
    case "DevicesNotFoundError":
      return {
        code: "no_camera",
        title: "No camera found.",
        text:
          "Plug in a webcam (or open this page on a phone or laptop with one) and press “Turn on camera”. " +
          "You can still play with " + keys + ".",
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
