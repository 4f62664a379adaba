"""An app that embeds a model imports `runtimes` only: torch and transformers must stay out."""

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import numpy as np
import runtimes
manifest, session = runtimes.open_session(sys.argv[1])
n = 7
feeds = {name: np.ones((2, n), dtype=np.int64) for name in session.input_names}
out = session.run(feeds)
heavy = sorted(m for m in ("torch", "transformers", "toolchain", "pydantic") if m in sys.modules)
print(json.dumps({"heavy": heavy, "shape": list(out["logits"].shape)}))
"""


def test_runtime_does_not_import_torch(artifact_factory):
    artifact = artifact_factory("bert", "text-classification")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(artifact.path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"heavy": [], "shape": [2, 3]}
