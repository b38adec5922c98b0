"""The benchmark harness itself works: `python -m bench` runs its quickest families and writes results.json.

Checks the shape of the results, never the timings (a benchmark prints figures; it is not a timed test).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_writes_the_results_file(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "quotas", "--only", "media", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    results = json.loads(out.read_text())

    assert results["mode"] == "quick"
    assert results["machine"]["cores"] >= 1
    assert results["machine"]["cpu_model"]
    assert results["machine"]["python"] == sys.version.split()[0]
    figures = {figure["name"]: figure for figure in results["figures"]}
    assert set(figures) == {"quota_ops_per_s", "media_peak_mb"}

    quota = figures["quota_ops_per_s"]
    assert quota["na"] is None, quota["na"]
    assert quota["runs"] == len(quota["samples"]) >= 2
    assert min(quota["samples"]) <= quota["median"] <= quota["p99"] == max(quota["samples"])
    assert quota["median"] > 0

    media = figures["media_peak_mb"]
    assert media["na"] is None, media["na"]
    assert media["extra"]["image_mb"] >= 9
    assert media["runs"] == len(media["samples"]) >= 2 and media["median"] > 0

    # The printed table has one row per figure.
    assert "| `quota_ops_per_s` |" in finished.stdout
    assert "| `media_peak_mb` |" in finished.stdout


def test_quick_voice_family_plays_real_speech_through_the_bot(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "voice", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert finished.returncode == 0, finished.stderr
    figures = {figure["name"]: figure for figure in json.loads(out.read_text())["figures"]}
    assert set(figures) == {
        "tts_first_audio_ms",
        "tts_join_first_audio_ms",
        "voice_cpu_ms_per_s",
        "voice_gap_p99_ms",
    }
    for figure in figures.values():
        assert figure["na"] is None, figure["na"]
        assert figure["runs"] >= 1 and figure["median"] > 0
    # Every second of the speech was played: 50 Opus packets a second, give or take FFmpeg's last frame.
    speech_s = figures["voice_cpu_ms_per_s"]["extra"]["speech_s"]
    assert abs(figures["voice_gap_p99_ms"]["extra"]["packets"] - speech_s * 50) <= 3
    assert figures["voice_cpu_ms_per_s"]["extra"]["ffmpeg_cpu_ms_per_s"] > 0
