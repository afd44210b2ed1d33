"""``examples/tracing_console.py``: one cold request makes one ``lwa.verify`` span with the
two LWA calls inside it; the warm request makes none; no token text in the spans."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "tracing_console.py"


def spans(text: str) -> list[dict[str, object]]:
    return [json.loads(block) for block in re.findall(r"^\{\n.*?^\}$", text, re.S | re.M)]


def test_cold_request_traced_warm_request_not() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=True
    )
    cold, warm = done.stdout.split("--- warm request:")
    assert "--- cold answer: 200" in cold and "--- warm answer: 200" in warm
    names = sorted(str(span["name"]) for span in spans(cold))
    assert names == ["lwa.profile", "lwa.tokeninfo", "lwa.verify"]
    verify = next(span for span in spans(cold) if span["name"] == "lwa.verify")
    attributes = verify["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["lwa.outcome"] == "ok" and attributes["enduser.id"].startswith("amzn1.")
    assert spans(warm) == []
    assert "Atza|" not in done.stdout + done.stderr
