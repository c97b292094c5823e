"""Edge mode's browser runtime: MediaPipe Hands for the web (Apache-2.0), from the npm registry.

The page finds the hand itself with the same MediaPipe Hands models the server runs, so the
landmarks it sends classify as the server's would. Its runtime (WASM, the models, ~24 MB unpacked)
is not committed: `gesture-maze edge-assets` fetches the pinned npm package once, checks its
registry integrity hash, and unpacks the files the page needs into GM_EDGE_ASSETS_DIR; the server
serves them from there under `/vendor/mediapipe-hands/`. Nothing is fetched at run time, by the
server or the browser. Without them the page says edge mode is not installed and streams JPEGs.
The licence travels with the files (`LICENSE`, Apache-2.0 as the package declares; the record is
frontend/vendor/README.md).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import logging
import shutil
import ssl
import sys
import tarfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from stream.protocol.codes import NOT_FOUND
from stream.protocol.errors import send_error_response

log = logging.getLogger(__name__)

URL_PATH = "/vendor/mediapipe-hands"


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # the registry's `dist.integrity` (sha512, base64)
    files: tuple[str, ...]  # what the page loads; nothing else is unpacked

    @property
    def tarball_path(self) -> str:
        return f"{self.name}/-/{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"


MEDIAPIPE_HANDS = NpmPackage(
    name="@mediapipe/hands",
    version="0.4.1675469240",
    integrity="sha512-GxoZvL1mmhJxFxjuyj7vnC++JIuInGznHBin5c7ZSq/RbcnGyfEcJrkM/bMu5K1Mz/2Ko+vEX6/+wewmEHPrHg==",
    files=(
        "hands.js",
        "hands.binarypb",
        "hands_solution_packed_assets.data",
        "hands_solution_packed_assets_loader.js",
        "hands_solution_simd_wasm_bin.js",
        "hands_solution_simd_wasm_bin.wasm",
        "hands_solution_simd_wasm_bin.data",
        "hands_solution_wasm_bin.js",
        "hands_solution_wasm_bin.wasm",
        "hand_landmark_full.tflite",
        "hand_landmark_lite.tflite",
        "package.json",
    ),
)
MAX_TARBALL_BYTES = 64 * 1024 * 1024  # the pinned one is 13 MB
DEFAULT_REGISTRY = "https://registry.npmjs.org"


class AssetError(RuntimeError):
    """The package could not be fetched, or is not the one pinned here."""


def installed_dir(root: Path, package: NpmPackage = MEDIAPIPE_HANDS) -> Path:
    return root.expanduser() / f"mediapipe-hands-{package.version}"


def is_installed(root: Path, package: NpmPackage = MEDIAPIPE_HANDS) -> bool:
    folder = installed_dir(root, package)
    return all((folder / name).is_file() for name in (*package.files, "LICENSE"))


def _tls() -> ssl.SSLContext:
    """The system's CA certificates, or certifi's where the system has none (a minimal image)."""
    context = ssl.create_default_context()
    if not context.get_ca_certs():
        with contextlib.suppress(ImportError):
            import certifi

            context.load_verify_locations(certifi.where())
    return context


def check_integrity(data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise AssetError(f"unsupported integrity {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise AssetError("the downloaded package does not match its pinned integrity hash")


def unpack(data: bytes, target: Path, package: NpmPackage = MEDIAPIPE_HANDS) -> None:
    """Write the listed files of an npm tarball (`package/<name>`) into `target`, atomically."""
    wanted = {f"package/{name}": name for name in package.files}
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    found: set[str] = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive:
            name = wanted.get(member.name)
            if name is None or not member.isfile():  # only the listed regular files, by exact name
                continue
            source = archive.extractfile(member)
            assert source is not None
            (staging / name).write_bytes(source.read())
            found.add(name)
    missing = set(package.files) - found
    if missing:
        shutil.rmtree(staging, ignore_errors=True)
        raise AssetError(f"the package lacks {', '.join(sorted(missing))}")
    licence = resources.files("frontend").joinpath("vendor/LICENSE-mediapipe.txt").read_bytes()
    (staging / "LICENSE").write_bytes(licence)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def fetch(root: Path, registry: str = DEFAULT_REGISTRY, package: NpmPackage = MEDIAPIPE_HANDS) -> Path:
    """Download, check and unpack the pinned package under `root` (once); its folder."""
    target = installed_dir(root, package)
    if is_installed(root, package):
        return target
    url = f"{registry.rstrip('/')}/{package.tarball_path}"
    log.info("fetching %s@%s from %s", package.name, package.version, url)
    try:
        with urllib.request.urlopen(url, timeout=60, context=_tls()) as response:
            data = response.read(MAX_TARBALL_BYTES + 1)
    except OSError as exc:
        raise AssetError(f"could not download {url}: {exc}") from exc
    if len(data) > MAX_TARBALL_BYTES:
        raise AssetError(f"{url} is larger than {MAX_TARBALL_BYTES} bytes")
    check_integrity(data, package.integrity)
    target.parent.mkdir(parents=True, exist_ok=True)
    unpack(data, target, package)
    return target


class InstalledFiles:
    """Serves the runtime once it is installed (checked per request until it is, so running
    `gesture-maze edge-assets` needs no restart); 404 `not_found` before."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: StaticFiles | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._files is None and is_installed(self.root):
            self._files = StaticFiles(directory=installed_dir(self.root))
        if self._files is None:
            message = "edge mode is not installed on this server (gesture-maze edge-assets)"
            await send_error_response(send, 404, NOT_FOUND, message)
            return
        await self._files(scope, receive, send)


def main(argv: Sequence[str] | None = None) -> int:
    """`gesture-maze edge-assets`: fetch the browser runtime of edge mode into GM_EDGE_ASSETS_DIR."""
    from stream.settings import Settings

    parser = argparse.ArgumentParser(prog="gesture-maze edge-assets", description=main.__doc__)
    parser.add_argument(
        "--optional", action="store_true",
        help="a failed download is a warning (exit 0): the server then offers JPEG streaming only",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = fetch(Path(settings.edge_assets_dir), settings.npm_registry)
    except AssetError as exc:
        print(f"edge mode not installed: {exc}", file=sys.stderr)
        return 0 if args.optional else 1
    print(f"edge mode ready: {MEDIAPIPE_HANDS.name}@{MEDIAPIPE_HANDS.version} in {folder}")
    return 0
