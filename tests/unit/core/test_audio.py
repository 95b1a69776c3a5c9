"""Audio decoding: every container and sample format to mono float32 at the model's
rate, limits read from the header, raw PCM chunks split anywhere."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from modelwire.core.audio import (
    AudioLimits,
    PcmEncoding,
    PcmFormat,
    PcmStream,
    decode_audio,
    to_pcm16,
)
from modelwire.errors import InvalidInput, TooLarge
from tests.requirements import need_module

soundfile = need_module("soundfile", "soundfile (the speech extra)")
LIMITS = AudioLimits(max_seconds=10)
TONE = (np.sin(np.arange(22_050) * 2 * np.pi * 440 / 22_050) * 0.5).astype(np.float32)


def _encoded(samples: np.ndarray, rate: int, **options: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("container", "subtype"),
    [
        ("WAV", "PCM_U8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"),
        ("WAV", "FLOAT"), ("WAV", "DOUBLE"), ("FLAC", "PCM_16"), ("FLAC", "PCM_24"),
        ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III"),
    ],
)  # fmt: skip
def test_every_format_becomes_mono_at_the_model_rate(container: str, subtype: str) -> None:
    stereo = np.stack([TONE, TONE], axis=1)
    samples = decode_audio(
        _encoded(stereo, 22_050, format=container, subtype=subtype), 16_000, LIMITS
    )
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert abs(len(samples) - 16_000) <= 1
    # The tone survives: 440 Hz is the strongest frequency, its level about what was sent.
    spectrum = np.abs(np.fft.rfft(samples[1000:15000]))
    assert np.argmax(spectrum) * 16_000 / 14_000 == pytest.approx(440, abs=5)
    assert np.abs(samples).max() == pytest.approx(0.5, abs=0.06)


def test_sixteen_bit_audio_at_the_model_rate_comes_back_exactly() -> None:
    pcm = (np.random.default_rng(1).normal(0, 4000, 8000)).clip(-32768, 32767).astype("<i2")
    samples = decode_audio(_encoded(pcm, 16_000, format="WAV", subtype="PCM_16"), 16_000, LIMITS)
    assert to_pcm16(samples) == pcm.tobytes()


def _wav(frames_declared: int, data: bytes, rate: int = 16_000) -> bytes:
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return header + b"data" + struct.pack("<I", min(frames_declared * 2, 0xFFFFFFFF)) + data


def test_limits_are_read_from_the_header_before_decoding() -> None:
    with pytest.raises(TooLarge, match="declares 3600 s"):
        decode_audio(_wav(16_000 * 3600, bytes(3200)), 16_000, LIMITS)
    with pytest.raises(InvalidInput, match="truncated: its header declares 32000 frames"):
        decode_audio(_wav(32_000, bytes(3200)), 16_000, LIMITS)
    # A size left open (0xFFFFFFFF, as streaming WAV writers leave it) is read to the
    # end, within the limit.
    open_size = 0xFFFFFFFF
    assert len(decode_audio(_wav(open_size, bytes(3200)), 16_000, LIMITS)) == 1600
    with pytest.raises(TooLarge, match="longer than the 10 s"):
        decode_audio(_wav(open_size, bytes(16_000 * 2 * 11)), 16_000, LIMITS)
    with pytest.raises(InvalidInput, match="64 channels"):
        decode_audio(_encoded(np.zeros((10, 64)), 16_000, format="WAV"), 16_000, LIMITS)
    with pytest.raises(InvalidInput, match="not supported"):
        decode_audio(_encoded(TONE, 22_050, format="AIFF"), 16_000, LIMITS)
    with pytest.raises(InvalidInput, match="not a file this server reads"):
        decode_audio(b"\x00" * 100, 16_000, LIMITS)
    with pytest.raises(InvalidInput, match="empty"):
        decode_audio(b"", 16_000, LIMITS)


def test_a_damaged_flac_is_refused() -> None:
    flac = _encoded(TONE, 22_050, format="FLAC")
    with pytest.raises(InvalidInput, match="could not be decoded"):
        decode_audio(
            flac[: len(flac) // 2] + bytes(200) + flac[len(flac) // 2 + 200 :], 16_000, LIMITS
        )


def test_pcm_chunks_split_mid_frame_give_the_samples_of_the_whole() -> None:
    frames = (np.random.default_rng(2).normal(0, 3000, (1000, 2))).clip(-32768, 32767).astype("<i2")
    data = frames.tobytes()
    stream = PcmStream(PcmFormat(16_000, PcmEncoding.S16LE, 2), 16_000, LIMITS)
    pieces = [stream.push(data[i : i + 333]) for i in range(0, len(data), 333)]
    joined = np.concatenate(pieces)
    expected = frames.astype(np.float32).mean(axis=1) / 32768
    assert np.allclose(joined, expected, atol=1e-6)
    # At another rate, soxr converts the stream chunk by chunk.
    resampled = PcmStream(PcmFormat(8_000, PcmEncoding.F32LE, 1), 16_000, LIMITS)
    tone = TONE[:8000].astype("<f4").tobytes()
    out = [resampled.push(tone[i : i + 1000]) for i in range(0, len(tone), 1000)]
    out.append(resampled.push(b"", last=True))
    assert abs(sum(len(o) for o in out) - 16_000) <= 2
    with pytest.raises(InvalidInput, match="sample rate"):
        PcmStream(PcmFormat(1_000_000), 16_000, LIMITS)
