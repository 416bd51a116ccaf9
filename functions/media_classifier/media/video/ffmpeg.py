"""The bundled ffmpeg, run with whitelists so a crafted file can only ever be read as media."""

from __future__ import annotations

import os
import subprocess

from media_classifier.errors import ErrorCode, MediaError

# Containers ffmpeg may open. Anything else (HLS playlists, concat scripts,
# image2 patterns, network protocols) is refused by ffmpeg itself, so a crafted
# upload can never make it read other files or reach the network. Audio
# containers are listed so an audio-only upload is reported as such.
_FORMAT_WHITELIST = "mov,matroska,avi,mpeg,mpegts,flv,ogg,mp3,wav,flac,aac"
_PROTOCOL_WHITELIST = "file"


def ffmpeg_exe() -> str:
    """The ffmpeg bundled by imageio-ffmpeg (imported lazily, it resolves a path)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def input_args(path: str) -> list[str]:
    """``-i`` with the whitelists; ``file:`` so a name with ':' is never a protocol."""
    return [
        "-format_whitelist",
        _FORMAT_WHITELIST,
        "-protocol_whitelist",
        _PROTOCOL_WHITELIST,
        "-i",
        "file:" + os.path.abspath(path),
    ]


def run_ffmpeg(args: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg to completion with a hard timeout (the process is killed on expiry)."""
    try:
        return subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-hide_banner", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise MediaError(
            ErrorCode.CORRUPT_MEDIA, f"ffmpeg did not finish reading the file in {timeout:.0f} s"
        ) from exc
