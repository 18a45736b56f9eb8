"""Triton Python-backend model: onnxruntime on the ONNX file beside this model's folder
(run.sh copies model.onnx to <repo>/iris/model.onnx), one session per instance with one
intra-op thread, as Pier's ort backend defaults to.

The backend's stub finds its Python packages through the `python3` first on PATH: run.sh
puts the peers venv's bin/ first, so numpy and onnxruntime come from that venv."""

import os

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        path = os.path.join(args["model_repository"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            label, proba = self.session.run(None, {"X": x})
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("label", label),
                        pb_utils.Tensor("probabilities", proba),
                    ]
                )
            )
        return responses
