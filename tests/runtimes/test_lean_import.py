"""An app that embeds a model imports `runtimes` only: torch and transformers must stay out."""

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import runtimes
pipe = runtimes.load(sys.argv[1], warmup=True)
out = pipe(["a fine film", "Überraschend gut 😀"])
heavy = sorted(m for m in ("torch", "transformers", "toolchain", "pydantic", "onnx") if m in sys.modules)
print(json.dumps({"heavy": heavy, "labels": [o["label"] for o in out]}))
"""


def test_runtime_does_not_import_torch(artifact_factory):
    artifact = artifact_factory("bert", "text-classification")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(artifact.path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert len(report["labels"]) == 2 and set(report["labels"]) <= set(artifact.manifest.labels)
