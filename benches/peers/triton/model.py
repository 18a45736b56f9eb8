"""Triton Python-backend model of the peer comparison: onnxruntime on the ONNX file beside
this model's version folder (run.sh copies model.onnx to <repo>/<model>/model.onnx), one
session per instance with one intra-op thread, as Pier's ort backend defaults to. Serves any
model with one FP32 input `X` and the outputs `label` and `probabilities` (both models of
the comparison, exported by skl2onnx without ZipMap).

With dynamic batching Triton hands `execute` every request it batched: their rows are
concatenated, run in one session call and split back, so a batch costs one model call as in
Pier's batcher.

The backend's stub finds its Python packages through the `python3` first on PATH: run.sh
puts the peers venv's bin/ first, so numpy and onnxruntime come from that venv."""

import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

OUTPUTS = ["label", "probabilities"]


class TritonPythonModel:
    def initialize(self, args):
        path = os.path.join(args["model_repository"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        xs = [pb_utils.get_input_tensor_by_name(r, "X").as_numpy() for r in requests]
        rows = [len(x) for x in xs]
        x = xs[0] if len(xs) == 1 else np.concatenate(xs)
        label, proba = self.session.run(OUTPUTS, {"X": x})
        responses = []
        start = 0
        for n in rows:
            end = start + n
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("label", label[start:end]),
                        pb_utils.Tensor("probabilities", proba[start:end]),
                    ]
                )
            )
            start = end
        return responses
