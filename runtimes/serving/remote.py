"""The tokenising front for Triton and OpenVINO Model Server: our pipelines, with the model run remotely.

    from runtimes.serving.remote import load_remote
    clf = load_remote("art/", url="127.0.0.1:8000", model_name="sentiment")
    clf(["great film", "dull"])      # same outputs as runtimes.load("art/")(...)

Tokenisation, length batching and the decoding of labels, entities and answers are the runtime's
own; only `Session.run` travels, as a KServe v2 inference request (`tritonclient.http`), which both
Triton and OVMS accept. Sequences are padded up to a bucket (16, 32, 64, ... up to the model's
window) so Triton's dynamic batcher, which only merges requests of equal shape, can merge them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from runtimes.common.errors import BackendUnavailableError
from runtimes.common.manifest import Manifest, verify_files
from runtimes.embedded.backends import Device, Session
from runtimes.embedded.pipelines import PIPELINES, Pipeline

MIN_BUCKET = 16


class InferenceClient(Protocol):
    """The part of `tritonclient.http.InferenceServerClient` the session uses."""

    def infer(self, model_name: str, inputs: list, outputs: list | None = None, **kwargs: Any) -> Any: ...


def bucket_width(width: int, max_length: int) -> int:
    """The padded sequence length for a batch `width` tokens wide: the next power of two from 16, at most
    `max_length`."""
    bucket = MIN_BUCKET
    while bucket < width:
        bucket *= 2
    return max(width, min(bucket, max_length))


class RemoteSession(Session):
    """A `Session` whose `run` is a KServe v2 inference request to a model server."""

    def __init__(self, manifest: Manifest, model_name: str, client: InferenceClient, pad_id: int = 0):
        super().__init__("kserve-v2", Device.CPU, manifest.signature.input_names, manifest.signature.output_names)
        self.model_name = model_name
        self.client = client
        self.pad_id = pad_id
        self.max_length = manifest.max_length
        # Outputs with a sequence axis are cut back to the batch's own width after the bucket padding.
        sequence_axes = {t.shape[1] for t in manifest.signature.inputs
                         if len(t.shape) > 1 and isinstance(t.shape[1], str)}
        self._per_token = {t.name for t in manifest.signature.outputs
                           if len(t.shape) > 1 and t.shape[1] in sequence_axes}

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from tritonclient.http import InferInput, InferRequestedOutput
        from tritonclient.utils import np_to_triton_dtype

        width = next(iter(feeds.values())).shape[1]
        padded_width = bucket_width(width, self.max_length)
        inputs = []
        for name, array in feeds.items():
            if padded_width > width:
                fill = self.pad_id if name == "input_ids" else 0  # attention_mask 0: padding is never attended
                array = np.pad(array, ((0, 0), (0, padded_width - width)), constant_values=fill)
            array = np.ascontiguousarray(array)
            tensor = InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=True)
            inputs.append(tensor)
        outputs = [InferRequestedOutput(name, binary_data=True) for name in self.output_names]
        result = self.client.infer(self.model_name, inputs, outputs=outputs)
        arrays = {name: result.as_numpy(name) for name in self.output_names}
        return {name: value[:, :width] if name in self._per_token else value for name, value in arrays.items()}


def load_remote(folder: Path | str, url: str, model_name: str, batch_size: int = 8,
                client: InferenceClient | None = None, **client_options: Any) -> Pipeline:
    """The artifact's pipeline (tokenizer, batching, decoding) with its model served at `url`.

    `url` is host:port of the server's HTTP endpoint; `client` replaces the tritonclient HTTP client
    (any object with its `infer` method), `client_options` are passed to that client.
    """
    folder = Path(folder)
    manifest = Manifest.read(folder)
    files = verify_files(folder, manifest)
    if client is None:
        try:
            from tritonclient.http import InferenceServerClient
        except ImportError as exc:
            raise BackendUnavailableError(f"a remote model needs tritonclient ({exc}): "
                                          "pip install 'edge-toolchain[serve]'") from None
        client = InferenceServerClient(url, **client_options)
    session = RemoteSession(manifest, model_name, client)
    pipeline = PIPELINES[manifest.task](folder, manifest, session, files, batch_size=batch_size)
    session.pad_id = pipeline.encoder.pad_id
    return pipeline
