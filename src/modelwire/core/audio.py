"""Audio in: encoded files (WAV, FLAC, OGG/Vorbis, MP3) and raw PCM chunks → mono float32
samples at the model's rate.

Files are read by libsndfile (`soundfile`); channels are averaged; the rate is converted
with `soxr`. Limits are checked before decoding where the header allows: the channel
count, the sample rate, and the declared duration. libsndfile clamps a WAV's data chunk
to the bytes the file holds, so a WAV's declared length is read from its RIFF chunks
here: a header that declares more than the file holds is a truncated file and is
refused, as is one that declares more than the model takes. Decoding reads in blocks and
stops at the limit, so a header that lies low cannot make the server read without bound.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from enum import StrEnum
from types import ModuleType
from typing import Any

import numpy as np

from modelwire.core.extras import optional
from modelwire.errors import InvalidInput, TooLarge

__all__ = [
    "FORMATS",
    "AudioLimits",
    "PcmEncoding",
    "PcmFormat",
    "PcmStream",
    "decode_audio",
    "to_pcm16",
]

#: The containers accepted, as libsndfile names them.
FORMATS = ("WAV", "WAVEX", "FLAC", "OGG", "MP3")
_BLOCK_FRAMES = 65_536
_QUALITY = "HQ"


@dataclass(frozen=True)
class AudioLimits:
    """What one file or one utterance may hold."""

    max_seconds: float = 300.0
    max_channels: int = 8
    min_rate: int = 8_000
    max_rate: int = 192_000


class PcmEncoding(StrEnum):
    S16LE = "s16le"
    F32LE = "f32le"


_SAMPLE_BYTES = {PcmEncoding.S16LE: 2, PcmEncoding.F32LE: 4}
_SAMPLE_DTYPE: dict[PcmEncoding, np.dtype[Any]] = {
    PcmEncoding.S16LE: np.dtype("<i2"),
    PcmEncoding.F32LE: np.dtype("<f4"),
}


@dataclass(frozen=True)
class PcmFormat:
    """Raw interleaved PCM, as a stream declares it in its first message."""

    sample_rate: int
    encoding: PcmEncoding = PcmEncoding.S16LE
    channels: int = 1

    def check(self, limits: AudioLimits) -> None:
        _check_shape(self.sample_rate, self.channels, limits)

    @property
    def frame_bytes(self) -> int:
        return _SAMPLE_BYTES[self.encoding] * self.channels


def _library(name: str) -> ModuleType:
    return optional(name, "speech")


def decode_audio(data: bytes, rate: int, limits: AudioLimits) -> np.ndarray:
    """An encoded file's samples, mono float32 in [-1, 1] at `rate`. Raises InvalidInput
    (not audio, a container not in FORMATS, truncated, undecodable, too many channels, a
    rate out of range) or TooLarge (longer than `limits.max_seconds`)."""
    if not data:
        raise InvalidInput("the audio is empty: send a WAV, FLAC, OGG or MP3 file", field="audio")
    soundfile = _library("soundfile")
    try:
        sound = soundfile.SoundFile(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        raise InvalidInput(
            "the audio is not a file this server reads: send WAV, FLAC, OGG/Vorbis or MP3",
            field="audio",
        ) from None
    with sound:
        if sound.format not in FORMATS:
            raise InvalidInput(
                f"{sound.format_info} audio is not supported: send WAV, FLAC, OGG/Vorbis or MP3",
                field="audio",
            )
        _check_shape(sound.samplerate, sound.channels, limits)
        declared = _declared_frames(data, sound)
        most = int(limits.max_seconds * sound.samplerate)
        if declared is not None and declared > most:
            raise TooLarge(
                f"the audio declares {declared / sound.samplerate:.0f} s; this model takes "
                f"at most {limits.max_seconds:g} s per file: send a shorter file",
                field="audio",
            )
        if sound.format in ("WAV", "WAVEX") and declared is not None and declared > sound.frames:
            raise InvalidInput(
                f"the WAV file is truncated: its header declares {declared} frames, the file "
                f"holds {sound.frames}",
                field="audio",
            )
        return _read_bounded(sound, most, rate)


def _check_shape(rate: int, channels: int, limits: AudioLimits) -> None:
    if not 1 <= channels <= limits.max_channels:
        raise InvalidInput(
            f"the audio has {channels} channels; send 1 to {limits.max_channels}", field="audio"
        )
    if not limits.min_rate <= rate <= limits.max_rate:
        raise InvalidInput(
            f"the audio's sample rate is {rate} Hz; send {limits.min_rate} to {limits.max_rate} Hz",
            field="audio",
        )


def _declared_frames(data: bytes, sound: Any) -> int | None:
    """The frames the header says the file holds: a WAV's data chunk, else libsndfile's
    count (FLAC's STREAMINFO, for one); None when a WAV's size is left open."""
    if sound.format not in ("WAV", "WAVEX"):
        return int(sound.frames)
    size, block_align = _wav_data_size(data)
    if size is None or not block_align:
        return None
    return size // block_align


def _wav_data_size(data: bytes) -> tuple[int | None, int]:
    """The data chunk's declared byte count and the fmt chunk's block alignment, walking
    the RIFF chunks; (None, align) for streamed files that leave the size at 0 or
    0xFFFFFFFF."""
    position, align = 12, 0
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], struct.unpack_from("<I", data, position + 4)[0]
        if chunk == b"fmt " and position + 22 <= len(data):
            align = struct.unpack_from("<H", data, position + 20)[0]
        if chunk == b"data":
            return (None if size in (0, 0xFFFFFFFF) else size), align
        position += 8 + size + (size & 1)
    return None, align


def _read_bounded(sound: Any, most: int, rate: int) -> np.ndarray:
    """The file's samples, mono at `rate`, block by block (at most one block of the
    source's channels in memory), refusing past `most` source frames."""
    soundfile = _library("soundfile")
    resampler = _resampler(sound.samplerate, rate)
    blocks: list[np.ndarray] = []
    total = 0
    try:
        while True:
            block = sound.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            last = len(block) < _BLOCK_FRAMES
            total += len(block)
            if total > most:
                raise TooLarge(
                    f"the audio is longer than the {most / sound.samplerate:g} s this model "
                    "takes per file: send a shorter file",
                    field="audio",
                )
            mono = _mono(block)
            blocks.append(mono if resampler is None else _chunk(resampler, mono, last))
            if last:
                break
    except (soundfile.LibsndfileError, RuntimeError):
        raise InvalidInput(
            "the audio could not be decoded (a damaged or truncated file)", field="audio"
        ) from None
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _resampler(source: int, target: int) -> Any:
    """A soxr stream from `source` to `target` Hz (None when they agree): files and
    streams convert through the same filter, so both give the same samples."""
    if source == target:
        return None
    return _library("soxr").ResampleStream(source, target, 1, dtype="float32", quality=_QUALITY)


def _chunk(resampler: Any, samples: np.ndarray, last: bool) -> np.ndarray:
    out = np.asarray(resampler.resample_chunk(samples, last=last))
    return out.astype(np.float32, copy=False)


def _mono(samples: np.ndarray) -> np.ndarray:
    if samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0])
    mono: np.ndarray = samples.mean(axis=1, dtype=np.float32)
    return mono


def to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as 16-bit little-endian PCM (what PocketSphinx reads);
    16-bit input read as float comes back exactly."""
    scaled = np.clip(np.rint(np.nan_to_num(samples) * 32768.0), -32768, 32767)
    return bytes(scaled.astype("<i2").tobytes())


class PcmStream:
    """Raw PCM chunks in (any split, even mid-frame), mono float32 at `rate` out."""

    def __init__(self, fmt: PcmFormat, rate: int, limits: AudioLimits) -> None:
        fmt.check(limits)
        self.format = fmt
        self._rest = b""
        self._resampler = _resampler(fmt.sample_rate, rate)

    def push(self, chunk: bytes, last: bool = False) -> np.ndarray:
        data = self._rest + chunk
        whole = len(data) - len(data) % self.format.frame_bytes
        self._rest = data[whole:]
        dtype = _SAMPLE_DTYPE[self.format.encoding]
        frames = np.frombuffer(data[:whole], dtype=dtype).reshape(-1, self.format.channels)
        if self.format.encoding == PcmEncoding.S16LE:
            samples = frames.astype(np.float32) / 32768.0
        else:
            samples = np.clip(np.nan_to_num(frames.astype(np.float32)), -1.0, 1.0)
        mono = _mono(samples)
        return mono if self._resampler is None else _chunk(self._resampler, mono, last)
